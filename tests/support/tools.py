"""``require_tool``: the one way a test says it needs an outside program (anvil, forge, Kubo,
slither, ipfs_cid, ...). Locally a missing tool skips the test with the reason; under
``CI=true`` it fails, so CI can never pass by silently skipping."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require_tool(available: bool, reason: str, how: str) -> None:
    """Skip (locally) or fail (CI) unless ``available``; ``how`` says how to install it."""
    if available:
        return
    if in_ci():
        pytest.fail(f"{reason}; CI must run this test ({how})")
    pytest.skip(f"{reason} ({how})")


def run_with_threads(code: str, threads: int, *args: str) -> str:
    """Run ``code`` in a fresh interpreter whose math libraries use ``threads`` threads (and
    whose hash seed differs with them); its stdout. Committee results must not depend on
    either, so determinism tests compare what two such children print."""
    n = str(threads)
    tests = str(Path(__file__).resolve().parents[1])  # the child imports test modules too
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "PYTHONHASHSEED": n,
    }
    done = subprocess.run(
        [sys.executable, "-c", code, n, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[2],
    )
    return done.stdout


def codec_rules_child(codecs: str) -> str:
    """A child script for :func:`run_with_threads` printing one digest of seven encoded updates
    per codec (``codecs``: a Python expression for a list of ``CodecParams``) and of what
    every integer rule makes of them (aggregate and decisions). Top-k updates are sparsified
    with error feedback, the residual carried from each update to the next."""
    return f"""
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from flchain.learning.aggregation import *
from flchain.learning.codec import decode_update, encode_update, sparsify
from flchain.learning.models import CodecParams, ModelSpec, TensorSpec
h = hashlib.sha256()
for codec in {codecs}:
    spec = ModelSpec("t", (TensorSpec("w", (40000,)), TensorSpec("b", (300,))), codec)
    gen = torch.Generator().manual_seed(3)
    ups, residual = [], None
    for i in range(7):
        d = {{"w": torch.randn(40000, generator=gen) * 0.01 * (i + 1),
             "b": torch.randn(300, generator=gen)}}
        if codec.encoding == "topk":
            d, residual = sparsify(d, residual, spec)
        blob = encode_update(d, spec)
        h.update(blob)
        ups.append(ClientUpdate(f"p{{i}}", decode_update(blob, spec), 1 + 37 * i))
    for rule in [FedAvg(), CoordinateMedian(), TrimmedMean(0.2), MultiKrum(2), CenteredClip()]:
        r = rule.aggregate(ups)
        h.update(r.update.q.tobytes())
        h.update(repr([(d.participant, d.accepted, d.score) for d in r.decisions]).encode())
print(h.hexdigest())
"""
