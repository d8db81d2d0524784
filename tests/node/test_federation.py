"""An embedded federation (7 participants: a sign-flip attacker, a free-rider, a dropout and
four honest nodes; multi-Krum f=1; 3 rounds) runs once, then every assertion reads the chain
and recomputes what it needs independently of the nodes that ran the rounds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from flchain_node.federation import DemoConfig, Federation, FederationResult, settles
from flchain_node.participant import StepReport
from support.fedkit import assert_recomputes

from flchain.errors import ProtocolError
from flchain.ledger.contracts import (
    Attested,
    Committed,
    NonRevealerSlashed,
    Phase,
    Revealed,
    RewardClaimed,
    RoundExpired,
    RoundFinalized,
    RoundStatus,
    Slashed,
)
from flchain.protocol.committee import Reveal, RoundInputs
from flchain.protocol.report import RoundReport
from flchain.protocol.rounds import fetch_report, reward_pool
from flchain.storage import CachedStore

ROUNDS = 3
DEMO = DemoConfig(
    participants=7,  # 7 - free-rider - dropout = 5 usable updates = multi-Krum's 2f + 3
    rounds=ROUNDS,
    rule="multi_krum",
    rule_params={"f": 1},
    attackers=1,
    attack="sign_flip",
    free_riders=1,
    dropouts=1,
    dataset="digits",
    model="mlp",
    epochs=1,
)


@pytest.fixture(scope="module")
def run() -> Iterator[tuple[Federation, FederationResult]]:
    torch.set_num_threads(1)
    fed = Federation(DEMO)
    try:
        yield fed, fed.run()
    finally:
        fed.close()


def _by_role(fed: Federation, role: str) -> list[str]:
    return [a for a, r in fed.role_of.items() if r == role]


def _report(fed: Federation, round_id: int) -> RoundReport:
    (event,) = fed.deployment.task.events(RoundFinalized, round=round_id)
    return fetch_report(fed.store, event)  # checked against the on-chain digest


def test_every_round_is_finalized(run: tuple[Federation, FederationResult]) -> None:
    fed, result = run
    task = fed.deployment.task
    assert task.finalized_rounds() == ROUNDS
    assert [task.round_record(r).status for r in range(ROUNDS)] == [RoundStatus.FINALIZED] * ROUNDS
    assert task.events(RoundExpired) == []
    assert [row.status for row in result.rounds] == ["finalized"] * ROUNDS


def test_global_model_changes_each_round_and_matches_an_independent_recomputation(
    run: tuple[Federation, FederationResult],
) -> None:
    fed, _ = run
    task, cfg = fed.deployment.task, fed.deployment.task.config()
    cids = [cfg.initial_model_cid]
    previous_cumulative: dict[str, int] = {}
    for r in range(ROUNDS):
        (event,) = task.events(RoundFinalized, round=r)
        record = task.round_record(r)
        reveals = [
            Reveal(e.account, e.digest, e.num_samples, e.cid)
            for e in task.events(Revealed, round=r)
        ]
        inputs = RoundInputs(
            task=to_checksum_address(task.address),
            round_id=r,
            spec=fed.manifest.spec,
            aggregator=fed.manifest.aggregator(),
            global_model_cid=cids[-1],
            reward_pool=reward_pool(cfg, record),
            previous_cumulative=previous_cumulative,
            reveals=reveals,
            max_samples=cfg.max_samples,
            base_round=r - 1 if r else None,  # every round is sound: each builds on the last
        )
        outcome = assert_recomputes(inputs, fed.store, event, record)
        cids.append(event.model_cid)
        previous_cumulative = dict(outcome.report.cumulative)
    assert task.model_cid() == cids[-1]
    assert len(set(cids)) == ROUNDS + 1, f"the global model did not change every round: {cids}"


def test_rewards_go_only_to_accepted_updates(run: tuple[Federation, FederationResult]) -> None:
    fed, _ = run
    for r in range(ROUNDS):
        report = _report(fed, r)
        paid = {o.participant for o in report.outcomes if o.reward > 0}
        accepted = {o.participant for o in report.outcomes if o.accepted}
        assert paid and paid <= accepted
        assert all(o.reward == 0 for o in report.outcomes if not o.accepted)
        assert sum(o.reward for o in report.outcomes) == report.reward_total
        assert report.reward_total == fed.deployment.task.round_record(r).reward_total
    honest = set(_by_role(fed, "honest"))
    assert set(_report(fed, ROUNDS - 1).cumulative) <= honest


def test_attacker_and_free_rider_earn_nothing(run: tuple[Federation, FederationResult]) -> None:
    fed, result = run
    task, token = fed.deployment.task, fed.deployment.token
    for who in _by_role(fed, "attacker") + _by_role(fed, "free_rider"):
        assert task.claimed(who) == 0
        assert task.events(RewardClaimed, account=who) == []
        assert token.balance_of(who) == 0
        assert result.claimed[who] == 0
        assert who not in _report(fed, ROUNDS - 1).cumulative


def test_dropout_is_slashed_in_every_round_it_committed(
    run: tuple[Federation, FederationResult],
) -> None:
    fed, _ = run
    task, registry, cfg = fed.deployment.task, fed.deployment.registry, fed.config.ledger
    (dropout,) = _by_role(fed, "dropout")
    committed = {e.round for e in task.events(Committed) if e.account == dropout}
    slashed = [e for e in task.events(NonRevealerSlashed) if e.account == dropout]
    assert 0 in committed, "the dropout never committed"
    assert sorted(e.round for e in slashed) == sorted(committed), (
        "a round the dropout committed in without revealing went unslashed (or was slashed twice)"
    )
    assert all(e.amount == cfg.non_reveal_slash for e in slashed)
    taken = sum(e.amount for e in registry.events(Slashed, account=dropout))
    assert registry.stake_of(dropout) == cfg.min_stake - taken < cfg.min_stake
    assert task.claimed(dropout) == 0
    for who in _by_role(fed, "honest"):
        assert registry.stake_of(who) == cfg.min_stake, f"honest {who} lost stake"


def test_claims_pay_honest_participants_what_they_were_credited(
    run: tuple[Federation, FederationResult],
) -> None:
    fed, result = run
    task, token = fed.deployment.task, fed.deployment.token
    final = _report(fed, ROUNDS - 1).cumulative
    for who in _by_role(fed, "honest"):
        events = task.events(RewardClaimed, account=who)
        claimed = sum(e.amount for e in events)
        assert claimed > 0 and claimed == task.claimed(who) == result.claimed[who]
        assert claimed == final[who]
        # each account was minted exactly its stake, so its whole balance is what it claimed
        # plus any committee fees it withdrew (none: the demo leaves fees in the contract)
        assert token.balance_of(who) == claimed
    assert 0 < task.total_claimed() <= task.total_credited()
    assert task.total_credited() == sum(final.values())


def test_each_rounds_commits_and_reveals_share_a_block_in_node_order(
    run: tuple[Federation, FederationResult],
) -> None:
    """On the embedded chain a phase's transactions of all nodes are mined together (see
    ``Federation._pass``), each sent by its own node in node order; the claims share one too.
    (A committee member steps alone when its vote finalizes a round, and may then commit to
    the next round alone: at most one block more per member.)"""
    fed, _ = run
    task, order = fed.deployment.task, [n.address for n in fed.nodes]
    members = fed.config.ledger.committee_size
    for event in ("Committed", "Revealed"):
        logs = fed.chain.events(task.contract, event)
        for round_id in range(ROUNDS):
            blocks: dict[int, list[str]] = {}
            for log in sorted(logs, key=lambda log: log["transactionIndex"]):
                if log["args"]["round"] == round_id:
                    sender = to_checksum_address(log["args"]["account"])
                    blocks.setdefault(log["blockNumber"], []).append(sender)
            assert len(blocks) <= 1 + members < sum(map(len, blocks.values())), (event, round_id)
            for senders in blocks.values():
                assert senders == sorted(senders, key=order.index)
    claims = fed.chain.events(task.contract, "RewardClaimed")
    assert len(claims) >= 4 and len({log["blockNumber"] for log in claims}) == 1


def test_attest_passes_step_exactly_the_committee_read_from_the_commit_events(
    run: tuple[Federation, FederationResult],
) -> None:
    """The attest pass steps only each round's committee, whose members the federation
    tells from the commit indices its reveal pass read (no event decoding): the same members
    as the round's ``Committed`` events and ``committeeIndices`` name."""
    fed, _ = run
    task = fed.deployment.task
    for round_id in range(ROUNDS):
        assert round_id in fed._commit_indices  # the reveal pass saw every node
        by_index = {e.index: e.account for e in task.events(Committed, round=round_id)}
        members = {by_index[i] for i in task.committee_indices(round_id)}
        assert len(members) == fed.config.ledger.committee_size
        assert fed._committees[round_id] == members


