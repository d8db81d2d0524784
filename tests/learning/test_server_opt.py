"""Server optimizers in fixed point: the integer primitives are exact, each optimizer follows
its float formula within the fixed-point resolution, the arithmetic saturates instead of
wrapping, the state's bytes are canonical, and the result is the same bytes in any process."""

from __future__ import annotations

import hashlib
import math
import textwrap
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from support.tools import run_with_threads

from flchain.config import SERVER_OPTIMIZERS, TaskConfig, TrainingConfig, config_from_dict
from flchain.errors import ConfigError
from flchain.learning.codec import Update
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec
from flchain.learning.server_opt import (
    ONE,
    STATE_SLOTS,
    V_MAX,
    MalformedServerState,
    ServerOptimizer,
    decode_state,
    encode_state,
    isqrt,
    mul_q,
    round_div,
    server_step,
    to_q,
)

F = CodecParams().frac_bits
BOUND_Q = CodecParams().bound_q
SPEC = ModelSpec("test", (TensorSpec("a.weight", (40, 25)), TensorSpec("b.bias", (7,))))
ADAPTIVE = ("fedadam", "fedyogi", "fedadagrad")


def _round_away(x: Fraction) -> int:
    """The exact rounding the primitives promise: to nearest, ties away from zero."""
    n = math.floor(abs(x) + Fraction(1, 2))
    return n if x >= 0 else -n


def test_the_registry_covers_the_config_list() -> None:
    assert set(STATE_SLOTS) == set(SERVER_OPTIMIZERS)


