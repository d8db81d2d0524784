"""Gas per TrainingTask function and per full round, for 5, 20 and 100 participants.

Runs on the embedded eth-tester chain (mining blocks to move through phases) with the typed
wrappers, a 5-member committee (quorum 3) and 59-character CIDs, and checks the targets of
issue 2:

- commit + reveal <= 100k gas per participant per round (steady state; first round shown too);
- finalize gas flat in the number of participants (100 vs 5 participants <= 1.1);
- a claim covering 1 round vs one covering 50 rounds within 10% (the latter proves its credit
  under the previous root as its baseline, issue 13); a claimer that claims every round proves
  nothing more and is shown too.

On another backend (``--backend anvil`` or ``geth``, a real node process) the same calls run
on that node's EVM: gas is a property of the fork the chain runs, not of the client, so this
is how the contracts' cost under a newer fork's pricing is measured (geth 1.17's ``--dev``
chain runs Amsterdam, whose EIP-8037 prices every new storage slot at ~118k gas instead of
20k; anvil and the embedded chain run Prague).

Usage::

    python scripts/gas_report.py                 # table
    python scripts/gas_report.py --json          # JSON
    python scripts/gas_report.py --sizes 5 20    # fewer sizes (quicker)
    python scripts/gas_report.py --backend geth  # the same on geth --dev (Amsterdam)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from flchain.ledger import Chain, Result, RewardTree, TaskParameters, deploy_stack, register_all
from flchain.ledger.nodes import AnvilProcess, GethProcess, NodeProcess
from flchain.protocol.commitment import commitment

CID = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"  # 59 characters
COMMIT_REVEAL_TARGET = 100_000
FINALIZE_RATIO_TARGET = 1.1
CLAIM_SPREAD_TARGET = 0.10
NODES: dict[str, type[NodeProcess]] = {"anvil": AnvilProcess, "geth": GethProcess}

#: A fresh chain view with ``n`` funded accounts (a stack is deployed on it per measurement).
OpenChain = Callable[[int], Chain]


def config(participants: int, rounds: int) -> TaskParameters:
    blocks = participants + 10  # every transaction mines a block
    return TaskParameters(
        manifest_cid=CID,
        manifest_digest=b"\x01" * 32,
        model_spec_digest=b"\x02" * 32,
        aggregation_rule=3,
        rule_params=b"\x03" * 32,
        committee_size=5,
        quorum=3,
        commit_blocks=blocks,
        reveal_blocks=blocks,
        attest_blocks=20,
        max_participants=10_000,
        min_reveals=2,
        rounds=rounds,
        round_budget=10**21,
        committee_fee=10**18,
        non_reveal_slash=10**18,
        committee_slash=10**18,
        max_samples=10**6,
        initial_model_cid=CID,
        initial_model_digest=b"\x04" * 32,
    )


class Bench:
    """A deployed stack with ``n`` registered participants and gas bookkeeping per call."""

    def __init__(self, n: int, rounds: int, open_chain: OpenChain) -> None:
        self.chain = open_chain(n + 1)
        admin, self.people = self.chain.accounts[0], self.chain.accounts[1:]
        self.stack = deploy_stack(
            self.chain,
            admin,
            config=config(n, rounds),
            min_stake=10**18,
            mint_to=[p.address for p in self.people],
        )
        register_all(self.stack, self.people)
        self.task = self.stack.task
        self.gas: dict[str, list[int]] = defaultdict(list)
        self.cumulative: dict[str, int] = {}
        self.trees: list[RewardTree] = []

    def _record(self, name: str, receipt: Any) -> int:
        self.gas[name].append(int(receipt["gasUsed"]))
        return int(receipt["gasUsed"])

    def _mine_to(self, block: int) -> None:
        if block > self.chain.block_number:
            self.chain.mine(block - self.chain.block_number)

    def play_round(self, accounts: list[LocalAccount], label: str) -> int:
        """One full round; every member votes; the round's total gas."""
        task, r = self.task, self.task.current_round()
        total = 0
        salts = {}
        for a in accounts:
            digest = keccak(text=f"{a.address}/{r}")
            salts[a.address] = (digest, keccak(text=f"salt {a.address}/{r}"))
            value = commitment(
                chain_id=self.chain.chain_id,
                task=task.address,
                sender=a.address,
                round_id=r,
                digest=digest,
                num_samples=100,
                salt=salts[a.address][1],
            )
            total += self._record(f"commit ({label})", task.commit(a, value))
        self._mine_to(task.round_record(r).commit_end)
        for a in accounts:
            digest, salt = salts[a.address]
            total += self._record(f"reveal ({label})", task.reveal(a, digest, 100, salt, CID))
        by_address = {a.address: a for a in accounts}
        members = [by_address[m] for m in task.committee(r)]
        for a in accounts:
            self.cumulative[a.address] = self.cumulative.get(a.address, 0) + 10**18
        tree = RewardTree(self.cumulative)
        self.trees.append(tree)
        reward = len(accounts) * 10**18
        result = Result(keccak(text=f"m{r}"), CID, keccak(text=f"r{r}"), CID, tree.root, reward)
        quorum = task.effective_quorum(len(accounts))
        for i, m in enumerate(members):
            kind = "attest" if i < quorum - 1 else "attest, finalizing" if i == quorum - 1 else None
            total += self._record(kind or "attest, late vote", task.attest(m, r, result))
        for m in members:
            receipt = task.settle_committee_member(self.stack.admin, r, m.address)
            total += self._record("settleCommitteeMember (fee)", receipt)
        return total

    def skip_to_fresh_round(self) -> None:
        """Expire the round that opened before the registrations (no commits)."""
        self._mine_to(self.task.round_record(self.task.current_round()).commit_end)
        self.task.expire_round(self.stack.admin)


