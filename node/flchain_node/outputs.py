"""What a demo leaves behind: ``report.json``, CSV tables and PNG plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from flchain_node.federation import TOKEN, FederationResult

ROLE_COLOURS = {
    "honest": "tab:green",
    "attacker": "tab:red",
    "free_rider": "tab:orange",
    "dropout": "tab:gray",
    "reference": "tab:blue",  # the owner's fltrust reference node: earns nothing
}


def write_outputs(result: FederationResult, out: Path) -> list[Path]:
    """Write the report, CSVs and plots into ``out``; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [
        out / "report.json",
        out / "rounds.csv",
        out / "participants.csv",
        out / "accuracy.png",
        out / "rewards.png",
        out / "gas.png",
    ]
    files[0].write_text(json.dumps(result.to_json(), indent=1, sort_keys=True, default=str))
    _rounds_csv(result, files[1])
    _participants_csv(result, files[2])
    _plot_accuracy(result, files[3])
    _plot_rewards(result, files[4])
    _plot_gas(result, files[5])
    return files


def _rounds_csv(result: FederationResult, path: Path) -> None:
    actions = sorted({a for r in result.rounds for a in r.gas})
    header = ["round", "status", "accuracy", "loss", "accepted", "rejected", "rewards_tokens",
              "slashed_tokens", "wall_seconds", *[f"gas_{a}" for a in actions]]  # fmt: skip
    rows = (
        [r.round, r.status, r.accuracy, r.loss, len(r.accepted), len(r.rejected),
         sum(r.rewards.values()) / TOKEN, sum(r.slashes.values()) / TOKEN,
         round(r.seconds.get("wall", 0.0), 3), *[r.gas.get(a, 0) for a in actions]]
        for r in result.rounds
    )  # fmt: skip
    _write_csv(path, header, rows)


def _participants_csv(result: FederationResult, path: Path) -> None:
    header = ["participant", "role", "accepted_rounds", "rewards_tokens", "claimed_tokens",
              "slashed_tokens", "final_stake_tokens"]  # fmt: skip
    rows = (
        [who, role, sum(who in r.accepted for r in result.rounds),
         sum(r.rewards.get(who, 0) for r in result.rounds) / TOKEN,
         result.claimed.get(who, 0) / TOKEN,
         sum(r.slashes.get(who, 0) for r in result.rounds) / TOKEN,
         result.stakes.get(who, 0) / TOKEN]
        for who, role in result.roles.items()
    )  # fmt: skip
    _write_csv(path, header, rows)


def _write_csv(path: Path, header: list[str], rows: Iterable[list[object]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _plot_accuracy(result: FederationResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [0] + [r.round + 1 for r in result.rounds if r.accuracy is not None]
    ys = [result.initial_accuracy] + [r.accuracy for r in result.rounds if r.accuracy is not None]
    ax.plot(xs, ys, marker="o")
    ax.set(
        xlabel="rounds finalized",
        ylabel="test accuracy",
        ylim=(0, 1),
        title=f"Global model accuracy ({result.config.rule})",
    )
    ax.grid(alpha=0.3)
    _save(fig, path)


def _plot_rewards(result: FederationResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    seen: set[str] = set()
    for who, role in result.roles.items():
        total, ys = 0, [0.0]
        for r in result.rounds:
            total += r.rewards.get(who, 0)
            ys.append(total / TOKEN)
        label = role if role not in seen else None
        seen.add(role)
        ax.plot(range(len(ys)), ys, color=ROLE_COLOURS[role], label=label, alpha=0.8)
    ax.set(xlabel="round", ylabel="cumulative reward (tokens)", title="Rewards per participant")
    ax.legend()
    ax.grid(alpha=0.3)
    _save(fig, path)


def _plot_gas(result: FederationResult, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    actions = sorted({a for r in result.rounds for a in r.gas})
    bottom = [0] * len(result.rounds)
    xs = [r.round for r in result.rounds]
    for a in actions:
        ys = [r.gas.get(a, 0) / 1e6 for r in result.rounds]
        ax.bar(xs, ys, bottom=bottom, label=a)
        bottom = [b + y for b, y in zip(bottom, ys, strict=True)]
    ax.set(xlabel="round", ylabel="gas (millions)", title="Gas per round by transaction type")
    ax.legend(fontsize=8)
    _save(fig, path)


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)  # pyplot keeps every open figure alive otherwise
