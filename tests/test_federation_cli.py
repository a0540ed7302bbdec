"""`python -m engine simulate`: its four files, its errors, and Ctrl-C keeping the finished rounds."""

from __future__ import annotations

import csv
import json

import pytest
from PIL import Image

import engine.federation
from engine.cli import main
from engine.config import load_config

SMALL = ["model.width=4", "federation.clients=10", "federation.fraction=0.3", "federation.rounds=2",
         "federation.local_epochs=1"]
OUTPUTS = ("config.json", "rounds.csv", "history.json", "curves.png")
COLUMNS = {"round", "virtual_seconds", "sampled", "replied", "dropped", "straggled", "bytes_up", "bytes_down",
           "accuracy", "loss", "epsilon"}


def _args(*extra: str) -> list[str]:
    return [a for item in SMALL + list(extra) for a in ("--set", item)]


def test_simulate_writes_its_four_files(tmp_path, capsys):
    out = tmp_path / "fl"
    assert main(["simulate", *_args("defence.dp.noise_multiplier=1", "defence.dp.clip=5"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    rows = list(csv.DictReader((out / "rounds.csv").open()))
    assert [int(r["round"]) for r in rows] == [1, 2] and COLUMNS <= set(rows[0])
    assert all(0 <= float(r["accuracy"]) <= 1 and float(r["epsilon"]) > 0 for r in rows)
    assert float(rows[1]["virtual_seconds"]) > float(rows[0]["virtual_seconds"]) > 0
    history = json.loads((out / "history.json").read_text())
    assert len(history["rounds"]) == 2 and history["rounds"][0]["timings"]
    assert load_config(out / "config.json").federation.rounds == 2
    assert load_config(out / "config.json").model.name == "convnet"  # simulate's default victim learns
    assert Image.open(out / "curves.png").size[0] > 600  # three panels: accuracy by round, by clock, epsilon
    assert "2 rounds" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("federation.deadline=0", "deadline must be in"),
    ("federation.dropout=1.0", "dropout must be in"),
    ("federation.clients=5000", "every client needs at least one image"),
    ("federation.backend=deployment", "SuperLink"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, override, message):
    out = tmp_path / "fl"
    assert main(["simulate", *_args(override), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1] and "Traceback" not in "\n".join(err)
    assert not out.exists()


def test_ctrl_c_keeps_the_finished_rounds(tmp_path, capsys, monkeypatch):
    real = engine.federation.simulate

    def interrupted(config, on_initial=None):
        rounds = real(config, on_initial)
        yield next(rounds)
        rounds.close()
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.federation, "simulate", interrupted)
    out = tmp_path / "fl"
    assert main(["simulate", *_args(), "--out", str(out)]) == 130
    rows = list(csv.DictReader((out / "rounds.csv").open()))
    assert [r["round"] for r in rows] == ["1"]
    assert json.loads((out / "history.json").read_text())["stopped"] is True
    assert "stopped by user" in capsys.readouterr().out
