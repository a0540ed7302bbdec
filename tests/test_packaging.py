"""What Hugging Face Spaces reads: README.md's front matter pins the Streamlit and the Python that
requirements.txt and CI use, so the Space runs what the tests ran."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import streamlit

ROOT = Path(__file__).resolve().parents[1]


def _front_matter() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "README.md must open with the Spaces front matter"
    block = text[4 : text.index("\n---\n", 4)]
    return {k.strip(): v.strip().strip('"') for k, _, v in (line.partition(":") for line in block.splitlines())}


def _pin(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        found = re.match(rf"{package}==([\w.]+)", line.strip())
        if found:
            return found.group(1)
    raise AssertionError(f"requirements.txt does not pin {package} with ==")


def test_spaces_front_matter_pins_the_streamlit_of_requirements_and_of_this_environment():
    meta = _front_matter()
    assert meta["sdk"] == "streamlit" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == _pin("streamlit") == streamlit.__version__


def test_spaces_front_matter_pins_the_python_ci_runs():
    assert _front_matter()["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
