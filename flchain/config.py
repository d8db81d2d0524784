"""Task configuration: a TOML file, validated at load time with errors naming the bad field."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from flchain.errors import ConfigError

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")

#: Built-in data sets of the simulation path; ``custom`` means every participant brings its own
#: data (``flchain node run --data``), shaped as the ``[data]`` section declares.
DATASETS = ("mnist", "digits", "synthetic", "custom")
PARTITIONS = ("iid", "dirichlet", "shards")
#: Built-in architectures (see :func:`flchain.learning.models.build_model`).
MODELS = ("mlp", "cnn", "logreg", "cnn32")
#: Largest input (values per sample) and class count a task may declare: a model is built
#: from them, so absurd values must fail as config errors, not as an out-of-memory crash.
MAX_INPUT = 1 << 24
#: A model factory or data loader: ``package.module:function``.
TARGET_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
#: ``[training] algorithm``: local training and what an update carries (SCAFFOLD: Δw and Δc,
#: see :mod:`flchain.learning.scaffold`).
ALGORITHMS = ("fedavg", "fedprox", "scaffold")
#: ``[training] server_optimizer``: how the committee turns the aggregate into the global step
#: (see :mod:`flchain.learning.server_opt`, whose registry is keyed by these names).
SERVER_OPTIMIZERS = ("none", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
#: Update codecs a task may choose (``[training] codec``): the spec's ``CodecParams.encoding``
#: each maps to. int32 is the exact fixed-point default; int16/int8 compress with per-tensor
#: power-of-two scales; topk sends the ``training.topk_fraction`` largest coordinates, the node
#: feeding back what it held back (see :mod:`flchain.learning.codec`).
CODECS = {"int32": "fixed", "int16": "int16", "int8": "int8", "topk": "topk"}
#: ``[training] dp``: client-level DP (per-update clipping + Gaussian noise).
DP_REQUIRED = ("clip", "noise_multiplier", "delta")
DP_OPTIONAL = ("target_epsilon",)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    partition: str = "iid"
    alpha: float = 0.5
    shards_per_client: int = 2
    test_fraction: float = 0.2
    seed: int = 0
    # What a participant's own data must look like (dataset = "custom"): the shape of one
    # input, e.g. [30] for 30 tabular features or [3, 32, 32] for RGB images (image folders are
    # resized to it), and the number of classes; labels are 0 .. num_classes - 1.
    input_shape: list[int] = field(default_factory=list)
    num_classes: int = 0
    label_column: str = "label"  # the label column of a CSV file
    classes: list[str] = field(default_factory=list)  # image sub-folder names, in label order
    # Preprocessing every node applies to what it loads: x -> (x - mean) / std, per feature
    # (1-D inputs) or per channel (images, after scaling pixels to [0, 1]); empty = none.
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    # The seeded fraction of its own data a node holds out to validate every global model.
    validation_fraction: float = 0.2


@dataclass(frozen=True)
class ModelConfig:
    """The task's model: a built-in ``name`` or a ``factory`` ("package.module:function", called
    with ``kwargs``) from a package every participant installs; no code travels with the task.
    Without this section the model is ``[training] model`` (the older spelling)."""

    name: str = ""
    factory: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingConfig:
    model: str = "mlp"
    algorithm: str = "fedavg"
    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    mu: float = 0.0
    seed: int = 0
    # Client-level differential privacy, off when empty: an inline table
    # ``{ clip = C, noise_multiplier = σ, delta = δ, target_epsilon = ε }`` (ε optional).
    dp: dict[str, float] = field(default_factory=dict)
    # How updates are encoded (the manifest's model spec names it): "int32", "int16", "int8",
    # "topk" (with topk_fraction: the fraction of coordinates each update sends).
    codec: str = "int32"
    topk_fraction: float = 0.0
    # C: the fraction of participants drawn to train each round (flchain.learning.sampling).
    client_fraction: float = 1.0
    # How the committee turns the rule's aggregate (the pseudo-gradient) into the global step
    # (flchain.learning.server_opt): "none" (FedAvg), "fedavgm", "fedadam", "fedyogi",
    # "fedadagrad"; server_momentum is FedAvgM's β and the adaptive optimizers' β1.
    server_optimizer: str = "none"
    server_lr: float = 1.0
    server_momentum: float = 0.9
    server_beta2: float = 0.99
    server_tau: float = 1e-3


#: Fields added after manifests were first written: left out of ``to_dict`` while at their
#: default, so an existing task's manifest (and its digest on-chain) keeps its exact bytes.
_NEW_TRAINING_FIELDS: dict[str, Any] = {
    "dp": {},
    "codec": "int32",
    "topk_fraction": 0.0,
    "client_fraction": 1.0,
    "server_optimizer": "none",
    "server_lr": 1.0,
    "server_momentum": 0.9,
    "server_beta2": 0.99,
    "server_tau": 1e-3,
}
_SERVER_FIELDS = ("server_optimizer", "server_lr", "server_momentum", "server_beta2", "server_tau")


@dataclass(frozen=True)
class AggregationConfig:
    rule: str = "trimmed_mean"
    params: dict[str, float] = field(default_factory=dict)
    #: The task's public validation set: the first N test samples of each class of the
    #: built-in data set (0: none). ``centered_clip`` pays less to updates that raise its loss.
    validation_per_class: int = 0
    #: ``fltrust``: the task owner's participant address, whose update (trained on the
    #: owner's root data set) is the round's reference direction; it earns nothing.
    reference_account: str = ""


@dataclass(frozen=True)
class LedgerConfig:
    """Everything the ``TrainingTask`` contract is configured with (token amounts in wei)."""

    rounds: int = 5
    committee_size: int = 3
    quorum: int = 2
    commit_blocks: int = 40
    reveal_blocks: int = 40
    attest_blocks: int = 40
    max_participants: int = 100
    min_reveals: int = 2
    round_budget: int = 1000 * 10**18
    committee_fee: int = 10 * 10**18
    min_stake: int = 100 * 10**18
    non_reveal_slash: int = 50 * 10**18
    committee_slash: int = 50 * 10**18
    max_samples: int = 100_000


@dataclass(frozen=True)
class TaskConfig:
    name: str = "flchain-task"
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        # A task with a server optimizer records all its hyper-parameters, defaults included.
        keep = set() if self.training.server_optimizer == "none" else set(_SERVER_FIELDS)
        for key, default in _NEW_TRAINING_FIELDS.items():
            if data["training"][key] == default and key not in keep:
                del data["training"][key]
        for key in ("validation_per_class", "reference_account"):  # added later: as above
            if not data["aggregation"][key]:
                del data["aggregation"][key]
        return data

    @property
    def architecture(self) -> str:
        """The model as the manifest's spec names it: a built-in name or ``factory:<target>``."""
        if self.model.factory:
            return f"factory:{self.model.factory}"
        return self.model.name or self.training.model

    @property
    def custom_data(self) -> bool:
        """Whether participants bring their own data (no built-in data set)."""
        return self.data.dataset == "custom"

    def validate(self) -> TaskConfig:
        """Check cross-field rules; raises :class:`ConfigError` naming the field."""
        d, t, lg = self.data, self.training, self.ledger
        _choice("data.dataset", d.dataset, DATASETS)
        _choice("data.partition", d.partition, PARTITIONS)
        _choice("training.model", t.model, MODELS)
        self._validate_model()
        self._validate_data()
        _choice("training.algorithm", t.algorithm, ALGORITHMS)
        _positive("data.alpha", d.alpha)
        if not 0 < d.test_fraction < 1:
            raise ConfigError(f"data.test_fraction must be in (0, 1), got {d.test_fraction}")
        for name in ("epochs", "batch_size"):
            _positive(f"training.{name}", getattr(t, name))
        _positive("training.lr", t.lr)
        if t.mu < 0:
            raise ConfigError(f"training.mu must be >= 0, got {t.mu}")
        _choice("training.codec", t.codec, tuple(CODECS))
        if t.codec == "topk" and not 0 < t.topk_fraction <= 1:
            raise ConfigError(
                f'training.topk_fraction must be in (0, 1] with codec = "topk", '
                f"got {t.topk_fraction}"
            )
        if t.codec != "topk" and t.topk_fraction:
            raise ConfigError(
                f'training.topk_fraction is set, but training.codec is {t.codec!r} (not "topk")'
            )
        if not 0 < t.client_fraction <= 1:
            raise ConfigError(
                f"training.client_fraction must be in (0, 1], got {t.client_fraction}"
            )
        self._validate_dp()
        self._validate_server_optimizer()
        if t.algorithm == "scaffold" and t.dp:
            raise ConfigError('training.algorithm = "scaffold" cannot be combined with training.dp')
        if t.algorithm == "scaffold" and t.codec == "topk":
            # the residual would mix Δw and Δc, and a Δc the server never saw moves c_i
            raise ConfigError(
                'training.algorithm = "scaffold" cannot be combined with codec "topk"'
            )
        for key, param in self.aggregation.params.items():
            if isinstance(param, bool) or not isinstance(param, int | float):
                raise ConfigError(f"aggregation.params.{key} must be a number, got {param!r}")
            if not math.isfinite(param):
                raise ConfigError(f"aggregation.params.{key} must be finite, got {param}")
        for f in fields(lg):
            value = getattr(lg, f.name)
            if value >= 2**256:  # every ledger field is a uint256 on-chain
                raise ConfigError(f"ledger.{f.name} does not fit in 256 bits: {value}")
            if value < 0 or (
                value == 0
                and f.name not in ("committee_fee", "non_reveal_slash", "committee_slash")
            ):
                raise ConfigError(f"ledger.{f.name} must be positive, got {value}")
        if not lg.committee_size // 2 < lg.quorum <= lg.committee_size:
            raise ConfigError(
                f"ledger.quorum must be a majority of ledger.committee_size "
                f"({lg.committee_size // 2 + 1}..{lg.committee_size}), got {lg.quorum}"
            )
        if lg.committee_fee * lg.committee_size > lg.round_budget:
            raise ConfigError(
                "ledger.committee_fee * ledger.committee_size exceeds ledger.round_budget"
            )
        from flchain.learning.aggregation import aggregator_from_config

        agg = self.aggregation
        if agg.rule == "fltrust" and not _ADDRESS.fullmatch(agg.reference_account):
            raise ConfigError(
                "aggregation.rule fltrust needs aggregation.reference_account: the task "
                f"owner's participant address (0x and 40 hex digits), got {agg.reference_account!r}"
            )
        if agg.rule == "fltrust" and self.training.algorithm == "scaffold":
            raise ConfigError("aggregation.rule fltrust does not work with scaffold")
        try:
            aggregator_from_config(agg.rule, dict(agg.params), agg.reference_account)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"aggregation: {exc}") from exc
        self._validate_validation_set()
        return self

    def _validate_validation_set(self) -> None:
        n = self.aggregation.validation_per_class
        if n == 0:
            return
        from flchain.learning.validation import LINEAR_STACKS

        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"aggregation.validation_per_class must be an integer >= 0, got {n}")
        if self.custom_data:
            raise ConfigError(
                'aggregation.validation_per_class needs a built-in data set, not "custom": '
                "the validation samples must be public"
            )
        if self.architecture not in LINEAR_STACKS:
            raise ConfigError(
                f"aggregation.validation_per_class: the exact forward pass covers "
                f"{', '.join(LINEAR_STACKS)}, not {self.architecture!r}"
            )
        if self.training.algorithm == "scaffold":
            raise ConfigError("aggregation.validation_per_class does not work with scaffold")

    def _validate_server_optimizer(self) -> None:
        t = self.training
        _choice("training.server_optimizer", t.server_optimizer, SERVER_OPTIMIZERS)
        if t.server_optimizer == "none":
            changed = [
                f"training.{k}"
                for k in _SERVER_FIELDS[1:]
                if getattr(t, k) != _NEW_TRAINING_FIELDS[k]
            ]
            if changed:
                raise ConfigError(
                    f"{', '.join(changed)} set, but training.server_optimizer is 'none' "
                    f"(choose fedavgm, fedadam, fedyogi or fedadagrad)"
                )
            return
        from flchain.learning.models import CodecParams
        from flchain.learning.server_opt import ServerOptimizer

        optimizer = ServerOptimizer(
            t.server_optimizer, t.server_lr, t.server_momentum, t.server_beta2, t.server_tau
        )
        optimizer.check_resolution(CodecParams().frac_bits)

    def _validate_dp(self) -> None:
        dp = self.training.dp
        if not dp:
            return
        unknown = set(dp) - set(DP_REQUIRED) - set(DP_OPTIONAL)
        if unknown:
            raise ConfigError(
                f"unknown field(s) in training.dp: {', '.join(sorted(map(repr, unknown)))} "
                f"(known: {', '.join(DP_REQUIRED + DP_OPTIONAL)})"
            )
        for key in DP_REQUIRED:
            if key not in dp:
                raise ConfigError(f"training.dp.{key} is required when training.dp is set")
        for key, value in dp.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"training.dp.{key} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"training.dp.{key} must be positive and finite, got {value}")
        if not dp["delta"] < 1:
            raise ConfigError(f"training.dp.delta must be in (0, 1), got {dp['delta']}")
        # Noisy coordinates are N(0, (σ·clip)²): keep ~8σ of them inside the codec's magnitude
        # bound, or honest updates would be refused as out of bounds.
        from flchain.learning.models import CodecParams

        bound = CodecParams().bound
        if dp["clip"] * (1 + 8 * dp["noise_multiplier"]) > bound:
            raise ConfigError(
                f"training.dp: clip · (1 + 8 · noise_multiplier) = "
                f"{dp['clip'] * (1 + 8 * dp['noise_multiplier']):g} exceeds the update bound "
                f"{bound:g}; lower training.dp.clip or training.dp.noise_multiplier"
            )

    def _validate_model(self) -> None:
        m = self.model
        if m.name and m.factory:
            raise ConfigError("model: give either model.name or model.factory, not both")
        if (m.name or m.factory) and self.training.model != TrainingConfig.model:
            raise ConfigError("set the model in one place: [model] or [training] model, not both")
        if m.name:
            _choice("model.name", m.name, MODELS)
        if m.factory and not TARGET_RE.match(m.factory):
            raise ConfigError(
                f"model.factory must look like 'package.module:function', got {m.factory!r}"
            )
        if m.kwargs and not m.factory:
            raise ConfigError("model.kwargs needs model.factory (built-ins take no kwargs)")
        _check_plain("model.kwargs", m.kwargs)

    def _validate_data(self) -> None:
        d = self.data
        if not 0 <= d.validation_fraction < 1:
            raise ConfigError(
                f"data.validation_fraction must be in [0, 1), got {d.validation_fraction}"
            )
        if not all(type(s) is int and s > 0 for s in d.input_shape) or len(d.input_shape) > 3:
            raise ConfigError(
                f"data.input_shape must be 1 to 3 positive integers, got {d.input_shape}"
            )
        if math.prod(d.input_shape) > MAX_INPUT:
            raise ConfigError(f"data.input_shape {d.input_shape} is over {MAX_INPUT} values")
        if d.num_classes < 0 or d.num_classes == 1 or d.num_classes > MAX_INPUT:
            raise ConfigError(f"data.num_classes must be in 2..{MAX_INPUT}, got {d.num_classes}")
        if self.custom_data and not (d.input_shape and d.num_classes):
            raise ConfigError('data.dataset = "custom" needs data.input_shape and data.num_classes')
        if not self.custom_data and (d.input_shape or d.num_classes):
            from flchain.learning.models import DATASET_SHAPES

            shape, classes = DATASET_SHAPES[d.dataset]
            if tuple(d.input_shape or shape) != shape or (d.num_classes or classes) != classes:
                raise ConfigError(
                    f"data.input_shape/num_classes contradict dataset {d.dataset!r} "
                    f"({list(shape)}, {classes} classes)"
                )
        if d.classes and (len(d.classes) != d.num_classes or len(set(d.classes)) != len(d.classes)):
            raise ConfigError("data.classes must name each of data.num_classes classes once")
        if not all(isinstance(c, str) and c for c in d.classes):
            raise ConfigError("data.classes must be non-empty strings")
        if len(d.mean) != len(d.std):
            raise ConfigError("data.mean and data.std must have the same length")
        for name in ("mean", "std"):
            for v in getattr(d, name):
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ConfigError(f"data.{name} must hold finite numbers, got {v!r}")
        if any(v <= 0 for v in d.std):
            raise ConfigError("data.std values must be positive")
        if d.mean and d.input_shape:
            width = d.input_shape[0]  # features of 1-D inputs, channels of images
            if len(d.mean) not in (1, width):
                raise ConfigError(
                    f"data.mean/std need 1 or {width} values (per "
                    f"{'feature' if len(d.input_shape) == 1 else 'channel'}), got {len(d.mean)}"
                )


