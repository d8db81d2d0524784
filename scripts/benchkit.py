"""What the benchmark scripts share: their command line, one torch thread, and where results go.

Every ``scripts/bench_*.py`` run writes one JSON document ``{"setup": ..., "runs": [...]}``
(``--json``) and a markdown table made from it (``--md``), and prints one JSON line per run as
it finishes, so a long benchmark shows progress and a killed one still left its lines.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

#: Options that say where results go, not how the benchmark ran.
_OUTPUT_OPTIONS = frozenset({"json", "md"})


def bench_parser(
    doc: str | None, *, training: Mapping[str, float | int] | None = None
) -> argparse.ArgumentParser:
    """A parser with ``--json`` and ``--md``, described by ``doc``'s first line; with
    ``training`` (defaults for ``epochs``, ``batch_size``, ``lr``) the local-training options."""
    p = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    if training is not None:
        p.add_argument("--epochs", type=int, default=int(training.get("epochs", 1)))
        p.add_argument("--batch-size", type=int, default=int(training.get("batch_size", 10)))
        p.add_argument("--lr", type=float, default=float(training.get("lr", 0.05)))
    p.add_argument("--json", type=Path, help="write the runs and their setup here (JSON)")
    p.add_argument("--md", type=Path, help="write the markdown table here")
    return p


def parse(p: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and pin torch to one thread: runs measured side by side share the machine alike."""
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    return args


def setup_of(args: argparse.Namespace, *, leave_out: Iterable[str] = (), **extra: Any) -> dict:
    """The run's setup for the results: its options (not the output paths) and ``extra``."""
    skip = _OUTPUT_OPTIONS | set(leave_out)
    return {k: v for k, v in vars(args).items() if k not in skip} | extra


def progress(row: Mapping[str, Any], *, leave_out: Iterable[str] = ()) -> None:
    """Print one finished run as a JSON line, without its long per-round lists."""
    skip = set(leave_out)
    print(json.dumps({k: v for k, v in row.items() if k not in skip}), flush=True)


def write_results(
    args: argparse.Namespace, out: Mapping[str, Any], markdown: Callable[[Any], str]
) -> None:
    """Write ``out`` to ``--json`` and its markdown table to ``--md``, where asked."""
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.md:
        args.md.write_text(markdown(out))
