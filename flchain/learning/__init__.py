"""The machine-learning half of FLChain: data, models, local training, the canonical update
codec and deterministic robust aggregation. Pure functions and PyTorch; no chain, no store."""

from flchain.learning.aggregation import (
    AggregateResult,
    Aggregator,
    ClientUpdate,
    Decision,
    Failure,
    aggregator_from_config,
)
from flchain.learning.codec import (
    Update,
    apply_update,
    decode_model,
    decode_update,
    encode_model,
    encode_update,
    quantize,
    update_digest,
)
from flchain.learning.models import CodecParams, ModelSpec, build_model
from flchain.learning.training import DPConfig, TrainConfig, TrainResult, evaluate, train_local

__all__ = [
    "AggregateResult",
    "Aggregator",
    "ClientUpdate",
    "CodecParams",
    "DPConfig",
    "Decision",
    "Failure",
    "ModelSpec",
    "TrainConfig",
    "TrainResult",
    "Update",
    "aggregator_from_config",
    "apply_update",
    "build_model",
    "decode_model",
    "decode_update",
    "encode_model",
    "encode_update",
    "evaluate",
    "quantize",
    "train_local",
    "update_digest",
]
