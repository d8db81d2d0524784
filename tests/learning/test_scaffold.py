"""SCAFFOLD's maths: Option II against a float reference, the server's exact fixed-point step,
the state's canonical bytes and the combinations a task may not ask for."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from flchain.config import TaskConfig, TrainingConfig
from flchain.errors import ConfigError
from flchain.learning.aggregation import aggregator_from_config
from flchain.learning.codec import decode_update, encode_update, flat_layout
from flchain.learning.data import TensorData, federate, load_digits
from flchain.learning.models import CodecParams, ModelSpec, build_model
from flchain.learning.scaffold import (
    CONTROL,
    Controls,
    MalformedControlState,
    decode_control,
    decode_control_state,
    encode_control,
    flatten,
    server_control_step,
    split,
    train_scaffold,
    update_spec,
)
from flchain.learning.server_opt import MalformedServerState, ServerOptimizer, to_q
from flchain.learning.simulation import SimConfig, run_federation
from flchain.learning.training import DPConfig, TrainConfig, train_local

F = 20


@pytest.fixture(scope="module")
def data() -> TensorData:
    return federate(load_digits(), 8, "shards", seed=0).clients[0]


def _setup() -> tuple[nn.Module, ModelSpec, np.ndarray, np.ndarray]:
    model = build_model("logreg", "digits", seed=3)
    spec = ModelSpec.from_model(model, "logreg")
    gen = np.random.default_rng(0)
    client_c = gen.normal(0, 0.05, spec.num_params)
    server_c = np.rint(gen.normal(0, 0.05, spec.num_params) * 2**F).astype(np.int64)
    return model, spec, client_c, server_c


def test_option_two_matches_a_float_reference(data: TensorData) -> None:
    model, spec, client_c, server_c = _setup()
    lr, epochs = 0.1, 3
    config = TrainConfig(epochs=epochs, batch_size=len(data), lr=lr, scaffold=True)
    run = train_scaffold(model, data, config, 7, Controls(spec, client_c, server_c))
    assert run.train.steps == epochs  # full batch: one step per epoch

    # reference: float64 full-batch gradient descent on g - c_i + c, then Option II
    ref = copy.deepcopy(model).double()
    c = server_c.astype(np.float64) * 2.0**-F
    x = flatten(dict(ref.named_parameters()), spec)
    correction = c - client_c
    for _ in range(epochs):
        ref.zero_grad()
        nn.functional.cross_entropy(ref(data.x.double()), data.y).backward()  # type: ignore[no-untyped-call]
        with torch.no_grad():
            for name, shape, a, b in flat_layout(spec):
                p = dict(ref.named_parameters())[name]
                assert p.grad is not None
                p -= lr * (p.grad + torch.from_numpy(correction[a:b]).reshape(shape))
    y = flatten(dict(ref.named_parameters()), spec)
    c_plus = client_c - c + (x - y) / (epochs * lr)

    dw, dc = split(run.update, spec)
    assert np.allclose(dw.q * 2.0**-F, y - x, atol=1e-5)
    assert np.allclose(run.client_control, c_plus, atol=1e-4)
    # c_i moves by the quantized Δc it sends (the server sees the same amounts), which is
    # Option II's Δc to the codec's resolution
    assert np.allclose(run.client_control - client_c, dc * 2.0**-F, rtol=0, atol=1e-15)
    assert np.allclose(dc * 2.0**-F, c_plus - client_c, rtol=0, atol=1e-4)
    # and the correction mattered: without it the step is a different one
    plain = train_local(model, data, TrainConfig(epochs=epochs, batch_size=len(data), lr=lr), 7)
    assert not np.allclose(flatten(plain.delta, spec), y - x, atol=1e-3)


def test_zero_controls_train_exactly_as_fedavg(data: TensorData) -> None:
    model, spec, _, _ = _setup()
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05)
    zeros = np.zeros(spec.num_params)
    scaffold = TrainConfig(epochs=2, batch_size=16, lr=0.05, scaffold=True)
    run = train_scaffold(model, data, scaffold, 5, Controls(spec, zeros, zeros.astype(np.int64)))
    plain = train_local(model, data, config, 5)
    assert run.train.steps == 2 * -(-len(data) // 16)
    assert all(torch.equal(run.train.delta[k], plain.delta[k]) for k in plain.delta)


def test_the_update_spec_carries_a_control_tensor_per_parameter() -> None:
    _, spec, _, _ = _setup()
    uspec = update_spec(spec)
    assert [t.name for t in uspec.tensors] == [t.name for t in spec.tensors] + [
        CONTROL + t.name for t in spec.tensors
    ]
    assert uspec.num_params == 2 * spec.num_params and uspec.digest() != spec.digest()


def test_the_server_step_is_exact_integer_arithmetic() -> None:
    gen = np.random.default_rng(1)
    control = gen.integers(-(2**24), 2**24, 1000)
    delta = gen.integers(-(2**30), 2**30, 1000)
    bound = 2**26
    whole = server_control_step(control, delta, 1.0, 2**40)
    assert np.array_equal(whole, control + delta)  # C = 1: plain addition
    tenth = server_control_step(control, delta, 0.1, bound)
    q = to_q(0.1)
    for c, d, got in zip(control.tolist(), delta.tolist(), tenth.tolist(), strict=True):
        mag = (abs(d) * q + 2**30) >> 31  # round(|d|·q / 2^31), ties away from zero
        assert got == max(-bound, min(bound, c + (mag if d >= 0 else -mag)))
    assert (np.abs(tenth) == bound).any()  # the clamp was exercised


def test_the_state_has_one_canonical_encoding() -> None:
    _, spec, _, _ = _setup()
    c = np.arange(spec.num_params, dtype=np.int64) - 300
    blob = encode_control(c, spec)
    assert np.array_equal(decode_control(blob, spec), c)
    assert encode_control(decode_control(blob, spec), spec) == blob
    with pytest.raises(MalformedControlState):
        decode_control(blob[:-8], spec)
    with pytest.raises(MalformedControlState):
        decode_control(blob + b"\0", spec)
    other = ModelSpec.from_model(build_model("logreg", "digits"), "other")
    with pytest.raises(MalformedControlState):
        decode_control(blob, other)
    too_big = c.copy()
    too_big[0] = spec.codec.bound_q + 1
    with pytest.raises(MalformedControlState, match="bound"):
        decode_control(encode_control(too_big, spec), spec)


def test_combinations_that_do_not_fit_are_refused() -> None:
    dp = {"clip": 1.0, "noise_multiplier": 1.0, "delta": 1e-5}
    with pytest.raises(ConfigError, match="scaffold"):
        TaskConfig(training=TrainingConfig(algorithm="scaffold", dp=dp)).validate()
    TaskConfig(training=TrainingConfig(algorithm="scaffold")).validate()
    with pytest.raises(ConfigError, match="scaffold"):
        TrainConfig(scaffold=True, dp=DPConfig(1.0, 1.0))
    # a server optimizer steps with the Δw half (tests/node/test_committee_scaffold.py)
    adam = TrainingConfig(algorithm="scaffold", server_optimizer="fedadam", server_lr=0.01)
    TaskConfig(training=adam).validate()


def test_the_state_carries_a_server_optimizers_slots() -> None:
    _, spec, _, _ = _setup()
    c = np.arange(spec.num_params, dtype=np.int64) - 300
    adam = ServerOptimizer("fedadam", lr=0.01)
    state = {"m": c * 3, "v": c * c}
    blob = encode_control(c, spec, adam, state)
    got, slots = decode_control_state(blob, spec, adam)
    assert np.array_equal(got, c) and set(slots) == {"m", "v"}
    assert all(np.array_equal(slots[k], state[k]) for k in state)
    assert encode_control(got, spec, adam, slots) == blob
    assert np.array_equal(decode_control(blob, spec, adam), c)
    # c alone keeps its bytes; a stateless optimizer adds nothing to them
    assert encode_control(c, spec, ServerOptimizer("none"), {}) == encode_control(c, spec)
    for other in (None, ServerOptimizer("fedyogi", lr=0.01), ServerOptimizer("fedavgm")):
        with pytest.raises(MalformedControlState):
            decode_control_state(blob, spec, other)  # another task's state
    with pytest.raises(MalformedControlState):
        encode_control(c, spec, adam, {"m": c})  # v missing
    with pytest.raises(MalformedServerState, match="v is outside"):
        decode_control_state(encode_control(c, spec, adam, {"m": c, "v": -c - 1}), spec, adam)


@pytest.mark.parametrize("attack", ["sign_flip", "alie", "free_rider"])
def test_scaffold_attackers_send_scaffold_updates(attack: str) -> None:
    """An attacker crafts from the joint Δw‖Δc a SCAFFOLD client sends, so its update is a
    valid SCAFFOLD update the rule weighs (not a decode failure that only looks robust)."""
    fed = federate(load_digits(), 6, "iid", seed=0)
    model = build_model("logreg", "digits", seed=0)
    spec = ModelSpec.from_model(model, "logreg")
    train = TrainConfig(epochs=1, batch_size=16, lr=0.05, scaffold=True)
    sim = SimConfig(rounds=2, train=train, attack=attack, num_attackers=2)
    result = run_federation(model, spec, fed, aggregator_from_config("fedavg"), sim)
    for stats in result.rounds:
        assert len(stats.decisions) == 6
        # decoded, then weighed: the free-riders' zeros are refused as the empty update they are
        assert all(d.accepted or d.reason.startswith("empty update") for d in stats.decisions)
        assert sum(d.accepted for d in stats.decisions) == (4 if attack == "free_rider" else 6)


@pytest.mark.parametrize("encoding", ["fixed", "int16", "int8"])
def test_c_i_moves_by_what_the_committee_decodes(data: TensorData, encoding: str) -> None:
    model = build_model("logreg", "digits", seed=3)
    spec = ModelSpec.from_model(model, "logreg", CodecParams(encoding=encoding))  # type: ignore[arg-type]
    start = np.random.default_rng(2).normal(0, 0.05, spec.num_params)
    config = TrainConfig(epochs=2, batch_size=16, lr=0.05, scaffold=True)
    zero_c = np.zeros(spec.num_params, np.int64)
    run = train_scaffold(model, data, config, 1, Controls(spec, start, zero_c))
    decoded = decode_update(encode_update(run.update, update_spec(spec)), update_spec(spec))
    _, dc = split(decoded, spec)
    assert dc.any()
    assert np.allclose(run.client_control - start, dc * 2.0**-F, rtol=0, atol=1e-15)
