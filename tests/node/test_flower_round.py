"""A Flower NumPyClient, written the way Flower's quickstart writes one, takes part in a whole
protocol round on the embedded chain as one participant's trainer: its update is committed,
revealed, checked by the committee and accepted with the sample count its fit() reported."""

from __future__ import annotations

import sys
import types
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from flchain_node.factory import build_participant
from flchain_node.flower import FlowerTrainer
from support.fedkit import Driver, small_federation
from torch import nn

from flchain.learning.data import TensorData
from flchain.learning.models import build_model

flwr = pytest.importorskip("flwr", reason="the Flower extra: pip install -e '.[flower]'")
from flwr.client import NumPyClient  # noqa: E402
from flwr.common import Context  # noqa: E402

DATA: dict[int, TensorData] = {}  # partition-id -> data, as a Flower simulation would load it


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net: nn.Module, parameters: list[np.ndarray]) -> None:
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    net.load_state_dict(OrderedDict({k: torch.tensor(v) for k, v in params_dict}), strict=True)


class DigitsClient(NumPyClient):  # type: ignore[misc]
    def __init__(self, net: nn.Module, data: TensorData) -> None:
        self.net, self.data = net, data

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        set_weights(self.net, parameters)
        opt = torch.optim.SGD(self.net.parameters(), lr=config["lr"])
        for _ in range(config["local_epochs"]):
            for s in range(0, len(self.data), config["batch_size"]):
                x, y = self.data.x[s : s + 32], self.data.y[s : s + 32]
                opt.zero_grad()
                nn.functional.cross_entropy(self.net(x), y).backward()
                opt.step()
        return get_weights(self.net), len(self.data), {}

    def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
        set_weights(self.net, parameters)
        with torch.no_grad():
            out = self.net(self.data.x)
        loss = float(nn.functional.cross_entropy(out, self.data.y))
        return loss, len(self.data), {"accuracy": float((out.argmax(1) == self.data.y).mean(
            dtype=torch.float32))}  # fmt: skip


def client_fn(context: Context):  # type: ignore[no-untyped-def]
    net = build_model("mlp", "digits")
    return DigitsClient(net, DATA[int(context.node_config["partition-id"])]).to_client()


@pytest.fixture
def flower_module() -> Iterator[str]:
    mod = types.ModuleType("flchain_test_flower_round")
    mod.client_fn = client_fn  # type: ignore[attr-defined]
    sys.modules[mod.__name__] = mod
    yield f"{mod.__name__}:client_fn"
    del sys.modules[mod.__name__]


def test_a_flower_client_completes_a_round(flower_module: str) -> None:
    with small_federation() as fed:
        DATA[2] = fed.fed.clients[2]
        source = FlowerTrainer(
            flower_module, fed.config, fed.manifest.spec, node_config={"partition-id": 2},
            max_samples=fed.config.ledger.max_samples,
        )  # fmt: skip
        nodes = dict(enumerate(fed.nodes))
        nodes[2] = build_participant(
            fed.deployment.task, fed.store, fed.accounts[2], source, manifest=fed.manifest
        )
        driver = Driver(fed, nodes, restart=lambda i: nodes[i])
        driver.run_until(driver.round_closed(0))
        report = nodes[0].report_of(0)
        flower = next(o for o in report.outcomes if o.participant == nodes[2].address)
        assert flower.accepted and flower.num_samples == len(fed.fed.clients[2])
        assert all(o.accepted for o in report.outcomes) and len(report.outcomes) == 3
        assert source.metrics.entries[0].samples == len(fed.fed.clients[2])  # its evaluate()