def _check_plain(name: str, value: Any) -> None:
    """Only plain JSON values travel in a manifest (no dates, no non-finite floats)."""
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(f"{name}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_plain(f"{name}[{i}]", v)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}")
    elif not isinstance(value, str | int | float | bool):
        raise ConfigError(f"{name}: only strings, numbers, booleans, arrays and tables, "
                          f"got {type(value).__name__}")  # fmt: skip


def load_config(path: str | Path) -> TaskConfig:
    """Read and validate a task config TOML file."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from exc
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> TaskConfig:
    """Build a :class:`TaskConfig` from plain data, refusing unknown fields and wrong types."""
    sections = {
        "data": DataConfig,
        "training": TrainingConfig,
        "model": ModelConfig,
        "aggregation": AggregationConfig,
        "ledger": LedgerConfig,
    }
    if not isinstance(raw, dict):
        raise ConfigError(f"a task config must be a table, got {type(raw).__name__}")
    unknown = set(raw) - set(sections) - {"name"}
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(sorted(map(repr, unknown)))}")
    kwargs: dict[str, Any] = {}
    if "name" in raw:
        if not isinstance(raw["name"], str) or not raw["name"]:
            raise ConfigError("name must be a non-empty string")
        kwargs["name"] = raw["name"]
    for key, cls in sections.items():
        kwargs[key] = _section(key, cls, raw.get(key, {}))
    return TaskConfig(**kwargs).validate()


def _section(name: str, cls: type, raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(
            f"unknown field(s) in [{name}]: {', '.join(sorted(map(repr, unknown)))} "
            f"(known: {', '.join(known)})"
        )
    defaults = cls()
    values: dict[str, Any] = {}
    for key, value in raw.items():
        expected = type(getattr(defaults, key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{name}.{key} must be a finite number, got {value}")
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(
                f"{name}.{key} must be {expected.__name__}, got {type(value).__name__} {value!r}"
            )
        values[key] = value
    return cls(**values)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")
