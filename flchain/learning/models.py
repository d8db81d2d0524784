"""Models of the FedAvg paper and the model spec whose digest goes on-chain.

The spec pins everything a committee member needs to check and aggregate an update without
trusting its sender: the ordered tensor names, shapes and dtypes, and the codec parameters
(fixed-point resolution and magnitude bound). ``ModelSpec.digest()`` is the sha-256 of its
canonical JSON, so two parties agree on a spec iff they agree on 32 bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from flchain.errors import ConfigError

Encoding = Literal["fixed", "float32", "int16", "int8", "topk"]
#: The compressed encodings and the largest code magnitude each stores.
COMPRESSED: dict[str, int] = {"int16": 2**15 - 1, "int8": 2**7 - 1}
#: Tensor names the codecs use in update files (see :mod:`flchain.learning.codec`).
RESERVED = (".exponents", ".indices", ".values")

#: Input shape and number of classes of the built-in data sets (see :mod:`.data`).
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist": ((1, 28, 28), 10),
    "digits": ((1, 8, 8), 10),
    "synthetic": ((60,), 10),
}


@dataclass(frozen=True)
class CodecParams:
    """How updates are encoded.

    ``encoding="fixed"`` stores every coordinate as ``round(x * 2**frac_bits)`` in int32, so
    aggregation works on exact integers; ``"float32"`` stores raw float32 and the aggregator
    quantizes with the same ``frac_bits``. ``"int16"`` and ``"int8"`` compress: each tensor
    stores small integer codes ``c`` and one power-of-two scale ``2**e`` (``e`` in the file),
    standing for the fixed-point values ``c * 2**e`` at the same ``frac_bits``, so the rules
    compute on exactly the integers they always do (see :mod:`flchain.learning.codec`).
    ``"topk"`` sends only the :attr:`topk` largest coordinates (``topk_fraction`` of them) as
    indices and int32 fixed-point values; the rest decode to zero.
    ``bound`` is the largest absolute value a single update coordinate may take (checked on
    decode).
    """

    encoding: Encoding = "fixed"
    frac_bits: int = 20
    bound: float = 64.0
    #: The fraction of coordinates a top-k update sends (``encoding="topk"`` only; 0 otherwise,
    #: and then left out of the spec's JSON so older specs keep their digest).
    topk_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.encoding not in ("fixed", "float32", "topk", *COMPRESSED):
            raise ConfigError(
                f"codec.encoding must be 'fixed', 'float32', 'int16', 'int8' or 'topk', "
                f"not {self.encoding!r}"
            )
        fraction = self.topk_fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise ConfigError(f"codec.topk_fraction must be a number, not {fraction!r}")
        if self.encoding == "topk" and not 0 < fraction <= 1:
            raise ConfigError(f"codec.topk_fraction must be in (0, 1] for topk, not {fraction}")
        if self.encoding != "topk" and fraction != 0:
            raise ConfigError(
                f"codec.topk_fraction is {fraction}, but encoding {self.encoding!r} is not topk"
            )
        if not 0 <= self.frac_bits <= 30:
            raise ConfigError(f"codec.frac_bits must be in [0, 30], not {self.frac_bits}")
        if not (self.bound > 0 and self.bound * 2.0**self.frac_bits < 2.0**31):
            raise ConfigError(
                f"codec.bound={self.bound} must be > 0 and bound * 2**frac_bits < 2**31"
            )

    @property
    def bound_q(self) -> int:
        """The magnitude bound in fixed-point units."""
        return int(self.bound * 2**self.frac_bits)

    def topk(self, num_params: int) -> int:
        """How many coordinates a top-k update of ``num_params`` parameters sends:
        ``ceil(topk_fraction · num_params)``, at least 1."""
        return min(num_params, max(1, math.ceil(self.topk_fraction * num_params)))


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class ModelSpec:
    """The task's model: architecture name, ordered tensors and codec parameters."""

    architecture: str
    tensors: tuple[TensorSpec, ...]
    codec: CodecParams = field(default_factory=CodecParams)

    def __post_init__(self) -> None:
        names = [t.name for t in self.tensors]
        if not names or len(set(names)) != len(names):
            raise ConfigError("model spec needs at least one tensor and unique tensor names")
        reserved = sorted(set(names) & set(RESERVED))
        if reserved:  # the codecs' own tensors (no torch parameter name starts with ".")
            raise ConfigError(f"model spec: {reserved[0]!r} is reserved, not a parameter name")
        for t in self.tensors:
            if t.dtype != "float32":
                raise ConfigError(f"tensor {t.name!r}: only float32 parameters are supported")

    @classmethod
    def from_model(
        cls, model: nn.Module, architecture: str, codec: CodecParams | None = None
    ) -> ModelSpec:
        """The spec of ``model``'s parameters, in its own order. Buffers (e.g. BatchNorm running
        statistics) are not part of it: they stay local to each participant (see
        :func:`parameter_state`)."""
        tensors = tuple(
            TensorSpec(name, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            for name, t in parameter_state(model).items()
        )
        return cls(architecture, tensors, codec or CodecParams())

    def first_difference(self, other: ModelSpec) -> str | None:
        """Where ``other``'s parameter layout first differs from this one (``None``: same
        layout), as a phrase naming the parameter."""
        for i, (mine, theirs) in enumerate(zip(self.tensors, other.tensors, strict=False)):
            if mine != theirs:
                return (
                    f"parameter #{i} is {mine.name!r} {list(mine.shape)} {mine.dtype} in the "
                    f"task but {theirs.name!r} {list(theirs.shape)} {theirs.dtype} here"
                )
        if len(self.tensors) > len(other.tensors):
            missing = self.tensors[len(other.tensors)]
            return f"parameter {missing.name!r} {list(missing.shape)} of the task is missing here"
        if len(other.tensors) > len(self.tensors):
            extra = other.tensors[len(self.tensors)]
            return f"parameter {extra.name!r} {list(extra.shape)} here is not in the task"
        return None

    @property
    def num_params(self) -> int:
        """Total number of scalar parameters."""
        return sum(t.numel for t in self.tensors)

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; the input of :meth:`digest`."""
        data = asdict(self)
        if self.codec.encoding != "topk":  # added later: older specs keep their exact bytes
            del data["codec"]["topk_fraction"]
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        """Inverse of :meth:`to_json`; raises :class:`ConfigError` on a malformed spec."""
        try:
            raw: dict[str, Any] = json.loads(text)
            tensors = tuple(
                TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in raw["tensors"]
            )
            return cls(raw["architecture"], tensors, CodecParams(**raw["codec"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"malformed model spec: {exc}") from exc

    def digest(self) -> bytes:
        """sha-256 of the canonical JSON, 32 bytes."""
        return hashlib.sha256(self.to_json().encode()).digest()


def parameter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's trainable parameters by name, in state-dict order (detached).

    This is what updates and global models carry. Buffers are deliberately left out and stay
    local: BatchNorm running statistics describe each participant's own input distribution
    (FedBN keeps them local for that reason), they are not trained by gradients, so a robust
    rule's outlier tests do not apply to them, and ``num_batches_tracked`` is an int64 counter
    the fixed-point codec cannot carry."""
    return {name: p.detach() for name, p in model.named_parameters()}


def load_parameters(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` (a global model: parameters only) into ``model``; its buffers stay."""
    expected = [name for name, _ in model.named_parameters()]
    if sorted(state) != sorted(expected):
        missing = sorted(set(expected) - set(state)) or sorted(set(state) - set(expected))
        raise ConfigError(f"global model does not match the local model's parameters: {missing}")
    model.load_state_dict(state, strict=False)


@dataclass(frozen=True)
class DataShape:
    """What a model is built for: the shape of one input and the number of classes."""

    input_shape: tuple[int, ...]
    num_classes: int


class MLP(nn.Module):
    """The FedAvg paper's "2NN": two hidden layers of 200 units with ReLU."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 200) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


class CNN(nn.Module):
    """The FedAvg paper's CNN: two 'same' convolutions (32, 64 channels) each followed by 2×2
    max pooling, a 512-unit dense layer and the output layer (1,663,370 parameters on 28×28).
    On 8×8 digits the kernels shrink to 3×3."""

    def __init__(self, side: int, num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        k = 5 if side >= 20 else 3
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, k, padding=k // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, k, padding=k // 2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (side // 4) ** 2, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class LogisticRegression(nn.Module):
    """Multinomial logistic regression, FedProx's model for Synthetic(α, β)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.linear(x.flatten(1))
        return out


class SmallCNN(nn.Module):
    """A small CNN for 32×32 colour images (CIFAR-10-sized): three 3×3 'same' convolutions
    (32, 64, 64 channels) each followed by 2×2 max pooling, a 128-unit dense layer and the
    output layer (188,810 parameters on 3×32×32 with 10 classes)."""

    def __init__(self, side: int, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * (side // 8) ** 2, 128),
            nn.ReLU(),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def _shape_of(dataset: object) -> tuple[tuple[int, ...], int]:
    if isinstance(dataset, str):
        if dataset not in DATASET_SHAPES:
            raise ConfigError(f"unknown dataset {dataset!r}; known: {sorted(DATASET_SHAPES)}")
        return DATASET_SHAPES[dataset]
    try:
        return tuple(dataset.input_shape), int(dataset.num_classes)  # type: ignore[attr-defined]
    except AttributeError as exc:
        raise ConfigError("dataset must be a name or have input_shape and num_classes") from exc


def build_model(name: str, dataset: object, seed: int = 0) -> nn.Module:
    """Build ``"mlp"`` (alias ``"2nn"``), ``"cnn"`` or ``"logreg"`` for ``dataset`` (a name in
    :data:`DATASET_SHAPES` or a :class:`~flchain.learning.data.TensorData`), initialized
    deterministically from ``seed``."""
    shape, num_classes = _shape_of(dataset)
    features = 1
    for s in shape:
        features *= s
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if name in ("mlp", "2nn"):
            return MLP(features, num_classes)
        if name == "logreg":
            return LogisticRegression(features, num_classes)
        if name == "cnn":
            if len(shape) != 3 or shape[1] != shape[2]:
                raise ConfigError(f"cnn needs square (C, H, W) images, got shape {shape}")
            return CNN(shape[1], num_classes, in_channels=shape[0])
        if name == "cnn32":
            if len(shape) != 3 or shape[1] != shape[2] or shape[1] % 8:
                raise ConfigError(f"cnn32 needs square (C, H, W) images, H a multiple of 8; "
                                  f"got shape {shape}")  # fmt: skip
            return SmallCNN(shape[1], num_classes, in_channels=shape[0])
    raise ConfigError(f"unknown model {name!r}; known: mlp (2nn), cnn, logreg, cnn32")