def measure_size(n: int, open_chain: OpenChain) -> dict[str, Any]:
    bench = Bench(n, rounds=3, open_chain=open_chain)
    bench.skip_to_fresh_round()
    first = bench.play_round(bench.people, "first round")
    steady = bench.play_round(bench.people, "steady")
    r = bench.task.current_round() - 1
    claimer = bench.people[0]
    tree, previous = bench.trees[-1], bench.trees[-2]
    # Its first claim, after two rounds: it proves round 1's credit as its baseline.
    receipt = bench.task.claim(
        claimer,
        r,
        tree.amount(claimer.address),
        tree.proof(claimer.address),
        previous.amount(claimer.address),
        previous.proof(claimer.address),
    )
    bench._record("claim (first, previous proof)", receipt)
    median = {name: int(statistics.median(v)) for name, v in bench.gas.items()}
    return {
        "participants": n,
        "gas": median,
        "round_total_first": first,
        "round_total_steady": steady,
        "round_per_participant_steady": steady // n,
        "commit_plus_reveal_first": median["commit (first round)"] + median["reveal (first round)"],
        "commit_plus_reveal_steady": median["commit (steady)"] + median["reveal (steady)"],
    }


def measure_claims(open_chain: OpenChain, rounds: int = 50, n: int = 5) -> dict[str, int]:
    """Claim gas covering 1 round (claimed right after round 0) vs ``rounds`` rounds (with the
    previous root's proof), and of a claimer that claims after every round (no second proof)."""
    bench = Bench(n, rounds=rounds + 1, open_chain=open_chain)
    bench.skip_to_fresh_round()
    early, late, regular = bench.people[0], bench.people[1], bench.people[3]
    first_round = bench.task.current_round()
    every = 0
    for i in range(rounds):
        bench.play_round(bench.people, "claims")
        tree, r = bench.trees[-1], bench.task.current_round() - 1
        receipt = bench.task.claim(
            regular, r, tree.amount(regular.address), tree.proof(regular.address)
        )
        every = int(receipt["gasUsed"])
        if i == 0:
            tree = bench.trees[0]
            # A third account claims first, so both measured claims find `totalClaimed` non-zero
            # and differ only in the rounds they cover.
            warm = bench.people[2]
            bench.task.claim(warm, first_round, tree.amount(warm.address), tree.proof(warm.address))
            receipt = bench.task.claim(
                early, first_round, tree.amount(early.address), tree.proof(early.address)
            )
            one = int(receipt["gasUsed"])
    tree, last, previous = bench.trees[-1], bench.task.current_round() - 1, bench.trees[-2]
    receipt = bench.task.claim(
        late,
        last,
        tree.amount(late.address),
        tree.proof(late.address),
        previous.amount(late.address),
        previous.proof(late.address),
    )
    return {
        "claim_1_round": one,
        f"claim_{rounds}_rounds": int(receipt["gasUsed"]),
        "claim_every_round": every,
    }