def test_a_node_is_stepped_again_until_it_did_its_part_of_the_phase() -> None:
    """The federation skips a node's step only while the round and phase are those in which
    it already did what it owes (see ``settles``)."""
    assert settles(StepReport(1, Phase.COMMIT, ["commit"]))
    assert settles(StepReport(1, Phase.COMMIT, ["not-sampled"]))
    assert not settles(StepReport(1, Phase.COMMIT, ["attest"]))  # a late vote is not its commit
    assert settles(StepReport(1, Phase.REVEAL, ["reveal"]))
    assert not settles(StepReport(1, Phase.REVEAL, []))  # e.g. waits for the commit phase to close
    assert settles(StepReport(1, Phase.ATTEST, []))  # membership and its own vote are fixed
    assert not settles(StepReport(1, Phase.EXPIRABLE, []))  # nobody expired it yet
    assert settles(StepReport(1, Phase.EXPIRABLE, ["expire"]))


def test_the_process_reads_back_from_memory_what_it_stored(
    run: tuple[Federation, FederationResult],
) -> None:
    """The nodes, committee and owner share one store in one process: each global model,
    update and report is read from disk by no one (every one was put by this process), but
    got many times (each node its round's model, the committee every update)."""
    fed, _ = run
    assert isinstance(fed.store, CachedStore)
    assert fed.store.misses == 0
    assert fed.store.hits >= ROUNDS * (len(fed.nodes) + DEMO.participants - DEMO.dropouts)


