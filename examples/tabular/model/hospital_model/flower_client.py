"""A Flower client for the tabular task, written the way Flower's PyTorch quickstart writes one
(``NumPyClient`` with ``get_weights``/``set_weights`` over ``state_dict``, a ``client_fn`` taking
a ``Context``, a ``ClientApp``). FLChain runs it unchanged as a node's trainer:

    flchain node run --flower-client hospital_model.flower_client:client_fn --data hospital_a.csv

The data path comes from ``context.node_config["data-path"]``, as in a Flower deployment.
"""

from __future__ import annotations

import csv
from collections import OrderedDict

import numpy as np
import torch
from flwr.client import ClientApp, NumPyClient
from flwr.common import Context
from torch import nn

from hospital_model import make_model


def load_data(path: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_train, y_train, x_val, y_val) from a hospital CSV, features standardised locally."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], np.asarray(rows[1:], dtype=np.float64)
    label = header.index("label")
    y = body[:, label].astype(np.int64)
    x = np.delete(body, label, axis=1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    perm = np.random.default_rng(0).permutation(len(y))
    cut = int(0.8 * len(y))
    tr, va = perm[:cut], perm[cut:]
    as_x = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return as_x(x[tr]), torch.tensor(y[tr]), as_x(x[va]), torch.tensor(y[va])


def get_weights(net: nn.Module) -> list[np.ndarray]:
    return [val.cpu().numpy() for _, val in net.state_dict().items()]


def set_weights(net: nn.Module, parameters: list[np.ndarray]) -> None:
    params_dict = zip(net.state_dict().keys(), parameters, strict=True)
    state_dict = OrderedDict({k: torch.tensor(v) for k, v in params_dict})
    net.load_state_dict(state_dict, strict=True)


def train(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float) -> float:
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    total = 0.0
    for _ in range(epochs):
        for s in range(0, len(y), 16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x[s : s + 16]), y[s : s + 16])
            loss.backward()
            opt.step()
            total += loss.item()
    return total


def test(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    net.eval()
    with torch.no_grad():
        out = net(x)
    return float(nn.functional.cross_entropy(out, y)), float((out.argmax(1) == y).float().mean())


class FlowerClient(NumPyClient):
    def __init__(self, net: nn.Module, data: tuple[torch.Tensor, ...], local_epochs: int) -> None:
        self.net = net
        self.x, self.y, self.x_val, self.y_val = data
        self.local_epochs = local_epochs

    def fit(self, parameters, config):  # type: ignore[no-untyped-def]
        set_weights(self.net, parameters)
        train(self.net, self.x, self.y, self.local_epochs, float(config.get("lr", 0.05)))
        return get_weights(self.net), len(self.y), {}

    def evaluate(self, parameters, config):  # type: ignore[no-untyped-def]
        set_weights(self.net, parameters)
        loss, accuracy = test(self.net, self.x_val, self.y_val)
        return loss, len(self.y_val), {"accuracy": accuracy}


def client_fn(context: Context):  # type: ignore[no-untyped-def]
    net = make_model()
    data = load_data(str(context.node_config["data-path"]))
    run_config = context.run_config
    local_epochs = int(run_config.get("local-epochs", run_config.get("local_epochs", 1)))
    return FlowerClient(net, data, local_epochs).to_client()


app = ClientApp(client_fn=client_fn)