def report(
    sizes: list[int], claim_rounds: int, open_chain: OpenChain = Chain.embedded
) -> dict[str, Any]:
    results = [measure_size(n, open_chain) for n in sizes]
    claims = measure_claims(open_chain, claim_rounds)
    smallest, largest = results[0], results[-1]
    fin = "attest, finalizing"
    finalize_ratio = largest["gas"][fin] / smallest["gas"][fin]
    one, many = claims["claim_1_round"], claims[f"claim_{claim_rounds}_rounds"]
    spread = abs(many - one) / one
    worst = max(r["commit_plus_reveal_steady"] for r in results)
    checks = {
        "commit_plus_reveal_steady_max": {
            "value": worst,
            "target": COMMIT_REVEAL_TARGET,
            "ok": worst <= COMMIT_REVEAL_TARGET,
        },
        f"finalize_ratio_{largest['participants']}_vs_{smallest['participants']}": {
            "value": round(finalize_ratio, 4),
            "target": FINALIZE_RATIO_TARGET,
            "ok": finalize_ratio <= FINALIZE_RATIO_TARGET,
        },
        f"claim_1_vs_{claim_rounds}_rounds_spread": {
            "value": round(spread, 4),
            "target": CLAIM_SPREAD_TARGET,
            "ok": spread <= CLAIM_SPREAD_TARGET,
        },
    }
    return {"sizes": results, "claims": claims, "checks": checks}


def print_table(data: dict[str, Any]) -> None:
    sizes = data["sizes"]
    names = sorted({name for r in sizes for name in r["gas"]})
    header = f"{'call (median gas)':<34}" + "".join(f"{r['participants']:>12}" for r in sizes)
    print(header)
    print("-" * len(header))
    for name in names:
        row = "".join(f"{r['gas'].get(name, 0):>12,}" for r in sizes)
        print(f"{name:<34}{row}")
    for key in (
        "commit_plus_reveal_first",
        "commit_plus_reveal_steady",
        "round_total_steady",
        "round_per_participant_steady",
    ):
        print(f"{key:<34}" + "".join(f"{r[key]:>12,}" for r in sizes))
    print()
    for key, value in data["claims"].items():
        print(f"{key:<34}{value:>12,}")
    print()
    for key, check in data["checks"].items():
        verdict = "OK" if check["ok"] else "MISSED"
        print(f"{key:<40} {check['value']:>10} (target {check['target']}) {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 20, 100])
    parser.add_argument("--claim-rounds", type=int, default=50)
    parser.add_argument("--backend", choices=["embedded", *NODES], default="embedded")
    args = parser.parse_args(argv)
    if min(args.sizes) < 2 or args.claim_rounds < 2:
        parser.error("need at least 2 participants and 2 claim rounds")
    with contextlib.ExitStack() as stack:
        open_chain: OpenChain = Chain.embedded
        if args.backend != "embedded":
            node = stack.enter_context(NODES[args.backend](accounts=max(args.sizes) + 1))
            open_chain = lambda n: Chain.connect(node.url, num_accounts=n)  # noqa: E731
        data = report(sorted(args.sizes), args.claim_rounds, open_chain)
        data["backend"] = args.backend
    if args.json:
        json.dump(data, sys.stdout, indent=2)
        print()
    else:
        print_table(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
