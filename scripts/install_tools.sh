#!/usr/bin/env bash
# Builds the pinned Kubo (the IPFS daemon the KuboStore tests run against) into .tools/bin/ipfs
# and the pinned geth (the reference Ethereum client, run as `geth --dev` by the ledger suite)
# into .tools/bin/geth with the Go toolchain. Idempotent: a tool that already reports its pinned
# version is not rebuilt. Nothing from either is committed; .tools/ is git-ignored.
#
# Why not plain `go install github.com/ipfs/kubo/cmd/ipfs@v0.43.1`: go install refuses a module
# whose go.mod has replace directives, and v0.43.1's go.mod replaces go-libp2p with a commit of
# a personal fork (github.com/lidel/go-libp2p) that the Go module proxy does not serve (403).
# Its TODO says to drop the replace "once a go-libp2p release requires quic-go >= v0.62.0 and
# webtransport-go >= v0.13.0"; go-libp2p v0.50.0 is the first such release (exactly those two),
# so we build Kubo's own module source with the replace dropped and go-libp2p pinned to v0.50.0.
# Every module still comes from the Go module proxy, checked against the checksum database.
#
# Environment: KUBO_BIN_DIR (default .tools/bin, geth goes there too), GOCACHE/GOMODCACHE as usual.
set -euo pipefail
cd "$(dirname "$0")/.."

KUBO_VERSION=0.43.1
LIBP2P_VERSION=v0.50.0
GETH_VERSION=1.17.10
BIN_DIR="${KUBO_BIN_DIR:-$PWD/.tools/bin}"
BIN="$BIN_DIR/ipfs"
GETH="$BIN_DIR/geth"

if ! command -v go >/dev/null; then
    echo "error: the Go toolchain is needed to build Kubo $KUBO_VERSION and geth $GETH_VERSION" \
        "(https://go.dev/dl/)" >&2
    exit 1
fi
# Never let go fetch another toolchain behind our back (Kubo's go.mod says `go 1.26.5`).
export GOTOOLCHAIN=local

# geth: a plain `go install` of the tagged module (no replace directives to work around).
if ! { [ -x "$GETH" ] && "$GETH" version 2>/dev/null | grep -x "Version: $GETH_VERSION-stable" >/dev/null; }; then
    echo "building geth $GETH_VERSION into $GETH ..." >&2
    mkdir -p "$BIN_DIR"
    GOBIN="$BIN_DIR" GOFLAGS="-buildvcs=false -trimpath" \
        nice -n 10 go install "github.com/ethereum/go-ethereum/cmd/geth@v$GETH_VERSION"
    "$GETH" version | sed -n 1,2p  # sed reads it all: head could SIGPIPE geth under pipefail
fi

if [ -x "$BIN" ] && [ "$("$BIN" version --number 2>/dev/null)" = "$KUBO_VERSION" ]; then
    exit 0
fi
export GOFLAGS="-buildvcs=false -trimpath -mod=mod"
module_dir=$(go mod download -json "github.com/ipfs/kubo@v$KUBO_VERSION" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
src=$(mktemp -d "${TMPDIR:-/tmp}/kubo-src.XXXXXX")
trap 'rm -rf "$src"' EXIT
cp -r "$module_dir/." "$src"
chmod -R u+w "$src"  # the module cache is read-only; go mod edit writes go.mod and go.sum
(
    cd "$src"
    go mod edit -dropreplace=github.com/libp2p/go-libp2p \
        -require="github.com/libp2p/go-libp2p@$LIBP2P_VERSION"
    mkdir -p "$BIN_DIR"
    echo "building Kubo $KUBO_VERSION (go-libp2p $LIBP2P_VERSION) into $BIN ..." >&2
    nice -n 10 go build -o "$BIN.partial" ./cmd/ipfs
)
mv "$BIN.partial" "$BIN"
"$BIN" version
