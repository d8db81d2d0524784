"""The protocol layer on its own: commitments agree with the contract, reward arithmetic,
canonical round reports and manifests, and task config validation."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flchain.config import LedgerConfig, TaskConfig, load_config
from flchain.errors import ConfigError, ProtocolError
from flchain.ledger.chain import Chain
from flchain.ledger.deploy import deploy_stack, task_parameters
from flchain.protocol.commitment import commitment, derived_salt, new_salt
from flchain.protocol.manifest import TaskManifest
from flchain.protocol.report import RoundReport, UpdateOutcome
from flchain.protocol.rewards import accumulate, split_budget
from flchain.protocol.task import initial_model_and_manifest


def test_commitment_equals_the_contracts_commitment_hash() -> None:
    chain = Chain.embedded(num_accounts=3)
    digest = hashlib.sha256(b"x").digest()
    config = task_parameters(
        LedgerConfig(),
        manifest_cid="QmManifest",
        manifest_digest=digest,
        model_spec_digest=digest,
        initial_model_cid="QmModel",
        initial_model_digest=digest,
    )
    task = deploy_stack(chain, chain.accounts[0], config=config, min_stake=1, fund=0).task
    sender = chain.accounts[1].address
    for round_id, samples in ((0, 1), (7, 12345)):
        salt = new_salt()
        ours = commitment(
            chain_id=chain.chain_id,
            task=task.address,
            sender=sender,
            round_id=round_id,
            digest=digest,
            num_samples=samples,
            salt=salt,
        )
        assert task.commitment_hash(sender, round_id, digest, samples, salt) == ours
    with pytest.raises(ProtocolError, match="32 bytes"):
        commitment(
            chain_id=1,
            task=task.address,
            sender=sender,
            round_id=0,
            digest=b"",
            num_samples=1,
            salt=salt,
        )


addresses = st.integers(1, 2**160 - 1).map(lambda i: f"0x{i:040x}")
scores = st.dictionaries(addresses, st.integers(0, 10**6), max_size=12)


@settings(max_examples=200, deadline=None)
@given(pool=st.integers(0, 10**24), scores=scores)
def test_split_budget_is_proportional_and_never_exceeds_the_pool(
    pool: int, scores: dict[str, int]
) -> None:
    shares = split_budget(pool, scores)  # type: ignore[arg-type]
    total = sum(scores.values())
    assert sum(shares.values()) <= pool
    assert all(scores[a] > 0 for a in shares), "a zero score was paid"
    if total:
        assert set(shares) == {a for a, s in scores.items() if s > 0}
        for a, share in shares.items():
            assert share == pool * scores[a] // total
        assert pool - sum(shares.values()) < max(1, len(shares)) + 0  # flooring loses < 1 each
    else:
        assert shares == {}


@settings(max_examples=100, deadline=None)
@given(previous=scores, credits=scores)
def test_accumulate_adds_credits(previous: dict[str, int], credits: dict[str, int]) -> None:
    out = accumulate(previous, credits)  # type: ignore[arg-type]
    assert set(out) == set(previous) | set(credits)
    for a, v in out.items():
        assert v == previous.get(a, 0) + credits.get(a, 0)
    assert list(out) == sorted(out)


def test_reward_arithmetic_rejects_negative_input() -> None:
    with pytest.raises(ValueError):
        split_budget(-1, {})
    with pytest.raises(ValueError):
        split_budget(10, {"0xa": -1})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        accumulate({}, {"0xa": -1})  # type: ignore[dict-item]


def _report() -> RoundReport:
    outcome = UpdateOutcome("0xA", "QmU", "0x" + "11" * 32, 10, True, 3, 500, "")
    rejected = UpdateOutcome("0xB", "QmV", "0x" + "22" * 32, 10, False, 0, 0, "krum rank 2")
    return RoundReport(
        task="0xT",
        round=4,
        rule="krum",
        previous_model_cid="QmP",
        model_cid="QmM",
        model_digest="0x" + "33" * 32,
        outcomes=(outcome, rejected),
        reward_total=500,
        cumulative={"0xA": 900},
    )


def test_round_report_round_trips_canonically() -> None:
    report = _report()
    data = report.to_bytes()
    assert RoundReport.from_bytes(data) == report
    assert RoundReport.from_bytes(data).to_bytes() == data
    assert report.digest() == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: d.replace(b",", b", ", 1),  # white space
        lambda d: d.replace(b"{", b'{"task":"0xT",', 1),  # a duplicate key
        lambda d: d.replace(b'"base_round":null', b'"base_round":4'),  # not an earlier round
        lambda d: d.replace(b'"base_round":null', b'"base_round":"3"'),
        lambda d: b"[" + d + b"]",
        lambda d: d[:-1],
        lambda d: d.replace(b'"round":4', b'"round":4,"extra":1'),
    ],
)
def test_round_report_refuses_non_canonical_or_malformed_bytes(mangle) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProtocolError):
        RoundReport.from_bytes(mangle(_report().to_bytes()))


def test_manifest_round_trips_and_checks_the_on_chain_digest() -> None:
    _, manifest = initial_model_and_manifest(TaskConfig())
    data = manifest.to_bytes()
    back = TaskManifest.from_bytes(data, expected_digest=manifest.digest())
    assert back == manifest and back.to_bytes() == data
    with pytest.raises(ConfigError, match="does not match the digest"):
        TaskManifest.from_bytes(data, expected_digest=b"\x00" * 32)
    with pytest.raises(ConfigError, match="malformed task manifest"):
        TaskManifest.from_bytes(b"{}".replace(b"{}", b'{"version":1}'))
    with pytest.raises(ConfigError, match="manifest version"):
        TaskManifest.from_bytes(b'{"version":2}')


GOOD = """
name = "digits-demo"
[data]
dataset = "digits"
partition = "dirichlet"
alpha = 1
[training]
model = "mlp"
lr = 0.1
[aggregation]
rule = "multi_krum"
params = { f = 1 }
[ledger]
rounds = 3
committee_size = 5
quorum = 3
"""


def test_load_config_reads_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "task.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.name == "digits-demo"
    assert config.data.partition == "dirichlet" and config.data.alpha == 1.0
    assert config.aggregation.params == {"f": 1}
    assert (config.ledger.rounds, config.ledger.committee_size, config.ledger.quorum) == (3, 5, 3)
    assert config.ledger.round_budget == LedgerConfig().round_budget
    assert dataclasses.replace(config) == config


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[bogus]\nx = 1", "bogus"),
        ("[data]\ncolour = 'red'", "colour"),
        ("[training]\nepochs = 'two'", "training.epochs"),
        ("[training]\nepochs = true", "training.epochs"),
        ("[ledger]\ncommittee_size = 5\nquorum = 2", "ledger.quorum"),
        ("[ledger]\ncommittee_size = 3\nquorum = 4", "ledger.quorum"),
        ("[aggregation]\nrule = 'average-ish'", "aggregation"),
        ("[data]\ndataset = 'imagenet'", "data.dataset"),
        ("[ledger]\nrounds = 0", "ledger.rounds"),
        ("data = 3", "[data]"),
        ("name = 'x' = ", "invalid TOML"),
    ],
)
def test_load_config_names_the_bad_field(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "task.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_config(path)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")


def test_derived_salt_is_a_keyed_function_of_what_the_commitment_binds() -> None:
    key, other_key = b"\x01" * 32, b"\x02" * 32
    task, other_task = "0x" + "11" * 20, "0x" + "22" * 20
    digest = hashlib.sha256(b"update").digest()
    base = {"chain_id": 31337, "task": task, "round_id": 3, "digest": digest}
    salt = derived_salt(key, **base)  # type: ignore[arg-type]
    assert len(salt) == 32
    assert derived_salt(key, **base) == salt  # type: ignore[arg-type]
    variants = [
        derived_salt(other_key, **base),  # type: ignore[arg-type]
        derived_salt(key, **{**base, "chain_id": 1}),  # type: ignore[arg-type]
        derived_salt(key, **{**base, "task": other_task}),  # type: ignore[arg-type]
        derived_salt(key, **{**base, "round_id": 4}),  # type: ignore[arg-type]
        derived_salt(key, **{**base, "digest": hashlib.sha256(b"other").digest()}),  # type: ignore[arg-type]
    ]
    assert len({salt, *variants}) == 6
    with pytest.raises(ProtocolError, match="32 bytes"):
        derived_salt(b"\x01" * 31, **base)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="32 bytes"):
        derived_salt(key, **{**base, "digest": b"short"})  # type: ignore[arg-type]
