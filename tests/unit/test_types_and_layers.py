"""The types and the layers stay honest (issue 9): mypy over src/webinfra and import-linter's contracts, both as
pyproject.toml configures them ([tool.mypy], [tool.importlinter]; docs/ARCHITECTURE.md says what they enforce).
Each runs from this interpreter's venv, in the repository, in seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("tool", ["mypy", "lint-imports"])
def test_tool_passes(tool: str) -> None:
    exe = BIN / tool
    assert exe.exists(), f"{exe} missing: install the test extra (pip install -c constraints.txt -e '.[test]')"
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{tool} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
