"""Benchmark: the app as a user meets it. Not a test.

    python bench/app_speed.py                  # every page, 3 warm openings each, 4 extra sessions
    python bench/app_speed.py --repeats 5 --sessions 8
    python bench/app_speed.py --option server.fileWatcherType=none   # a streamlit setting to try

Starts `streamlit run app.py` (as the README does, headless) on a free port of 127.0.0.1 and drives
Debian's chromium through playwright. Prints, per page, the first render: from navigation to the
page's title shown and its script run finished, once cold (the server's first visit, imports and
caches filling) and then warm (a fresh browser session each time, median of the repeats); the latency
of non-attack interactions (one step of the batch-size slider until the leak summary changes; one
step of the Defences noise slider until epsilon changes); and the server's resident memory (RSS,
from psutil when installed, else /proc) before and after opening extra sessions, per session.
Targets from the issue: first render <= 3 s warm, interactions <= 300 ms, <= 600 MB per session.

Wall times swing with the machine's load, so each figure also comes with the CPU time it cost (from
/proc, Linux only): the Streamlit server's (the script run, Streamlit's work around it, serving files)
and the browser's (chromium's processes: parsing the frontend, drawing charts). CPU time moves little
with load: compare those between versions, and print `uptime` next to the wall times.
"""

from __future__ import annotations

import argparse
import os
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


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far, in seconds (0 for any that has gone)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def browser_pids() -> list[int]:
    """The chromium processes this benchmark started (descendants of this process)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            todo.append(child)
            try:
                if b"chrom" in Path(f"/proc/{child}/cmdline").read_bytes():
                    found.append(child)
            except OSError:
                pass
    return found


class CpuMeter:
    """CPU seconds the server and the browser spent between start() and stop()."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid

    def start(self) -> None:
        self.browser = browser_pids()
        self.at = (cpu_seconds([self.server_pid]), cpu_seconds(self.browser))

    def stop(self) -> tuple[float, float]:
        server, browser = cpu_seconds([self.server_pid]), cpu_seconds(self.browser)
        return server - self.at[0], browser - self.at[1]


def start_server(log_path: Path, options: tuple[str, ...] | list[str] = ()) -> tuple[subprocess.Popen, str]:
    port = free_port()
    extra = [arg for option in options for arg in (f"--{option.split('=', 1)[0]}", option.split("=", 1)[1])]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", *extra],
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


def open_page(browser, url: str, title: str, meter: CpuMeter) -> tuple[float, float, float]:
    """Seconds from navigation in a fresh session to the page's title shown and its run finished,
    and the server's and the browser's CPU seconds meanwhile."""
    context = browser.new_context(viewport=VIEW)
    tab = context.new_page()
    meter.start()
    started = time.perf_counter()
    tab.goto(url)
    tab.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
    settled(tab)
    seconds = time.perf_counter() - started
    cpu = meter.stop()
    context.close()
    return (seconds, *cpu)


def metric_value(tab, label: str) -> str:
    box = tab.locator("[data-testid=stMetric]").filter(has_text=label)
    return box.locator("[data-testid=stMetricValue]").inner_text()


def slider_latency(browser, url: str, title: str, slider_label: str, metric_label: str, repeats: int,
                   meter: CpuMeter) -> list[tuple[float, float, float]]:
    """Seconds from one arrow-key step of a slider until the named metric shows a new value, and the
    server's and the browser's CPU seconds until that rerun finished."""
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
        meter.start()
        started = time.perf_counter()
        knob.press("ArrowRight" if i % 2 == 0 else "ArrowLeft")
        deadline = started + 30
        while metric_value(tab, metric_label) == before and time.perf_counter() < deadline:
            tab.wait_for_timeout(5)
        seconds = time.perf_counter() - started
        settled(tab)
        times.append((seconds, *meter.stop()))
    context.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="warm openings per page, and slider steps")
    parser.add_argument("--sessions", type=int, default=4, help="extra sessions opened for the memory figure")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a streamlit setting for the server, e.g. server.fileWatcherType=none (repeatable)")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    server, base = start_server(log, args.option)
    meter = CpuMeter(server.pid)
    try:
        idle = rss_mb(server.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            rows = []
            for info in PAGES:
                url = f"{base}/{'' if info.key == 'home' else info.key}"
                title = info.title if info.key != "home" else "Gradient Inversion Lab"
                cold = open_page(browser, url, title, meter)[0]
                warm = [open_page(browser, url, title, meter) for _ in range(args.repeats)]
                seconds = [w[0] for w in warm]
                rows.append((info.title, cold, statistics.median(seconds), max(seconds),
                             statistics.median(w[1] for w in warm), statistics.median(w[2] for w in warm)))
            warmed = rss_mb(server.pid)

            batch = slider_latency(browser, f"{base}/leak", "Pick a batch and leak it", "Batch size",
                                   "Unknowns", args.repeats * 2, meter)
            noise = slider_latency(browser, f"{base}/defences", "Defences and their price", "Noise multiplier",
                                   "Privacy budget epsilon", args.repeats * 2, meter)

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

    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
          + (f"; options: {' '.join(args.option)}" if args.option else ""))
    print(f"\nfirst render, seconds (warm: median and max of {args.repeats} fresh sessions; target <= 3 s;"
          f"\nCPU: median seconds the server and the browser spent on a warm opening)")
    print(f"{'page':<28}{'cold':>8}{'warm':>8}{'max':>8}{'server':>9}{'browser':>9}")
    for title, cold, warm, worst, server_cpu, browser_cpu in rows:
        print(f"{title:<28}{cold:>8.2f}{warm:>8.2f}{worst:>8.2f}{server_cpu:>9.2f}{browser_cpu:>9.2f}")
    print("\ninteraction latency, ms (slider step until the figure changes; target <= 300 ms;"
          "\nCPU: median ms until the rerun finished)")
    print(f"{'interaction':<40}{'median':>8}{'max':>8}{'server':>9}{'browser':>9}")
    for name, steps in (("batch size -> leak summary (Unknowns)", batch), ("noise sigma -> epsilon (Defences)", noise)):
        times = [t[0] for t in steps]
        server_cpu, browser_cpu = (statistics.median(t[k] for t in steps) for k in (1, 2))
        print(f"{name:<40}{1000 * statistics.median(times):>8.0f}{1000 * max(times):>8.0f}"
              f"{1000 * server_cpu:>9.0f}{1000 * browser_cpu:>9.0f}")
    print("\nserver memory (RSS, MB; target <= 600 MB per session)")
    print(f"  started, no session:       {idle:8.0f}")
    print(f"  after every page opened:   {warmed:8.0f}")
    print(f"  with {args.sessions} more sessions open:  {loaded:8.0f}   "
          f"({(loaded - warmed) / max(1, args.sessions):.0f} MB per extra session)")


if __name__ == "__main__":
    main()
