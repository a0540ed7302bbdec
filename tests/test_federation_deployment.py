"""Flower's Deployment Runtime: a SuperLink and two SuperNodes on local ports run the lab's App (flower/).

What a user types (README, "Flower's Deployment Runtime"), started here as process groups on free
127.0.0.1 ports, with Flower's home and $HOME in a temporary folder and telemetry off; `flwr run`
trains two rounds and the ServerApp's rounds.jsonl must show both partitions replying and the same
test accuracy as the in-process backend on the same config. Everything is torn down whatever happens.
Marked `deployment`, opt-in (pytest.ini deselects it; run it with `-m deployment`): about 3 minutes
on 2 busy cores, most of it Python starting up. It skips when Flower's CLI is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from engine.federation import run_history
from engine.federation.client_app import lab_config

pytestmark = pytest.mark.deployment

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "flower"
NODES = 2
RUN_CONFIG = {"federation.rounds": 2, "federation.batch_size": 500}  # 4 local steps a round: seconds, not minutes
RUN_TIMEOUT = 420  # seconds for `flwr run`; the whole test took 187 s on 2 cores at a load average of 15-17


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s:\n{log.read_text()[-3000:]}")


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, start time) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[19])


def _descendants(pid: int) -> list[tuple[int, int]]:
    """(pid, start time) of every process below `pid` (Flower's SuperExec and ClientApp processes start
    their own sessions, so a process group does not hold them)."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid, start = _stat(int(entry))
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append((int(entry), start))
    found, todo = [], list(children.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child[0], ()))
    return found


def _signal(pid: int, start: int, sig: int) -> None:
    """Signal `pid` only if it is still the process seen before (same start time), never a reused pid."""
    try:
        if _stat(pid)[1] == start:
            os.kill(pid, sig)
    except (OSError, IndexError, ValueError):
        pass


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each process group and every descendant, then SIGKILL whatever is left after 15 s."""
    below = [d for proc in procs for d in _descendants(proc.pid)]
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for pid, start in below:
        _signal(pid, start, signal.SIGTERM)
    end = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for proc in procs:  # the group, also when its leader has already gone
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
    for pid, start in below:
        _signal(pid, start, signal.SIGKILL)


def _app_run_config() -> dict:
    """The App's run config as Flower hands it to the apps: [tool.flwr.app.config], flattened."""
    table = tomllib.loads((APP / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]

    def flat(node: dict, prefix: str = "") -> dict:
        out: dict = {}
        for key, value in node.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return out

    return flat(table)


@pytest.fixture
def federation(tmp_path):
    """A SuperLink and two SuperNodes on free local ports; yields (connection name, env, logs folder)."""
    if shutil.which("flower-superlink") is None or shutil.which("flwr") is None:
        pytest.skip("Flower's CLI (flwr, flower-superlink, flower-supernode) is not installed")
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "FLWR_HOME": str(home), "HOME": str(home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    link = _free_port()
    (home / "config.toml").write_text(
        f'[superlink]\ndefault = "lab"\n\n[superlink.lab]\naddress = "127.0.0.1:{link}"\ninsecure = true\n')
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> subprocess.Popen:
        log = tmp_path / f"{name}.log"
        proc = subprocess.Popen(list(args), cwd=tmp_path, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append(proc)
        return proc

    try:
        superlink = start("superlink", "flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(link),
                          "--disable-runtime-dependency-installation")
        _wait_for_port(link, superlink, tmp_path / "superlink.log")
        for k in range(NODES):
            port = _free_port()
            node = start(f"supernode{k}", "flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{link}",
                         "--host", "127.0.0.1", "--port", str(port),
                         "--node-config", f"partition-id={k} num-partitions={NODES}")
            _wait_for_port(port, node, tmp_path / f"supernode{k}.log")
        yield "lab", env, tmp_path
    finally:
        _stop(procs)


def test_flwr_run_trains_two_rounds_on_a_superlink_and_two_supernodes(federation):
    connection, env, folder = federation
    out = folder / "out"
    overrides = " ".join(f"{k}={v}" for k, v in RUN_CONFIG.items()) + f' out="{out}"'
    command = ["flwr", "run", str(APP), connection, "--stream", "--run-config", overrides]
    run = subprocess.Popen(command, cwd=folder, env=env, stdout=(folder / "flwr-run.log").open("w"),
                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        run.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pass
    finally:
        _stop([run])
    logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(folder.glob("*.log")))
    assert (out / "rounds.jsonl").exists(), f"the ServerApp wrote no rounds.jsonl:\n{logs}"
    rows = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2], logs  # the untrained model's test, then two rounds
    assert all(r["replied"] == [0, 1] and not r["aborted"] for r in rows[1:]), rows  # both partitions replied
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)

    # the same App in one process (same config, same seed) gets the same test accuracy every round
    config = lab_config({**_app_run_config(), **RUN_CONFIG})
    assert config.federation.clients == NODES and config.federation.rounds == 2
    history = run_history(config)
    assert rows[0]["accuracy"] == pytest.approx(history.initial_accuracy, abs=1e-9)
    assert [r["accuracy"] for r in rows[1:]] == pytest.approx([r.accuracy for r in history.records], abs=2 / 500)
    assert [r["loss"] for r in rows[1:]] == pytest.approx([r.loss for r in history.records], rel=1e-3)
    assert rows[2]["accuracy"] > rows[0]["accuracy"]  # the model learned