def test_mul_q_is_exact_rounding() -> None:
    rng = np.random.default_rng(1)
    a = np.concatenate(
        [
            rng.integers(-(2**62) + 1, 2**62, 300, dtype=np.int64),
            rng.integers(-(2**31), 2**31, 300, dtype=np.int64),
            np.array([0, 1, -1, 3, -3, 2**40, -(2**40)], np.int64),
        ]
    )
    for c in (0, 1, ONE // 2, to_q(0.9), to_q(0.99), ONE - 1):
        got = mul_q(a, c)
        want = [_round_away(Fraction(int(x) * c, ONE)) for x in a]
        assert got.tolist() == want
    small = a[np.abs(a) < 2**40]  # the ranges a multiplier above one is used on
    for c in (ONE, to_q(2.5), to_q(1000.3)):
        assert mul_q(small, c).tolist() == [_round_away(Fraction(int(x) * c, ONE)) for x in small]


def test_round_div_and_isqrt_are_exact() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(-(2**61), 2**61, 500, dtype=np.int64)
    d = rng.integers(1, 2**31, 500, dtype=np.int64)
    d[:5] = [1, 2, 3, 4, 2**31 - 1]
    assert round_div(a, d).tolist() == [
        _round_away(Fraction(int(x), int(y))) for x, y in zip(a, d, strict=True)
    ]
    roots = rng.integers(0, 2**31, 400, dtype=np.int64)
    # perfect squares and their neighbours, where a float estimate is most likely off by one
    v = np.concatenate([roots * roots, roots * roots - 1, roots * roots + 1])
    v = np.concatenate([np.clip(v, 0, V_MAX), rng.integers(0, V_MAX, 400, dtype=np.int64)])
    v = np.concatenate([v, np.array([0, 1, 2, 3, V_MAX], np.int64)])
    assert isqrt(v).tolist() == [math.isqrt(int(x)) for x in v]


def _float_reference(name: str, opt: ServerOptimizer, deltas: list[np.ndarray]) -> np.ndarray:
    """Reddi et al.'s Algorithm 2 (FedAvgM: Flower's form) in float64, returning the last step."""
    m = np.zeros_like(deltas[0])
    v = np.zeros_like(deltas[0])
    step = np.zeros_like(deltas[0])
    for d in deltas:
        if name == "fedavgm":
            m = opt.momentum * m + d
            step = opt.lr * m
            continue
        m = opt.momentum * m + (1 - opt.momentum) * d
        if name == "fedadam":
            v = opt.beta2 * v + (1 - opt.beta2) * d * d
        elif name == "fedyogi":
            v = v - (1 - opt.beta2) * d * d * np.sign(v - d * d)
        else:
            v = v + d * d
        step = opt.lr * m / (np.sqrt(v) + opt.tau)
    return step


def _deltas(rounds: int, seed: int = 3) -> list[np.ndarray]:
    """Pseudo-gradients shaped like real ones: mostly ~1e-2, some tiny, some exactly zero."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rounds):
        d = rng.normal(0, 0.01, SPEC.num_params) * rng.choice([1, 1, 1, 0.01, 0], SPEC.num_params)
        out.append(np.rint(d * 2**F).astype(np.int32))
    return out


@pytest.mark.parametrize(
    "opt",
    [
        ServerOptimizer("fedavgm", lr=1.0, momentum=0.9),
        ServerOptimizer("fedavgm", lr=0.7, momentum=0.5),
        ServerOptimizer("fedadam", lr=0.01, momentum=0.9, beta2=0.99, tau=1e-3),
        ServerOptimizer("fedadam", lr=0.1, momentum=0.0, beta2=0.5, tau=1e-2),
        ServerOptimizer("fedyogi", lr=0.01, momentum=0.9, beta2=0.99, tau=1e-3),
        ServerOptimizer("fedadagrad", lr=0.1, momentum=0.9, tau=1e-3),
    ],
    ids=lambda o: f"{o.name}-lr{o.lr}-b{o.momentum}",
)
def test_steps_follow_the_float_formula(opt: ServerOptimizer) -> None:
    deltas = _deltas(8)
    state = opt.zero_state(SPEC.num_params)
    for d in deltas:
        step, state = opt.step(d, state, F, BOUND_Q)
    want = _float_reference(opt.name, opt, [d.astype(np.float64) * 2**-F for d in deltas])
    got = step.astype(np.float64) * 2**-F
    # Each round rounds m to one unit 2^-F (so m is off by at most one unit per round) and
    # √v + τ (>= τ) is off by under one unit; through r = m / (√v + τ) that is at most
    # (rounds + |r|) · 2^-F / τ on r, times lr, plus the final rounding of the step.
    unit, n = 2.0**-F, len(deltas)
    if opt.name == "fedavgm":
        tol = n * unit * (opt.lr + 1) + unit
    else:
        tol = (opt.lr * n * unit + np.abs(want) * unit) / opt.tau + 2 * unit
    err = np.abs(got - want)
    assert np.all(err <= tol), float(np.max(err - tol))
    if opt.name != "fedavgm":  # typically: the one-unit error of √v + τ, relative to τ
        typical = np.abs(want) > 1e-4
        assert float(np.median(err[typical] / np.abs(want[typical]))) <= unit / opt.tau
    assert np.any(got != 0)


def test_fedavgm_without_momentum_at_lr_one_is_fedavg() -> None:
    spec_update = Update(SPEC, _deltas(1)[0])
    opt = ServerOptimizer("fedavgm", lr=1.0, momentum=0.0)
    step, state = server_step(opt, spec_update, opt.zero_state(SPEC.num_params))
    assert np.array_equal(step.q, spec_update.q)
    assert np.array_equal(state["m"], spec_update.q)


def test_adaptive_arithmetic_saturates_instead_of_wrapping() -> None:
    """The largest pseudo-gradients the codec allows, round after round: v clamps at its
    bound, the step stays within the update bound, and nothing wraps to the other sign."""
    big = np.full(SPEC.num_params, BOUND_Q, np.int32)
    big[::2] = -BOUND_Q
    for name in ADAPTIVE:
        opt = ServerOptimizer(name, lr=1000.0, momentum=0.0, beta2=0.0, tau=2.0**-F)
        state = opt.zero_state(SPEC.num_params)
        for _ in range(3):
            step, state = opt.step(big, state, F, BOUND_Q)
            assert np.all(state["v"] >= 0) and np.all(state["v"] <= V_MAX)
            assert np.all(np.abs(step) <= BOUND_Q)
            assert np.array_equal(np.sign(step), np.sign(big))  # no wrap-around
    momentum = ServerOptimizer("fedavgm", lr=1000.0, momentum=0.99)
    state = momentum.zero_state(SPEC.num_params)
    for _ in range(5):
        step, state = momentum.step(big, state, F, BOUND_Q)
        assert np.array_equal(np.sign(step), np.sign(big))


def test_state_bytes_are_canonical_and_checked() -> None:
    opt = ServerOptimizer("fedadam", lr=0.01)
    state = opt.zero_state(SPEC.num_params)
    for d in _deltas(3):
        _, state = opt.step(d, state, F, BOUND_Q)
    data = encode_state(state, opt, SPEC)
    back = decode_state(data, opt, SPEC)
    assert set(back) == {"m", "v"}
    assert encode_state(back, opt, SPEC) == data
    with pytest.raises(MalformedServerState, match="not a fedyogi state"):
        decode_state(data, ServerOptimizer("fedyogi"), SPEC)  # the header names the optimizer
    with pytest.raises(MalformedServerState):
        decode_state(data[:-8], opt, SPEC)
    negative = {"m": state["m"], "v": state["v"].copy()}
    negative["v"][0] = -1
    with pytest.raises(MalformedServerState, match="v is outside"):
        decode_state(encode_state(negative, opt, SPEC), opt, SPEC)
    with pytest.raises(MalformedServerState, match="keeps"):
        encode_state({"m": state["m"]}, opt, SPEC)


_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np, torch
    torch.set_num_threads(int(sys.argv[1]))
    sys.path.insert(0, sys.argv[2])
    from test_server_opt import digest_of_run
    print(digest_of_run())
    """
)