def test_each_phase_s_pass_reads_its_nodes_step_views_in_one_evm_call() -> None:
    """py-evm executes one ``stepViews`` per commit, reveal or attest pass over all due nodes
    (in the attest phase: the committee), not one ``stepView`` per node and pass; and a
    round's committee votes share one block (each vote mined its own block before)."""
    torch.set_num_threads(1)
    demo = DemoConfig.honest_fedavg(6, 2, dataset="digits", epochs=1)
    fed = Federation(demo)
    backend = fed.chain.w3.provider.ethereum_tester.backend
    executed: Counter[bytes] = Counter()
    execute = backend._execute_call

    def counted(transaction: dict[str, Any], *args: Any) -> bytes:
        executed[bytes(transaction.get("data", b""))[:4]] += 1
        return execute(transaction, *args)

    backend._execute_call = counted
    try:
        result = fed.run()
    finally:
        fed.close()
    assert [r.status for r in result.rounds] == ["finalized"] * 2
    single = executed[function_signature_to_4byte_selector("stepView(address)")]
    batched = executed[function_signature_to_4byte_selector("stepViews(address[])")]
    assert batched == 3 * demo.rounds  # a commit, a reveal and an attest pass a round
    assert single == 0
    votes = fed.deployment.task.events(Attested)
    assert len(votes) == demo.rounds * fed.config.ledger.committee_size  # every member voted
    for round_id in range(demo.rounds):
        assert len({v.block_number for v in votes if v.round == round_id}) == 1


def test_a_node_refuses_a_step_view_of_an_earlier_block() -> None:
    """A view handed to a node must be of the latest block: one read before a block was mined
    is refused; the current one is acted on like the node's own read."""
    torch.set_num_threads(1)
    fed = Federation(DemoConfig.honest_fedavg(2, 1, dataset="digits", epochs=1))
    try:
        task, node = fed.deployment.task, fed.nodes[0]
        stale = task.step_view(node.address)
        fed.chain.mine(1)
        with pytest.raises(ProtocolError, match="latest block"):
            node.step(stale)
        assert node.state.rounds == {}  # nothing done on the stale view
        step = node.step(task.step_view(node.address))
        assert (step.phase, step.actions) == (Phase.COMMIT, ["commit"])
    finally:
        fed.close()
