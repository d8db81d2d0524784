"""Run an existing Flower client as the node's trainer (``--flower-client module:client_fn``).

Flower's server would send the client the global model's arrays and a config dict and take back
the arrays its ``fit()`` returns; here FLChain plays that part for one client each round. The
arrays are the task's parameters in the manifest's order (for a model without buffers that is
``model.state_dict()`` order, which is what Flower's quickstart ``get_weights`` returns). What
comes back is checked against the task's layout and turned into the update FLChain commits.

``client_fn`` is called once, the way Flower's ``ClientApp`` calls it: with a
``flwr.common.Context`` whose ``node_config`` holds ``data-path`` (``--data``, if given) and
whose ``run_config`` holds the task's training settings. It may return a ``NumPyClient`` or a
``Client`` (``NumPyClient.to_client()``). Needs ``pip install 'flchain[flower]'``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import torch

from flchain.config import TaskConfig
from flchain.errors import ConfigError, ProtocolError
from flchain.learning.models import ModelSpec
from flchain.learning.scaffold import Controls
from flchain.targets import import_target, one_line
from flchain_node.local import LocalMetric, LocalMetrics
from flchain_node.participant import Produced

# Flower's telemetry posts to Flower's servers unless switched off (read when flwr is first
# imported, lazily below): a node never dials out unless its operator says so.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

HINT = "pip install 'flchain[flower]' and the package that provides the client"


class FlowerClientError(ProtocolError):
    """A Flower client failed or returned arrays that do not fit the task's layout."""


def round_config(config: TaskConfig, round_id: int) -> dict[str, Any]:
    """The config dict a Flower strategy's ``on_fit_config_fn`` would send for ``round_id``
    (Flower counts server rounds from 1)."""
    t = config.training
    return {
        "server_round": round_id + 1,
        "local_epochs": t.epochs,
        "epochs": t.epochs,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "learning_rate": t.lr,
        "proximal_mu": t.mu if t.algorithm == "fedprox" else 0.0,
    }


