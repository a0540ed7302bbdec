"""The engine's layers read bottom-up: data, models, leakage, defences, attacks, experiment (and what runs
experiments), CLI and pages. A module imports only the layers below it; this checks the defences' side."""

from __future__ import annotations

import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "engine"
ABOVE_DEFENCES = {"experiment", "sweep", "utility", "defence_explain", "cli", "report", "attacks"}


def _engine_imports(path: Path) -> set[str]:
    """The first name below `engine` of every module `path` imports (relative or absolute)."""
    names = set()
    depth_of_package = len(path.relative_to(ENGINE).parts) - 1  # 1 inside engine/defences/
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from ..x import y: climb out of the package first
                parts = list(path.relative_to(ENGINE).parts[:-1])[: depth_of_package - (node.level - 1)]
                parts += (node.module or "").split(".") if node.module else [a.name for a in node.names]
                if parts:
                    names.add(parts[0])
            elif node.module and node.module.startswith("engine."):
                names.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {a.name.split(".")[1] for a in node.names if a.name.startswith("engine.")}
    return names


def test_defences_import_nothing_that_runs_experiments():
    files = sorted((ENGINE / "defences").glob("*.py"))
    assert files, "engine/defences/ has no modules"
    for path in files:
        wrong = _engine_imports(path) & ABOVE_DEFENCES
        assert not wrong, f"{path.name} imports {sorted(wrong)}, a layer above the defences"


def test_the_check_sees_an_upward_import(tmp_path):
    assert "experiment" in _engine_imports(ENGINE / "sweep.py")  # the checker is not blind
    assert {"defences", "experiment"} <= _engine_imports(ENGINE / "utility.py")
