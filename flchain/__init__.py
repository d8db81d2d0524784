"""FLChain: incentivized federated learning on an EVM ledger with content-addressed updates."""

__version__ = "0.1.0"
