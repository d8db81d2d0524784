from __future__ import annotations

import numpy as np
import pytest
import torch

from flchain.errors import DataError
from flchain.learning.data import (
    federate,
    load_digits,
    load_mnist5k,
    partition_dirichlet,
    partition_iid,
    partition_shards,
    synthetic,
)


def test_mnist5k_is_read_from_the_wheel() -> None:
    d = load_mnist5k()
    assert d.x.shape == (5000, 1, 28, 28) and d.x.dtype == torch.float32
    assert float(d.x.min()) >= 0.0 and float(d.x.max()) <= 1.0
    assert torch.bincount(d.y).tolist() == [500] * 10


def test_digits() -> None:
    d = load_digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.num_classes == 10 and float(d.x.max()) <= 1.0


@pytest.mark.parametrize("kind", ["iid", "dirichlet", "shards"])
def test_partitions_are_disjoint_complete_and_seeded(kind: str) -> None:
    d = load_digits()

    def parts(seed: int) -> list[np.ndarray]:
        if kind == "iid":
            return partition_iid(d, 7, seed)
        if kind == "dirichlet":
            return partition_dirichlet(d, 7, 0.3, seed)
        return partition_shards(d, 7, seed)

    p = parts(1)
    flat = np.concatenate(p)
    assert len(p) == 7 and len(flat) == len(d) and len(np.unique(flat)) == len(d)
    assert all(np.array_equal(a, b) for a, b in zip(p, parts(1), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(p, parts(2), strict=True))


def test_label_skew() -> None:
    d = load_digits()
    y = d.y.numpy()
    iid = [len(np.unique(y[p])) for p in partition_iid(d, 10, 0)]
    shards = [len(np.unique(y[p])) for p in partition_shards(d, 10, 0)]
    assert min(iid) == 10 and max(shards) <= 4  # 2 shards each, a shard may straddle a label
    dirichlet = [
        np.bincount(y[p], minlength=10).max() / len(p) for p in partition_dirichlet(d, 10, 0.1, 0)
    ]
    assert np.mean(dirichlet) > 0.5  # one label dominates a typical client


def test_federate_holds_out_a_stratified_test_split() -> None:
    fed = federate(load_digits(), 5, "dirichlet", alpha=0.5, test_fraction=0.25, seed=3)
    train = torch.cat([c.x for c in fed.clients]).flatten(1)
    assert len(fed.test) == 450 and sum(len(c) for c in fed.clients) == 1797 - 450
    # no test image is in any client's data
    common = {tuple(r) for r in train.tolist()} & {tuple(r) for r in fed.test.x.flatten(1).tolist()}
    dup_in_source = 1797 - len({tuple(r) for r in load_digits().x.flatten(1).tolist()})
    assert len(common) <= dup_in_source
    want = torch.bincount(load_digits().y).double() * 0.25  # stratified: every class ≈ 25 %
    assert (torch.bincount(fed.test.y) - want).abs().max() <= 1


def test_synthetic_is_seeded_and_heterogeneous() -> None:
    a, b = synthetic(1.0, 1.0, 6, seed=4), synthetic(1.0, 1.0, 6, seed=4)
    assert all(torch.equal(x.x, y.x) for x, y in zip(a.clients, b.clients, strict=True))
    assert a.clients[0].input_shape == (60,) and len(a.test) > 0
    assert len({len(c) for c in a.clients}) > 1  # power-law sizes


def test_bad_requests() -> None:
    d = load_digits()
    with pytest.raises(DataError):
        partition_iid(d, 0, 0)
    with pytest.raises(DataError):
        partition_dirichlet(d, 5, 0.0, 0)
    with pytest.raises(DataError, match="unknown partition"):
        federate(d, 5, "zipf")
