"""The validation score: an exact integer forward pass every committee member computes alike,
and the reward factor centered_clip derives from it."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
import torch
from support.tools import run_with_threads

from flchain.errors import ConfigError, DataError
from flchain.learning.aggregation import CenteredClip, ClientUpdate
from flchain.learning.attacks import backdoor_data, boost
from flchain.learning.codec import _slices, quantize
from flchain.learning.data import TensorData, federate, load_digits
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec, build_model
from flchain.learning.simulation import SimConfig, run_federation
from flchain.learning.training import TrainConfig, train_local
from flchain.learning.validation import (
    ACT_CAP,
    INPUT_BITS,
    WEIGHT_CAP,
    RoundValidation,
    ValidationSet,
    check_supported,
    correct,
    fixed_model,
    hinge_loss,
    logits,
)

F = 20
DIMS = (12, 7, 5, 4)  # in -> hidden -> hidden -> classes
SPEC = ModelSpec(
    "mlp",
    tuple(
        t
        for i, (a, b) in enumerate(itertools.pairwise(DIMS))
        for t in (
            TensorSpec(f"net.{2 * i + 1}.weight", (b, a)),
            TensorSpec(f"net.{2 * i + 1}.bias", (b,)),
        )
    ),
    CodecParams("fixed", F, 64.0),
)


def _reference_logits(w: np.ndarray, x: np.ndarray) -> list[list[int]]:
    """The forward pass in Python integers, straight from the module's definition."""
    flat = [max(-WEIGHT_CAP, min(WEIGHT_CAP, int(v))) for v in w.tolist()]
    where = {}
    for name, _shape, a, b in _slices(SPEC):
        where[name] = flat[a:b]
    out = []
    for row in x.tolist():
        a_ = [max(-ACT_CAP, min(ACT_CAP, v)) for v in row]
        layers = len(DIMS) - 1
        for i in range(layers):
            wt, bias = where[f"net.{2 * i + 1}.weight"], where[f"net.{2 * i + 1}.bias"]
            n_in, n_out = DIMS[i], DIMS[i + 1]
            z = [
                sum(a_[k] * wt[j * n_in + k] for k in range(n_in)) + (bias[j] << INPUT_BITS)
                for j in range(n_out)
            ]
            a_ = [min(max(v, 0) >> F, ACT_CAP) for v in z] if i < layers - 1 else z
        out.append(a_)
    return out


def test_integer_forward_pass_is_exact_at_the_caps() -> None:
    rng = np.random.default_rng(5)
    for scale in (2**18, 2**29, 2**33):  # small, near and beyond the weight cap
        w = rng.integers(-scale, scale, SPEC.num_params).astype(np.int64)
        x = rng.integers(-(2**21), 2**21, (30, DIMS[0])).astype(np.int64)
        data = ValidationSet(x, rng.integers(0, DIMS[-1], 30), DIMS[-1])
        assert logits(w, SPEC, data).tolist() == _reference_logits(w, x)


def test_forward_pass_matches_torch_up_to_quantization() -> None:
    fed = federate(load_digits(), 4, "iid", seed=0)
    model = build_model("mlp", "digits", seed=1)
    spec = ModelSpec.from_model(model, "mlp")
    val = ValidationSet.from_arrays(fed.test.x, fed.test.y, 10)
    z = logits(fixed_model(model.state_dict(), spec), spec, val) / 2.0 ** (INPUT_BITS + F)
    with torch.no_grad():
        want = model(fed.test.x).double().numpy()
    assert np.abs(z - want).max() < 0.05  # activations are floored to 1/256
    assert correct(fixed_model(model.state_dict(), spec), spec, val) == int(
        np.count_nonzero(z.argmax(1) == fed.test.y.numpy())
    )


def test_hinge_loss_counts_margins_exactly() -> None:
    spec = ModelSpec(
        "logreg", (TensorSpec("linear.weight", (2, 1)), TensorSpec("linear.bias", (2,)))
    )
    # logit_k = w_k·x: with x = 1, class 0 wins by 3/4 of a margin, class 1 loses by 3/4
    w = fixed_model(
        {"linear.weight": torch.tensor([[0.75], [0.0]]), "linear.bias": torch.zeros(2)}, spec
    )
    unit = 1 << (INPUT_BITS + spec.codec.frac_bits)
    data = ValidationSet.from_arrays(np.ones((2, 1)), np.array([0, 1]), 2)
    assert hinge_loss(w, spec, data) == unit // 4 + unit + 3 * unit // 4


def test_unsupported_models_and_bad_sets_are_refused() -> None:
    model = build_model("cnn", "digits")
    with pytest.raises(ConfigError, match="linear-stack"):
        check_supported(ModelSpec.from_model(model, "cnn"))
    with pytest.raises(DataError, match="labels"):
        ValidationSet.from_arrays(np.zeros((3, 4)), np.array([0, 1, 5]), 3)
    with pytest.raises(DataError):
        ValidationSet.from_arrays(np.zeros((3, 4)), np.array([0, 1]), 3)


# --- the reward factor on a real round ---------------------------------------------------------

CFG = TrainConfig(epochs=1, batch_size=10, lr=0.1)


