"""Stragglers (issue 16): a federation on the embedded chain where 20% of the nodes train
slower than the commit phase lasts, against one where none do.

A slow node's training lets the chain reach the commit deadline (the embedded chain's clock
is its block number); the node then sits the round out (``missed-commit-deadline``: no commit,
nothing to slash). Reported: rounds finalized, updates accepted per round, slashes, blocks per
round, final accuracy.

    nice -n 10 .venv/bin/python scripts/bench_stragglers.py \
        --json benchmarks/results/stragglers.json --md benchmarks/results/stragglers.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import benchkit
from flchain_node.federation import DemoConfig, Federation
from flchain_node.participant import StepReport

from flchain.ledger.contracts import Phase

# The slow trainer is the test kit's: the benchmark measures the same straggler the test checks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support.fedkit import SlowTrainer


def run(args: argparse.Namespace, slow: int) -> dict[str, object]:
    demo = DemoConfig(
        participants=args.participants, rounds=args.rounds, rule="fedavg", rule_params={},
        attackers=0, free_riders=0, dropouts=0, dataset="digits", model="mlp", epochs=1,
    )  # fmt: skip
    fed = Federation(demo)
    try:
        task = fed.deployment.task
        # the slow ones step last in each pass, so the others commit before the clock jumps
        slow_nodes = fed.nodes[len(fed.nodes) - slow :]
        for node in slow_nodes:
            node.source = SlowTrainer(node.source, task)  # type: ignore[arg-type]
        missed: dict[int, int] = {}
        fast = len(fed.nodes) - slow
        for node in slow_nodes:

            def slow_step(_step: Callable[[], StepReport] = node.step) -> StepReport:
                # still training while the fast nodes commit (the embedded chain's clock only
                # moves when nobody acts); then its training ends at the commit deadline
                rnd = task.current_round()
                if task.phase() == Phase.COMMIT and task.round_record(rnd).commits < fast:
                    return StepReport(rnd, Phase.COMMIT)
                report = _step()
                if "missed-commit-deadline" in report.actions:
                    missed[report.round] = missed.get(report.round, 0) + 1
                return report

            node.step = slow_step  # type: ignore[method-assign]
        result = fed.run()
        records = [task.round_record(r.round) for r in result.rounds]
        return {
            "participants": args.participants,
            "slow": slow,
            "rounds": [
                {
                    "round": r.round,
                    "status": r.status,
                    "accepted": len(r.accepted),
                    "missed_commit_deadline": missed.get(r.round, 0),
                    "slashed_tokens": sum(r.slashes.values()) / 10**18,
                    "accuracy": r.accuracy,
                    "commits": rec.commits,
                }
                for r, rec in zip(result.rounds, records, strict=True)
            ],
            "final_accuracy": result.rounds[-1].accuracy,
            "blocks": fed.chain.block_number,
            "slashed_total_tokens": sum(sum(r.slashes.values()) for r in result.rounds) / 10**18,
        }
    finally:
        fed.close()


def main() -> None:
    p = benchkit.bench_parser(__doc__)
    p.add_argument("--participants", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--slow-fraction", type=float, default=0.2)
    args = benchkit.parse(p)
    runs = [run(args, 0), run(args, round(args.participants * args.slow_fraction))]
    for r in runs:
        benchkit.progress(r)
    benchkit.write_results(
        args, {"setup": benchkit.setup_of(args), "runs": runs}, lambda out: markdown(out["runs"])
    )


def markdown(runs: list[dict[str, object]]) -> str:
    lines = [
        "# Stragglers on the embedded chain (issue 16)",
        "",
        "digits, MLP, FedAvg, committee 3 (quorum 2). A slow node's training outlasts the "
        "commit phase: it commits nothing that round (`missed-commit-deadline`), so it is not "
        "slashed and the round goes on with the others.",
        "",
        "| slow nodes | round | status | commits | accepted | missed deadline | slashed (tokens) "
        "| accuracy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        rounds = run["rounds"]
        assert isinstance(rounds, list)
        for r in rounds:
            lines.append(
                f"| {run['slow']}/{run['participants']} | {r['round']} | {r['status']} | "
                f"{r['commits']} | {r['accepted']} | {r['missed_commit_deadline']} | "
                f"{r['slashed_tokens']:g} | {r['accuracy']:.4f} |"
            )
    blocks = ", ".join(f"{r['slow']} slow: {r['blocks']}" for r in runs)
    lines += [
        "",
        f"Blocks for the whole run ({blocks}): with stragglers every commit phase runs to its "
        "deadline, because a phase ends early only once every expected participant acted.",
        "",
        "Reproduce: `nice -n 10 .venv/bin/python scripts/bench_stragglers.py "
        "--json benchmarks/results/stragglers.json --md benchmarks/results/stragglers.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
