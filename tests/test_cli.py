"""The command line: `python -m engine example-config | run`, its files, its errors, and Ctrl-C.

Most tests call `engine.cli.main(argv)` in this process (torch loads once); one runs `python -m engine`
as a real process and interrupts it with SIGINT, as a user's Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.cli import main
from engine.config import Config, from_json, load_config, with_overrides
from engine.report import comparison_image

ROOT = Path(__file__).resolve().parents[1]
OUTPUTS = ("config.json", "metrics.json", "reconstruction.png")


def test_example_config_prints_the_default(capsys):
    assert main(["example-config"]) == 0
    assert from_json(capsys.readouterr().out) == Config()


def test_example_config_takes_overrides(capsys):
    assert main(["example-config", "--set", "data.batch_size=4", "--set", "attack.name=ig"]) == 0
    assert from_json(capsys.readouterr().out) == with_overrides(Config(), ["data.batch_size=4", "attack.name=ig"])


def test_run_reconstructs_the_default_digit(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--set", "attack.iterations=200", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    assert "PSNR" in printed.out and str(out) in printed.out
    assert "200/200" in printed.err  # the progress bar went to stderr

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["psnr"] > 25  # DLG on one bundled MNIST digit: the oracle the lab rests on
    assert metrics["label_accuracy"] == 1.0
    assert metrics["iterations"] == 200 and 0 < metrics["seconds"] < 60
    assert metrics["per_image_psnr"] == [pytest.approx(metrics["psnr"])]
    assert (metrics["dataset"], metrics["batch_size"]) == ("mnist", 1)
    assert metrics["observed"] > metrics["unknowns"] == 28 * 28 + 1
    assert 0 < metrics["ssim"] <= 1 and metrics["reason"]

    used = with_overrides(Config(), ["attack.iterations=200"])
    assert load_config(out / "config.json") == used  # the exact config, loadable again

    with Image.open(out / "reconstruction.png") as image:
        width, height = image.size
    assert width >= 84 and height > 2 * width  # one upscaled digit above its reconstruction


def test_run_reads_a_config_file(tmp_path, capsys):
    first = tmp_path / "first"
    (tmp_path / "cfg.json").write_text(json.dumps({"seed": 3, "attack": {"iterations": 5}}))
    assert main(["run", str(tmp_path / "cfg.json"), "--set", "data.batch_size=2", "--out", str(first)]) == 0
    assert load_config(first / "config.json") == with_overrides(
        Config(), ["seed=3", "attack.iterations=5", "data.batch_size=2"]
    )
    second = tmp_path / "second"  # a run's config.json is itself a config file
    assert main(["run", str(first / "config.json"), "--out", str(second)]) == 0
    assert (second / "config.json").read_text() == (first / "config.json").read_text()
    assert json.loads((second / "metrics.json").read_text())["batch_size"] == 2


@pytest.mark.parametrize(
    "args, words",
    [
        (["--set", "data.batch_sise=2"], ["data.batch_sise", "batch_size"]),
        (["--set", "data.batch_size=1000"], ["batch size 1000", "500 images"]),
        (["--set", "model.name=vgg"], ["model.name", "lenet"]),
        (["--set", "nonsense"], ["section.key=value"]),
        (["BAD_JSON"], ["not valid JSON", "bad.json"]),
        (["MISSING"], ["not found", "missing.json"]),
        (["DEEP"], ["nested too deeply", "deep.json"]),  # Python's JSON decoder would overflow its stack
        (["--set", "data.indices=" + "[" * 5000 + "]" * 5000], ["nested too deeply"]),
        (["--set", "data.alpha=1" + "0" * 400], ["data.alpha", "expected float"]),  # past the largest float
        (["--set", "data.batch_size=1" + "0" * 5000], ["more than 4300 digits"]),
        (["--set", "leak.local_steps=100000"], ["leak.local_steps", "at most 100"]),  # was minutes with no word
        (["--set", "defence.dp.noise_multiplier=1e308"], ["defence.dp.noise_multiplier", "1e+06"]),  # no OverflowError
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, words):
    (tmp_path / "bad.json").write_text('{"data": {"batch_size": 2,}')
    (tmp_path / "deep.json").write_text('{"data": ' + "[" * 5000 + "]" * 5000 + "}")
    paths = {"BAD_JSON": str(tmp_path / "bad.json"), "MISSING": str(tmp_path / "missing.json"),
             "DEEP": str(tmp_path / "deep.json")}
    out = tmp_path / "out"
    assert main(["run", *[paths.get(a, a) for a in args], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert all(word in err for word in words), err
    assert "Traceback" not in err
    assert not out.exists()  # nothing half-written


def test_comparison_image_puts_originals_above_reconstructions():
    originals = torch.rand(3, 1, 28, 28)
    recon = torch.rand(3, 1, 28, 28)
    image = np.asarray(comparison_image(originals, recon, columns=2))
    scale = 4  # 28 px upscaled to at least 96
    tile = 28 * scale
    expected = (originals[1, 0] * 255).round().to(torch.uint8).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    left = tile + 4  # second column, after one gap
    assert np.array_equal(image[:tile, left : left + tile], expected.numpy())
    expected = (recon[2, 0] * 255).round().to(torch.uint8).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    top = 2 * tile + 4 + 16 + tile + 4  # second band, reconstruction row
    assert np.array_equal(image[top : top + tile, :tile], expected.numpy())
    assert image.shape == (2 * (2 * tile + 4) + 16, 2 * tile + 4)


def test_ctrl_c_stops_the_attack_and_keeps_what_exists(tmp_path):
    out = tmp_path / "stopped"
    command = [sys.executable, "-m", "engine", "run", "--set", "data.batch_size=8", "--set", "attack.iterations=100000",
               "--set", "attack.time_limit=60", "--out", str(out)]
    log = tmp_path / "stderr.txt"
    with open(log, "w") as err:
        process = subprocess.Popen(  # SIGINT restored to default: a parent may have ignored it
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120  # wait until the progress bar shows the attack's loss
        while "loss=" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, _ = process.communicate(timeout=60)
    stderr = log.read_text()
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["reason"] == "stopped by user"
    assert 0 < metrics["iterations"] < 100000
    assert "stopped by user" in stdout