class FlowerTrainer:
    """An update source backed by a Flower client."""

    def __init__(
        self,
        target: str,
        config: TaskConfig,
        spec: ModelSpec,
        *,
        node_config: dict[str, Any] | None = None,
        max_samples: int,
        metrics: LocalMetrics | None = None,
        log: Any = None,
    ) -> None:
        self.target, self.config, self.spec = target, config, spec
        self.max_samples = max_samples
        self.metrics = metrics or LocalMetrics(None)
        self.log = log
        client_fn = import_target(target, "Flower client_fn", HINT)
        try:
            from flwr.common import Context, RecordDict
        except ImportError as exc:
            raise ConfigError(f"--flower-client needs Flower: {HINT}") from exc
        context = Context(
            run_id=0,
            node_id=0,
            node_config=dict(node_config or {}),
            state=RecordDict(),
            run_config=round_config(config, 0),
        )
        try:
            self.client = client_fn(context)
        except Exception as exc:
            raise FlowerClientError(
                f"Flower client_fn {target} raised {type(exc).__name__}: {one_line(exc)}"
            ) from exc

    # --- talking to the client ----------------------------------------------------------------

    def _arrays(self, global_state: dict[str, torch.Tensor]) -> list[np.ndarray]:
        return [global_state[t.name].numpy() for t in self.spec.tensors]

    def _fit(self, arrays: list[np.ndarray], cfg: dict[str, Any]) -> tuple[list[Any], int]:
        from flwr.client import NumPyClient
        from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays

        try:
            if isinstance(self.client, NumPyClient):
                out = self.client.fit(arrays, cfg)
                if not (isinstance(out, tuple) and len(out) == 3):
                    raise FlowerClientError("fit() must return (arrays, num_examples, metrics)")
                return list(out[0]), int(out[1])
            res = self.client.fit(FitIns(ndarrays_to_parameters(arrays), cfg))
            return parameters_to_ndarrays(res.parameters), int(res.num_examples)
        except FlowerClientError:
            raise
        except Exception as exc:
            raise FlowerClientError(
                f"Flower client {self.target} fit() failed: {type(exc).__name__}: {one_line(exc)}"
            ) from exc

    def _evaluate(
        self, arrays: list[np.ndarray], cfg: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]] | None:
        from flwr.client import NumPyClient
        from flwr.common import EvaluateIns, ndarrays_to_parameters

        try:
            if isinstance(self.client, NumPyClient):
                loss, n, metrics = self.client.evaluate(arrays, cfg)
                return float(loss), int(n), dict(metrics)
            res = self.client.evaluate(EvaluateIns(ndarrays_to_parameters(arrays), cfg))
            return float(res.loss), int(res.num_examples), dict(res.metrics)
        except NotImplementedError:
            return None  # the client does not evaluate: no local metrics
        except Exception as exc:
            raise FlowerClientError(f"Flower client {self.target} evaluate() failed: "
                                    f"{type(exc).__name__}: {one_line(exc)}") from exc  # fmt: skip

    # --- the update source --------------------------------------------------------------------

    def to_delta(
        self, returned: list[Any], global_state: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``returned`` arrays as a delta in the task's layout, or a :class:`FlowerClientError`
        naming the first array that does not fit."""
        tensors = self.spec.tensors
        if len(returned) != len(tensors):
            raise FlowerClientError(
                f"Flower client {self.target} returned {len(returned)} arrays; the task's model "
                f"has {len(tensors)} parameters ({', '.join(t.name for t in tensors[:4])}...)"
            )
        delta = {}
        for i, (t, arr) in enumerate(zip(tensors, returned, strict=True)):
            a = np.asarray(arr)
            if tuple(a.shape) != t.shape:
                raise FlowerClientError(
                    f"Flower client {self.target}: array #{i} has shape {list(a.shape)}, the "
                    f"task's parameter {t.name!r} is {list(t.shape)}"
                )
            if a.dtype.kind != "f":
                raise FlowerClientError(
                    f"Flower client {self.target}: array #{i} ({t.name!r}) has dtype {a.dtype}, "
                    "expected floating point"
                )
            # Flower clients often return float64 from numpy maths: the codec is float32.
            delta[t.name] = torch.from_numpy(a.astype(np.float32)) - global_state[t.name]
        return delta

    def produce(
        self, global_state: dict[str, torch.Tensor], round_id: int, controls: Controls | None
    ) -> Produced:
        """A round of the Flower client (which knows nothing of control variates: a SCAFFOLD
        round gets no ``c_i⁺``, and the node refuses it)."""
        arrays, cfg = self._arrays(global_state), round_config(self.config, round_id)
        evaluated = self._evaluate(arrays, cfg)
        if evaluated is not None:
            loss, n, metrics = evaluated
            accuracy = float(metrics.get("accuracy", math.nan))
            self.metrics.record(LocalMetric(round_id, loss, accuracy, n))
            if self.log is not None:
                self.log(f"round {round_id} local validation (Flower evaluate): "
                         f"accuracy {accuracy:.4f}, loss {loss:.4f} on {n} samples")  # fmt: skip
        returned, num_examples = self._fit(arrays, cfg)
        delta = self.to_delta(returned, global_state)
        if num_examples < 1:
            raise FlowerClientError(f"Flower client {self.target} trained on {num_examples} "
                                    "examples")  # fmt: skip
        return Produced(delta, min(num_examples, self.max_samples))

    def validate(self, global_state: dict[str, torch.Tensor], round_id: int) -> None:
        """Record the client's evaluation of ``global_state`` (e.g. the final model)."""
        evaluated = self._evaluate(self._arrays(global_state), round_config(self.config, round_id))
        if evaluated is not None:
            loss, n, metrics = evaluated
            self.metrics.record(
                LocalMetric(round_id, loss, float(metrics.get("accuracy", math.nan)), n)
            )

    def check(self, global_state: dict[str, torch.Tensor]) -> None:
        """Before staking: run one fit on the initial model and check what comes back fits the
        task (wrong shapes are caught here, not after the node has staked)."""
        returned, num_examples = self._fit(self._arrays(global_state), round_config(self.config, 0))
        self.to_delta(returned, global_state)
        if num_examples < 1:
            raise FlowerClientError(f"Flower client {self.target} trained on {num_examples} "
                                    "examples")  # fmt: skip
