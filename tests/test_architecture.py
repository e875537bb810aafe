"""The parts of the architecture contract (docs/architecture.md) that import-linter does not check."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _function_lengths(folder: Path) -> dict[str, int]:
    lengths = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lengths[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = (
                    node.end_lineno - node.lineno + 1
                )
    return lengths


def test_no_function_of_the_trainer_is_over_80_lines_and_the_loop_is_under_60():
    lengths = _function_lengths(REPO / "avatar" / "train")
    assert lengths, "no functions found"
    too_long = {name: n for name, n in lengths.items() if n > 80}
    assert not too_long, too_long
    loop = next(
        n
        for name, n in lengths.items()
        if name.startswith("avatar/train/trainer.py") and name.endswith(" run")
    )
    assert loop < 60


@pytest.mark.slow
def test_the_import_contract_holds():
    """What `make test` runs before the tests, here too so that a plain pytest run catches a broken layer."""
    linter = Path(sys.executable).with_name("lint-imports")
    if not linter.exists():
        pytest.skip("import-linter is not installed in this environment")
    result = subprocess.run(
        [str(linter), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
