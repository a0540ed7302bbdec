"""Benchmark: the app as a user meets it. Not a test.

    python bench/app_speed.py                  # every page, 3 warm openings each, 4 extra sessions
    python bench/app_speed.py --repeats 5 --sessions 8

Starts `streamlit run app.py` (as the README does, headless) on a free port of 127.0.0.1 and drives
Debian's chromium through playwright. Prints, per page, the first render: from navigation to the
page's title shown and its script run finished, once cold (the server's first visit, imports and
caches filling) and then warm (a fresh browser session each time, median of the repeats); the latency
of non-attack interactions (one step of the batch-size slider until the leak summary changes; one
step of the Defences noise slider until epsilon changes); and the server's resident memory (RSS,
from psutil when installed, else /proc) before and after opening extra sessions, per session.
Targets from the issue: first render <= 3 s warm, interactions <= 300 ms, <= 600 MB per session.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pages.common import PAGES  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
VIEW = {"width": 1400, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children, in MB."""
    try:
        import psutil

        proc = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                return proc, base
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise SystemExit(f"streamlit did not start; see {log_path}")


def settled(tab, timeout_ms: int = 120_000) -> None:
    """The script run has finished: the 'Running' widget has gone (polled, so timing stays fine-grained)."""
    tab.wait_for_timeout(50)
    tab.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=timeout_ms)


def open_page(browser, url: str, title: str) -> float:
    """Seconds from navigation in a fresh session to the page's title shown and its run finished."""
    context = browser.new_context(viewport=VIEW)
    tab = context.new_page()
    started = time.perf_counter()
    tab.goto(url)
    tab.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    settled(tab)
    seconds = time.perf_counter() - started
    context.close()
    return seconds


def metric_value(tab, label: str) -> str:
    box = tab.locator("[data-testid=stMetric]").filter(has_text=label)
    return box.locator("[data-testid=stMetricValue]").inner_text()


def slider_latency(browser, url: str, title: str, slider_label: str, metric_label: str, repeats: int) -> list[float]:
    """Seconds from one arrow-key step of a slider until the named metric shows a new value."""
    context = browser.new_context(viewport=VIEW)
    tab = context.new_page()
    tab.goto(url)
    tab.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    settled(tab)
    knob = tab.locator("[data-testid=stSlider]").filter(has_text=slider_label).get_by_role("slider")
    times = []
    for i in range(repeats):
        before = metric_value(tab, metric_label)
        knob.focus()
        started = time.perf_counter()
        knob.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        deadline = started + 30
        while metric_value(tab, metric_label) == before and time.perf_counter() < deadline:
            tab.wait_for_timeout(5)
        times.append(time.perf_counter() - started)
        settled(tab)
    context.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm openings per page, and slider steps")
    parser.add_argument("--sessions", type=int, default=4, help="extra sessions opened for the memory figure")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    server, base = start_server(log)
    try:
        idle = rss_mb(server.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            rows = []
            for info in PAGES:
                url = f"{base}/{'' if info.key == 'home' else info.key}"
                cold = open_page(browser, url, info.title if info.key != "home" else "Gradient Inversion Lab")
                warm = [open_page(browser, url, info.title if info.key != "home" else "Gradient Inversion Lab")
                        for _ in range(args.repeats)]
                rows.append((info.title, cold, statistics.median(warm), max(warm)))
            warmed = rss_mb(server.pid)

            batch = slider_latency(browser, f"{base}/leak", "Pick a batch and leak it", "Batch size",
                                   "Unknowns", args.repeats * 2)
            noise = slider_latency(browser, f"{base}/defences", "Defences and their price", "Noise multiplier",
                                   "Privacy budget epsilon", args.repeats * 2)

            contexts = []
            for _ in range(args.sessions):  # sessions that stay open, each with a leak made on three pages
                context = browser.new_context(viewport=VIEW)
                tab = context.new_page()
                for key, title in (("leak", "Pick a batch and leak it"), ("dlg", "DLG in four stages"),
                                   ("defences", "Defences and their price")):
                    tab.goto(f"{base}/{key}")
                    tab.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
                    settled(tab)
                contexts.append(context)
            loaded = rss_mb(server.pid)
            for context in contexts:
                context.close()
            browser.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"first render, seconds (warm: median and max of {args.repeats} fresh sessions; target <= 3 s)")
    print(f"{'page':<28}{'cold':>8}{'warm':>8}{'max':>8}")
    for title, cold, warm, worst in rows:
        print(f"{title:<28}{cold:>8.2f}{warm:>8.2f}{worst:>8.2f}")
    print("\ninteraction latency, ms (slider step until the figure changes; target <= 300 ms)")
    print(f"{'interaction':<40}{'median':>8}{'max':>8}")
    for name, times in (("batch size -> leak summary (Unknowns)", batch), ("noise sigma -> epsilon (Defences)", noise)):
        print(f"{name:<40}{1000 * statistics.median(times):>8.0f}{1000 * max(times):>8.0f}")
    print("\nserver memory (RSS, MB; target <= 600 MB per session)")
    print(f"  started, no session:       {idle:8.0f}")
    print(f"  after every page opened:   {warmed:8.0f}")
    print(f"  with {args.sessions} more sessions open:  {loaded:8.0f}   "
          f"({(loaded - warmed) / max(1, args.sessions):.0f} MB per extra session)")


if __name__ == "__main__":
    main()
