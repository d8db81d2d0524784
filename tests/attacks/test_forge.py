"""forge fuzz and invariant tests of the contracts (``contracts/test/forge``), run offline with
the pinned solcjs through ``scripts/solc``. Without the forge binary (npm package
``@foundry-rs/forge-linux-amd64``) the test skips with the reason locally and FAILS under CI."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
FORGE = ROOT / "node_modules" / "@foundry-rs" / "forge-linux-amd64" / "bin" / "forge"
INVARIANTS = {
    "invariant_tokensAreConserved",
    "invariant_noDoubleOrOverClaim",
    "invariant_roundCreditsWithinBudget",
    "invariant_slashNeverExceedsStake",
    "invariant_outsidersNeverCommitOrAttest",
    "invariant_everyCommitIsCountedOnceAndSlashable",
    "invariant_noStakeLeavesBeforeItsSlashWindowsClose",
    "invariant_claimsPayOnlyTheLatestRoot",
    "invariant_colludingRoundsMisassignOnlyTheirOwnBudget",
}


def test_forge_invariants_hold() -> None:
    require_tool(FORGE.exists() and shutil.which("node") is not None, "forge or node missing",
                 "run `npm ci`")  # fmt: skip
    done = subprocess.run(
        [str(FORGE), "test", "--color", "never"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    passed = dict(re.findall(r"\[PASS\] (\w+)\(\) \(runs: \d+, calls: (\d+)", done.stdout))
    assert set(passed) == INVARIANTS, done.stdout[-3000:]
    assert all(int(calls) >= 1_000 for calls in passed.values())
    assert "[FAIL" not in done.stdout
