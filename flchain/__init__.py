"""FLChain: incentivized federated learning on an EVM ledger with content-addressed updates."""

import os

__version__ = "0.1.0"

# eth-hash takes the first backend it can import, pycryptodome's keccak (~4.6 µs a call through
# cffi), before pysha3's C extension (~1 µs), a declared dependency; py-evm hashes some 20,000
# times in a 100-participant round (storage keys, trie nodes, SHA3). The digests are the same.
# Set before any hash is taken (eth-hash chooses at its first); a user's own choice stands.
os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
