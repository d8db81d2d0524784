#!/usr/bin/env bash
# Installs everything the test suite needs (Python package with test extras, the pinned npm
# toolchain: solcjs, OpenZeppelin, anvil) and runs it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e '.[test]'
npm ci --no-audit --no-fund --silent
python -m pytest "$@"
