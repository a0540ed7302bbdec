"""scripts/build_assets.py keeps the provenance sections other scripts wrote."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "build_assets.py"


def load_script():
    spec = importlib.util.spec_from_file_location("build_assets", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_a_rebuild_carries_the_priors_section_over():
    build = load_script()
    old = "# Provenance\n\n## MNIST\nold rows\n\n## Image priors (`assets/priors/`)\n- weights\n"
    assert build.kept_sections(old) == "\n## Image priors (`assets/priors/`)\n- weights\n"
    assert build.kept_sections("# Provenance\n\n## MNIST\n") == ""
    shipped = (SCRIPT.parents[1] / "assets" / "PROVENANCE.md").read_text()
    assert "priors/mnist.pt" in build.kept_sections(shipped)
