"""A real participant's trainer: its own data, its own held-out validation, its own metrics.

The node trains on the operator's data (:mod:`flchain.learning.local_data`), evaluates every
global model it receives on the part it held out, and keeps those figures in its state
directory (``<task>-<account>.metrics.json``, shown by ``flchain status --local``) and its log.
Only the sample count leaves the node, capped by the task's ``max_samples``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch import nn

from flchain import safejson
from flchain.errors import PrivacyBudgetExhausted, ProtocolError
from flchain.learning.data import TensorData
from flchain.learning.models import load_parameters
from flchain.learning.privacy import PrivacyAccountant, PrivacySpend
from flchain.learning.scaffold import Controls
from flchain.learning.training import TrainConfig, evaluate
from flchain_node.metering import RoundWork
from flchain_node.participant import Produced
from flchain_node.trainer import LocalTrainer

Log = Callable[[str], None]


@dataclass(frozen=True)
class LocalMetric:
    """One global model evaluated on the node's held-out data. ``round`` is the round that
    trains from it (``rounds`` of the task: the final model)."""

    round: int
    loss: float
    accuracy: float
    samples: int


class LocalMetrics:
    """Per-round local validation figures, (DP tasks) the privacy spent per round and the
    node's work per round (:class:`RoundWork`), persisted atomically as JSON (one entry per
    round, so a restarted node overwrites rather than repeats; the privacy entries are what its
    accountant resumes from)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[int, LocalMetric] = {}
        self.privacy: dict[int, PrivacySpend] = {}
        self.work: dict[int, RoundWork] = {}
        if path is not None and path.exists():
            self.entries = read_metrics(path)
            self.privacy = read_privacy(path)
            self.work = read_work(path)

    def record(self, metric: LocalMetric) -> None:
        self.entries[metric.round] = metric
        self._save()

    def record_privacy(self, spend: PrivacySpend) -> None:
        self.privacy[spend.round] = spend
        self._save()

    def record_work(self, work: RoundWork) -> None:
        self.work[work.round] = work
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, object] = {"rounds": [asdict(m) for _, m in sorted(self.entries.items())]}
        if self.privacy:
            data["privacy"] = [asdict(p) for _, p in sorted(self.privacy.items())]
        if self.work:
            data["work"] = [asdict(w) for _, w in sorted(self.work.items())]
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".metrics-")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(tmp, self.path)


def metrics_file(state_path: Path) -> Path:
    """The metrics file beside a node's state file."""
    return state_path.with_suffix(".metrics.json")


def read_metrics(path: Path) -> dict[int, LocalMetric]:
    """The metrics a node recorded at ``path``."""
    try:
        raw = safejson.loads(path.read_bytes())
        return {int(m["round"]): LocalMetric(**m) for m in raw["rounds"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"local metrics file {path} is unreadable: {exc}") from exc


def read_privacy(path: Path) -> dict[int, PrivacySpend]:
    """The privacy spends a node recorded at ``path`` (none for a task without DP)."""
    try:
        raw = safejson.loads(path.read_bytes())
        return {int(p["round"]): PrivacySpend(**p) for p in raw.get("privacy", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"local metrics file {path} is unreadable: {exc}") from exc


def read_work(path: Path) -> dict[int, RoundWork]:
    """The work per round a node recorded at ``path`` (none before its first step)."""
    try:
        raw = safejson.loads(path.read_bytes())
        return {int(w["round"]): RoundWork(**w) for w in raw.get("work", [])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"local metrics file {path} is unreadable: {exc}") from exc


class PrivateTrainer(LocalTrainer):
    """Trains on the operator's own data and validates each global model it is handed on the
    held-out part before training from it."""

    def __init__(
        self,
        model: nn.Module,
        data: TensorData,
        config: TrainConfig,
        seed: int,
        *,
        validation: TensorData | None,
        max_samples: int,
        metrics: LocalMetrics | None = None,
        log: Log | None = None,
    ) -> None:
        metrics = metrics or LocalMetrics(None)
        # the accountant resumes from the rounds this node already spent (its metrics file)
        privacy = None if config.dp is None else PrivacyAccountant(config.dp, metrics.privacy)
        super().__init__(model, data, config, seed, privacy=privacy)
        self.validation, self.max_samples = validation, max_samples
        self.metrics = metrics
        self.log = log
        self._refused: set[int] = set()

    def spend(self, round_id: int) -> PrivacySpend:
        spend = super().spend(round_id)
        self.metrics.record_privacy(spend)
        if self.log is not None:
            rounds = len(self.metrics.privacy)
            self.log(f"round {round_id} differential privacy: ε {spend.epsilon_round:.3f} this "
                     f"round, {spend.epsilon_total:.3f} cumulative over {rounds} round(s) at "
                     f"δ={spend.delta:g}")  # fmt: skip
        return spend

    @property
    def num_samples(self) -> int:
        """The count this node reports: what it trains on, capped by the task (self-reported:
        nobody can check it)."""
        return min(len(self.data), self.max_samples)

    def validate(self, global_state: dict[str, torch.Tensor], round_id: int) -> None:
        """Evaluate ``global_state`` on the held-out data and record it under ``round_id``."""
        if self.validation is None:
            return
        load_parameters(self.model, global_state)
        ev = evaluate(self.model, self.validation)
        self.metrics.record(LocalMetric(round_id, ev.loss, ev.accuracy, len(self.validation)))
        if self.log is not None:
            self.log(f"round {round_id} local validation: accuracy {ev.accuracy:.4f}, "
                     f"loss {ev.loss:.4f} on {len(self.validation)} held-out samples")  # fmt: skip

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        """Validate ``global_state`` on the held-out data, then train; the sample count is the
        capped one this node reports."""
        if round_id in self._refused:  # asked again every block: answer without work
            raise PrivacyBudgetExhausted(f"round {round_id}: skipped, past the target ε")
        self.validate(global_state, round_id)
        try:
            produced = super().produce(global_state, round_id, controls)
        except PrivacyBudgetExhausted as exc:
            if self.log is not None and round_id not in self._refused:
                self.log(str(exc))  # once per round: the node asks again every block
            self._refused.add(round_id)
            raise
        return replace(produced, num_samples=self.num_samples)