def digest_of_run() -> str:
    """sha-256 over every step and state of four optimizers' runs (the subprocess's target)."""
    h = hashlib.sha256()
    for name in ("fedavgm", *ADAPTIVE):
        opt = ServerOptimizer(name, lr=0.05)
        state = opt.zero_state(SPEC.num_params)
        for d in _deltas(5, seed=9):
            step, state = server_step(opt, Update(SPEC, d), state)
            h.update(step.q.tobytes())
            h.update(encode_state(state, opt, SPEC))
    return h.hexdigest()


def test_same_bytes_twice_and_in_another_process_with_other_threads() -> None:
    torch.set_num_threads(1)
    here = digest_of_run()
    assert digest_of_run() == here
    assert run_with_threads(_SCRIPT, 4, str(Path(__file__).parent)).strip() == here


def test_config_validation_names_the_field() -> None:
    ok = config_from_dict({"training": {"server_optimizer": "fedadam", "server_lr": 0.01}})
    assert ok.training.server_optimizer == "fedadam"
    cases = {
        "server_optimizer": ({"server_optimizer": "adam"}, "training.server_optimizer"),
        "lr without optimizer": ({"server_lr": 0.5}, "training.server_lr set"),
        "lr": ({"server_optimizer": "fedavgm", "server_lr": 0.0}, "training.server_lr"),
        "momentum": ({"server_optimizer": "fedavgm", "server_momentum": 1.0}, "server_momentum"),
        "tau": ({"server_optimizer": "fedadam", "server_tau": 1e-9}, "below the update"),
        "beta2": ({"server_optimizer": "fedyogi", "server_beta2": -0.1}, "server_beta2"),
    }
    for training, message in cases.values():
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"training": training})


def test_a_task_without_a_server_optimizer_keeps_its_manifest_bytes() -> None:
    """The new fields are left out of the manifest at their defaults (old digests hold)."""
    plain = TaskConfig().to_dict()["training"]
    assert not any(k.startswith("server_") for k in plain)
    adam = TaskConfig(training=TrainingConfig(server_optimizer="fedadam", server_lr=0.01))
    assert adam.to_dict()["training"]["server_optimizer"] == "fedadam"
    assert adam.to_dict()["training"]["server_lr"] == 0.01
    assert adam.to_dict()["training"]["server_beta2"] == 0.99  # defaults spelled out
