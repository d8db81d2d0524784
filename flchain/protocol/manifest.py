"""The task manifest: the off-chain half of a task's configuration, named on-chain by CID.

It holds what participants need to train and what the committee needs to check and aggregate:
the task config (data, model, training, rule, ledger parameters) and the model spec. The
contract stores its CID and sha-256 digest, plus the model spec's digest, so a node can verify
it fetched the manifest the task was created with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from flchain import safejson
from flchain.config import CODECS, TaskConfig, config_from_dict
from flchain.errors import ConfigError
from flchain.learning.aggregation import Aggregator, aggregator_from_config
from flchain.learning.models import ModelSpec

MANIFEST_VERSION = 1
#: Largest model a manifest may describe (parameters): 1 GiB of float32, the store's limit.
MAX_PARAMS = 1 << 28


@dataclass(frozen=True)
class TaskManifest:
    config: TaskConfig
    spec: ModelSpec

    def to_bytes(self) -> bytes:
        data: dict[str, Any] = {
            "version": MANIFEST_VERSION,
            "config": self.config.to_dict(),
            "model_spec": json.loads(self.spec.to_json()),
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    def aggregator(self, owner: str = "") -> Aggregator:
        """The task's rule. ``owner`` is the task's owner as the chain records it: under
        ``fltrust`` the reference update must come from it (see :meth:`check_owner`)."""
        agg = self.config.aggregation
        if owner:
            self.check_owner(owner)
        return aggregator_from_config(agg.rule, agg.params, agg.reference_account)

    def check_owner(self, owner: str) -> None:
        """Refuse a manifest whose ``aggregation.reference_account`` is not ``owner``, the
        task's owner on-chain. The reference update steers every round's aggregate and pay;
        only the owner, who already sets the task's data and budget, may send it."""
        ref = self.config.aggregation.reference_account
        if ref and ref.lower() != owner.lower():
            raise ConfigError(
                f"aggregation.reference_account {ref} is not the task's owner {owner}: "
                "fltrust takes its reference update from the task owner only"
            )

    @classmethod
    def from_bytes(cls, data: bytes, *, expected_digest: bytes | None = None) -> TaskManifest:
        """Parse and check a manifest; ``expected_digest`` is the one recorded on-chain."""
        if expected_digest is not None and hashlib.sha256(data).digest() != expected_digest:
            raise ConfigError("task manifest does not match the digest recorded on-chain")
        try:
            raw = safejson.loads(data)
            if not isinstance(raw, dict):
                raise TypeError(f"expected a JSON object, got {type(raw).__name__}")
            if raw.get("version") != MANIFEST_VERSION:
                raise ConfigError(f"unsupported manifest version {raw.get('version')!r}")
            config = config_from_dict(raw["config"])
            spec = ModelSpec.from_json(json.dumps(raw["model_spec"]))
            _check_spec(spec)
            t = config.training
            wanted = CODECS[t.codec]
            if t.codec != "int32" and spec.codec.encoding != wanted:
                raise ConfigError(
                    f"malformed task manifest: training.codec is {t.codec!r} "
                    f"but the model spec encodes updates as {spec.codec.encoding!r}"
                )
            if spec.codec.topk_fraction != t.topk_fraction:
                raise ConfigError(
                    f"malformed task manifest: training.topk_fraction is {t.topk_fraction} "
                    f"but the model spec sends {spec.codec.topk_fraction}"
                )
        except (ValueError, KeyError, TypeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"malformed task manifest: {exc}") from exc
        return cls(config, spec)


def _check_spec(spec: ModelSpec) -> None:
    """What ``ModelSpec.from_json`` does not check: names and shapes of sane types and size."""
    if not isinstance(spec.architecture, str):
        raise ConfigError("malformed model spec: architecture must be a string")
    for t in spec.tensors:
        if not isinstance(t.name, str) or not all(type(d) is int and d >= 0 for d in t.shape):
            raise ConfigError(f"malformed model spec: tensor {t.name!r:.40} shape {t.shape!r:.60}")
    if spec.num_params > MAX_PARAMS:
        raise ConfigError(f"model spec has {spec.num_params} parameters, over {MAX_PARAMS}")
