"""How often does the end of a live run leave a stale page? Two browser sessions run DLG to the end
at once, `--rounds` times, on one `streamlit run app.py` server; a round fails when a session never
shows its finished state ("Done:", the PSNR metric, the film) or the browser logs a delta error.

    python bench/live_end.py --rounds 30            # as the browser test runs
    python bench/live_end.py --rounds 5 --lag 0.3   # the server's event loop 0.3 s behind its scripts

The race (pages/runner.py `live`) needs a tick to reach the server in the moment between the end of
a script run and the delivery of its messages: on a calm machine rare, on a busy one about a test run
in six. `--lag` widens that moment on purpose, without burning CPU (see LAGGED_SERVER), so that the
count says something in a few rounds. `--log-level debug` also counts the runner events the server
dropped. Needs Debian's chromium at /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
VIEW = {"width": 1400, "height": 900}


# Run by the server with --lag: each event a script runner sends to its session (a delta, a run's start
# or end) reaches the event loop LAG seconds late, in order, as when the loop waits for the GIL behind
# two attacks on a busy machine. Browser messages are not delayed. This widens the window of the race
# without burning CPU.
LAGGED_SERVER = """
import collections, sys, time
from streamlit.runtime.app_session import AppSession
from streamlit.web.cli import main

LAG = float(sys.argv.pop(1))

def _call_soon_on_event_loop(self, callback):
    loop, due = self._event_loop, time.monotonic() + LAG

    def pump():
        queue = self.__dict__["_lagged"]
        while queue and queue[0][0] <= time.monotonic():
            queue.popleft()[1]()
        if queue:
            loop.call_later(queue[0][0] - time.monotonic(), pump)

    def add():
        queue = self.__dict__.setdefault("_lagged", collections.deque())
        queue.append((due, callback))
        if len(queue) == 1:
            loop.call_later(LAG, pump)

    if not loop.is_closed():
        loop.call_soon_threadsafe(add)

AppSession._call_soon_on_event_loop = _call_soon_on_event_loop
sys.argv[0] = "streamlit"
main()
"""


def start_server(level: str, lag: float) -> tuple[subprocess.Popen, str, Path]:
    """`streamlit run app.py` on a free port, logging at `level`, its script runners' events `lag` seconds
    late; the process, its base URL and its log file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = Path(tempfile.mkdtemp()) / "streamlit.log"
    launch = [sys.executable, "-c", LAGGED_SERVER, str(lag)] if lag > 0 else [sys.executable, "-m", "streamlit"]
    proc = subprocess.Popen([*launch, "run", "app.py", "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1", "--logger.level", level],
                            cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return proc, base, log_path
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"streamlit did not start:\n{log_path.read_text()[-2000:]}")


def settle(tab) -> None:
    time.sleep(0.4)
    tab.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=90_000)
    time.sleep(0.3)


def one_round(browser, base: str, seeds: tuple[int, int], wait_s: float, throttle: float) -> str:
    """'' when both sessions end showing their result, else what went wrong."""
    contexts = [browser.new_context(viewport=VIEW) for _ in seeds]
    tabs = [c.new_page() for c in contexts]
    if throttle > 1:  # a slow browser answers the server late: the race shows more often, at no CPU cost
        for c, tab in zip(contexts, tabs):
            c.new_cdp_session(tab).send("Emulation.setCPUThrottlingRate", {"rate": throttle})
    errors: list[str] = []
    for i, tab in enumerate(tabs):
        tab.on("pageerror", lambda err, i=i: errors.append(f"session {i}: {err}"))
        tab.on("console", lambda msg, i=i: errors.append(f"session {i} console: {msg.text}")
               if msg.type == "error" else None)
        tab.set_default_timeout(90_000)
    try:
        for tab, seed in zip(tabs, seeds):
            tab.goto(f"{base}/dlg?seed={seed}")
            tab.get_by_role("heading", name="DLG in four stages").first.wait_for()
            settle(tab)
        for tab in tabs:
            tab.get_by_role("button", name="Run to the end").click()
        problems = []
        for i, tab in enumerate(tabs):
            try:
                tab.get_by_text("Done:").wait_for(timeout=45_000)
                settle(tab)
                time.sleep(wait_s)  # the final full rerun has had its chance to break the page
                psnr = tab.locator("[data-testid=stMetric]").filter(has_text="PSNR")
                psnr.locator("[data-testid=stMetricValue]").first.wait_for(timeout=5_000)
                tab.get_by_text("Done:").wait_for(timeout=5_000)
                tab.get_by_text("Scrub the run like a film").wait_for(timeout=5_000)
            except Exception as err:  # noqa: BLE001 - report and count
                text = tab.locator("[data-testid=stMain]").inner_text(timeout=5_000).replace("\n", " | ")
                problems.append(f"session {i}: {type(err).__name__}; page ends: {text[-300:]}")
        delta = [e for e in errors if "delta" in e.lower() or "setIn" in e]
        return "; ".join(problems + delta[:3])
    finally:
        for c in contexts:
            c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--wait", type=float, default=1.0, help="seconds to wait after the end before checking")
    parser.add_argument("--throttle", type=float, default=1.0, help="slow each tab's CPU this many times")
    parser.add_argument("--lag", type=float, default=0.0, help="delay the server's runner events by this (s)")
    parser.add_argument("--log-level", default="info", help="the server's; 'debug' logs the messages it drops")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    proc, base, log_path = start_server(args.log_level, args.lag)
    failures = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for r in range(args.rounds):
                started = time.time()
                problem = one_round(browser, base, (1, 2), args.wait, args.throttle)  # the browser test's seeds
                failures += bool(problem)
                print(f"round {r + 1:3d} {time.time() - started:5.1f} s  {'FAIL ' + problem if problem else 'ok'}",
                      flush=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    dropped = log_path.read_text().count("Ignoring event from non-current ScriptRunner")  # debug level only
    print(f"{failures} of {args.rounds} rounds failed; events of a replaced script runner dropped: {dropped} "
          f"(server log: {log_path})")


if __name__ == "__main__":
    main()