@pytest.fixture(scope="module")
def round_inputs():  # type: ignore[no-untyped-def]
    """A Dirichlet(0.5) federation of the digits after two clean rounds: the global model,
    the validation set (a slice of the test split), and each client's honest update."""
    fed = federate(load_digits(), 10, "dirichlet", alpha=0.5, seed=0)
    model = build_model("mlp", "digits", seed=0)
    spec = ModelSpec.from_model(model, "mlp")
    run_federation(model, spec, fed, CenteredClip(), SimConfig(2, CFG))
    val = ValidationSet.from_arrays(fed.test.x[:200], fed.test.y[:200], 10)
    rv = RoundValidation(val, fixed_model(model.state_dict(), spec))
    deltas = [train_local(model, c, CFG, seed=i).delta for i, c in enumerate(fed.clients)]
    return fed, model, spec, rv, deltas


def _scores(fed, spec, deltas, rv):  # type: ignore[no-untyped-def]
    ups = [
        ClientUpdate(f"p{i}", quantize(d, spec), len(fed.clients[i])) for i, d in enumerate(deltas)
    ]
    return {d.participant: d for d in CenteredClip().aggregate(ups, validation=rv).decisions}


def test_honest_non_iid_updates_are_all_accepted_and_paid(round_inputs) -> None:  # type: ignore[no-untyped-def]
    fed, _model, spec, rv, deltas = round_inputs
    with_val = _scores(fed, spec, deltas, rv)
    without = _scores(fed, spec, deltas, None)
    assert all(d.accepted and d.score > 0 for d in with_val.values())
    # the factor only ever lowers a score, and leaves every honest client a real share
    mean = sum(d.score for d in with_val.values()) / len(with_val)
    for p, d in with_val.items():
        assert d.score <= without[p].score
        assert d.score >= mean / 4, (p, d.score, mean)


def _factor_and_ratio(round_inputs, i: int, delta):  # type: ignore[no-untyped-def]
    fed, _model, spec, rv, deltas = round_inputs
    sent = list(deltas)
    sent[i] = delta
    out = {}
    for key, v in (("with", rv), ("without", None)):
        s = _scores(fed, spec, sent, v)
        honest = [d.score for p, d in s.items() if p != f"p{i}"]
        out[key] = s[f"p{i}"].score / (sum(honest) / len(honest))
    return out


def test_a_label_flipped_update_loses_reward(round_inputs) -> None:  # type: ignore[no-untyped-def]
    fed, model, *_ = round_inputs
    for i in (0, 1, 2):  # each client's own data, labels flipped y -> 9 - y
        c = fed.clients[i]
        flipped = train_local(model, TensorData(c.x, 9 - c.y, 10), CFG, seed=i).delta
        r = _factor_and_ratio(round_inputs, i, flipped)
        # paid less, relative to the honest clients, than by direction alone (on the digits
        # after two rounds the cut is 9-13%; the MNIST suite measures the full effect)
        assert r["with"] < r["without"], (i, r)


def test_a_boosted_backdoor_loses_reward(round_inputs) -> None:  # type: ignore[no-untyped-def]
    fed, model, *_ = round_inputs
    gen = torch.Generator().manual_seed(7)
    paid = 0
    for i in (0, 1, 2):
        poisoned = backdoor_data(fed.clients[i], 0, 0.5, gen)
        delta = boost(train_local(model, poisoned, CFG, seed=i).delta, 3.0)
        r = _factor_and_ratio(round_inputs, i, delta)
        if r["without"]:  # not already rejected by the norm screen
            paid += 1
            assert r["with"] <= 0.5 * r["without"] and r["with"] <= 0.5, (i, r)
    assert paid  # the screens alone do not settle it


_CHILD = """
import hashlib, json, sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from flchain.learning.aggregation import CenteredClip, ClientUpdate
from flchain.learning.codec import Update
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec
from flchain.learning.validation import RoundValidation, ValidationSet, hinge_loss
dims = (784, 200, 200, 10)
spec = ModelSpec("mlp", tuple(t for i, (a, b) in enumerate(zip(dims, dims[1:])) for t in (
    TensorSpec(f"net.{2*i+1}.weight", (b, a)), TensorSpec(f"net.{2*i+1}.bias", (b,)))),
    CodecParams("fixed", 20, 64.0))
rng = np.random.default_rng(4)
g = rng.normal(0, 0.05 * 2**20, spec.num_params).astype(np.int64)
x = rng.uniform(0, 1, (300, 784)); y = rng.integers(0, 10, 300)
val = ValidationSet.from_arrays(x, y, 10)
base = rng.normal(0, 0.01 * 2**20, spec.num_params)
q = [np.rint(base * rng.uniform(-1, 3) + rng.normal(0, 0.01 * 2**20, spec.num_params))
     .astype(np.int32) for _ in range(8)]
order = rng.permutation(8) if sys.argv[1] == "2" else range(8)
ups = [ClientUpdate(f"p{i}", Update(spec, q[i]), 10 + i) for i in order]
r = CenteredClip().aggregate(ups, validation=RoundValidation(val, g))
h = hashlib.sha256(json.dumps(r.report()).encode() + r.update.q.tobytes())
h.update(str([hinge_loss(g + v, spec, val) for v in q]).encode())
print(h.hexdigest(), sum("validation loss" in d.reason for d in r.decisions))
"""


def test_same_verdicts_in_separate_processes_with_1_and_2_threads() -> None:
    outs = [run_with_threads(_CHILD, threads).split() for threads in (1, 2)]
    assert outs[0] == outs[1]
    assert len(outs[0][0]) == 64 and outs[0][0] != hashlib.sha256(b"").hexdigest()
    assert int(outs[0][1]) > 0  # the validation factor took part in the verdicts
