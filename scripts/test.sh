#!/usr/bin/env bash
# Installs everything the test suite needs (Python package with test extras, the pinned npm
# toolchain: solcjs, OpenZeppelin, anvil, forge; Slither in its own venv because it pins
# web3 < 8; Kubo, the IPFS daemon, built with Go into .tools/bin) and runs it. Extra arguments
# go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# -c: the exact versions CI is tested with; flower: the Flower-client tests need flwr
python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test,flower]'
npm ci --no-audit --no-fund --silent
if [ ! -x .tools/slither/bin/slither ]; then
    python -m venv .tools/slither
    .tools/slither/bin/pip install --quiet --disable-pip-version-check slither-analyzer==0.11.6
fi
export FLCHAIN_SLITHER="$PWD/.tools/slither/bin/slither"
bash scripts/install_tools.sh  # Kubo and geth: a no-op once both are the pinned versions
export FLCHAIN_IPFS_BIN="$PWD/.tools/bin/ipfs"
python -m pytest "$@"
