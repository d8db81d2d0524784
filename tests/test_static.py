"""The codebase's own checks: ruff (lint and format) over the whole tree and mypy (strict on
``flchain/``, as ``[tool.mypy]`` in pyproject.toml says), so CI holds lint, layout and the
typed vocabulary."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.tools import require_tool

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    "command",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_static_check_passes(command: list[str]) -> None:
    tool = BIN / command[0]
    require_tool(tool.exists(), f"{command[0]} is not installed", "pip install -e '.[test]'")
    done = subprocess.run(
        [str(tool), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
