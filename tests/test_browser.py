"""End to end in a real browser: `streamlit run app.py` on a free port, driven by Debian's chromium
through playwright. Walks the story (pick a batch, leak, step the four DLG stages, run DLG to the end
on one digit, turn DP noise on and see epsilon and the PSNR drop, open a deep link), saves a screenshot
of every page, and tries bad inputs (a text file as an image, a malformed config.json): each must give
a clear message and no traceback.

Screenshots go to $LAB_SCREENSHOTS when set, else to a temporary folder (printed at the end).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]
VIEW = {"width": 1400, "height": 900}

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed at /usr/bin/chromium"),
    pytest.mark.slow,
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app as the README starts it, on a free port of 127.0.0.1; its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(f"{base}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"streamlit did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get("LAB_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport=VIEW)
    tab = context.new_page()
    tab.set_default_timeout(60_000)
    yield tab
    context.close()


# -----------------------------------------------------------------------------
# helpers


def settle(tab) -> None:
    """Wait until the app has finished its current run (the 'Running' widget has gone)."""
    time.sleep(0.4)
    tab.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=90_000)
    time.sleep(0.3)


def open_url(tab, url: str, title: str) -> None:
    tab.goto(url)
    tab.get_by_role("heading", name=title).first.wait_for()
    settle(tab)


def clean(tab) -> None:
    """No traceback and no uncaught-exception box anywhere on the page."""
    text = tab.locator("[data-testid=stMain]").inner_text()
    assert "Traceback" not in text
    assert tab.locator("[data-testid=stException]").count() == 0


def shoot(tab, shots: Path, name: str) -> None:
    """A screenshot of the whole page (the main area scrolls inside the window, so grow the window)."""
    height = tab.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    tab.set_viewport_size({"width": VIEW["width"], "height": min(int(height) + 40, 6000)})
    time.sleep(0.5)
    tab.screenshot(path=str(shots / f"{name}.png"))
    tab.set_viewport_size(VIEW)


def nav(tab, title: str) -> None:
    tab.locator("[data-testid=stSidebarNav]").get_by_role("link", name=title).click()
    tab.get_by_role("heading", name=title).first.wait_for()
    settle(tab)


def slider(tab, label: str):
    return tab.locator("[data-testid=stSlider]").filter(has_text=label).get_by_role("slider")


def metric(tab, label: str) -> str:
    box = tab.locator("[data-testid=stMetric]").filter(has_text=label)
    return box.locator("[data-testid=stMetricValue]").inner_text()


def png_digit() -> bytes:
    """A 56x56 PNG of a white stroke on black, like a hand-drawn 7."""
    import io

    from PIL import Image, ImageDraw

    picture = Image.new("L", (56, 56), 0)
    ImageDraw.Draw(picture).line([(12, 12), (44, 12), (24, 48)], fill=255, width=6)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


# -----------------------------------------------------------------------------
# the walk


def test_story_walk(page, server, shots):
    tab = page
    open_url(tab, server, "Gradient Inversion Lab")
    tab.get_by_text("The story in five lines").wait_for()
    clean(tab)
    shoot(tab, shots, "1-home")

    nav(tab, "What FL promises")
    clean(tab)
    shoot(tab, shots, "2-promise")

    # pick a batch: one more image, the leak follows
    nav(tab, "Pick a batch and leak it")
    assert metric(tab, "Unknowns") == "785"
    size = slider(tab, "Batch size")
    size.focus()
    size.press("ArrowRight")
    tab.get_by_text("1,570", exact=True).wait_for()
    settle(tab)
    assert "batch_size=2" in tab.url  # the settings travel in the address
    assert metric(tab, "Labels recovered") == "100%"
    clean(tab)
    shoot(tab, shots, "3-leak")
    size.focus()
    size.press("ArrowLeft")  # back to one digit for the attack
    tab.get_by_text("785", exact=True).wait_for()
    settle(tab)

    # DLG: the four stages, then to the end
    nav(tab, "DLG in four stages")
    stage = tab.get_by_role("button", name="Next stage")
    for expected in ("1. Dummy", "2. Dummy gradient", "3. Compare"):
        stage.click()
        settle(tab)
        now = tab.locator("[data-testid=stMarkdownContainer]").filter(has_text=expected).filter(has_text="now")
        now.first.wait_for(timeout=30_000)  # on a busy machine the rerun may begin only after settle() looked
        assert now.count() == 1, expected  # the stage just run is marked
    tab.get_by_text("Stage 3, per layer").wait_for()
    shoot(tab, shots, "4-dlg-stage-3")
    tab.get_by_role("button", name="Run to the end").click()
    tab.get_by_text("Done:").wait_for(timeout=90_000)
    settle(tab)
    psnr = float(metric(tab, "PSNR").split()[0])
    assert psnr > 25, psnr
    tab.get_by_text("Scrub the run like a film").wait_for()
    clean(tab)
    shoot(tab, shots, "5-dlg-done")

    nav(tab, "Stronger attacks")
    tab.get_by_text("Labels straight from the gradient").wait_for()
    clean(tab)
    shoot(tab, shots, "6-stronger")

    # defences: noise on, epsilon appears at once, then DLG on the defended leak falls apart
    nav(tab, "Defences")
    assert metric(tab, "Privacy budget epsilon") == "∞"  # short enough for its column (it once read "none (no no…")
    sigma = slider(tab, "Noise multiplier sigma")
    sigma.focus()
    for _ in range(9):  # off -> 1e-4 -> ... -> 1
        sigma.press("ArrowRight")
    budget = tab.locator("[data-testid=stMetric]").filter(has_text="Privacy budget epsilon")
    budget.get_by_text("0.671", exact=True).wait_for()  # the accountant's epsilon, before any attack
    settle(tab)
    tab.get_by_role("button", name="Run DLG on both").click()
    done = tab.locator("[data-testid=stMarkdownContainer]").filter(has_text="(done)").filter(has_text="PSNR")
    done.nth(1).wait_for(timeout=90_000)
    settle(tab)
    psnr = {line.split(":")[0].strip(): float(line.split("PSNR")[1].split("dB")[0])
            for line in done.all_inner_texts()}
    assert psnr["With the defence"] < psnr["No defence"] - 10, psnr
    clean(tab)
    shoot(tab, shots, "7-defences")

    nav(tab, "Your experiment")
    tab.get_by_text('"batch_size": 1').first.wait_for()
    tab.get_by_text("Share a link").wait_for()
    clean(tab)
    shoot(tab, shots, "8-experiment")


def test_deep_link_reopens_a_page_with_its_settings(page, server, shots):
    tab = page
    open_url(tab, f"{server}/leak?data.batch_size=3&data.dataset=fashion_mnist", "Pick a batch and leak it")
    assert metric(tab, "Unknowns") == f"{3 * 785:,}"
    assert "3 Fashion-MNIST images" in tab.locator("[data-testid=stMain]").inner_text()
    open_url(tab, f"{server}/dlg?data.batch_size=2&seed=5&data.clients=oops", "DLG in four stages")
    text = tab.locator("[data-testid=stMain]").inner_text()
    assert "2 MNIST images" in text
    assert "data.clients=oops was ignored" in text  # a bad setting is named, the rest still applies
    clean(tab)
    shoot(tab, shots, "8-deep-link-dlg")


def test_bad_upload_and_bad_config_give_clear_messages(page, server, shots):
    tab = page
    open_url(tab, f"{server}/leak", "Pick a batch and leak it")
    tab.get_by_text("my own files").click()
    settle(tab)
    tab.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
        files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"my shopping list, not a photo"}])
    tab.get_by_text("Only PNG or JPEG images are accepted").wait_for()
    settle(tab)
    clean(tab)
    shoot(tab, shots, "9-bad-upload")
    tab.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
        files=[{"name": "seven.png", "mimeType": "image/png", "buffer": png_digit()}])
    tab.get_by_text("1 uploaded image").wait_for()  # the good file is leaked, the bad one still named
    settle(tab)
    assert "Only PNG or JPEG" in tab.locator("[data-testid=stMain]").inner_text()
    clean(tab)

    open_url(tab, f"{server}/experiment", "Your experiment")
    tab.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(
        files=[{"name": "config.json", "mimeType": "application/json", "buffer": b'{"data": {"batch_size": "two"'}])
    tab.get_by_text("config.json was not loaded").wait_for()
    settle(tab)
    assert "not valid JSON" in tab.locator("[data-testid=stMain]").inner_text()
    clean(tab)
    shoot(tab, shots, "10-bad-config")


def test_two_sessions_attack_at_once(browser, server):
    """Two browser sessions run DLG at the same time; each finishes with its own result."""
    contexts = [browser.new_context(viewport=VIEW) for _ in range(2)]
    tabs = [c.new_page() for c in contexts]
    errors: list[str] = []
    for i, tab in enumerate(tabs):
        tab.on("pageerror", lambda err, i=i: errors.append(f"session {i}: {err}"))
        tab.on("console", lambda msg, i=i: errors.append(f"session {i} console: {msg.text}") if msg.type == "error" else None)
    try:
        for tab, seed in zip(tabs, (1, 2)):
            tab.set_default_timeout(90_000)
            open_url(tab, f"{server}/dlg?seed={seed}", "DLG in four stages")
        for tab in tabs:
            tab.get_by_role("button", name="Run to the end").click()
        for i, tab in enumerate(tabs):
            try:
                tab.get_by_text("Done:").wait_for()
            except Exception as err:  # say what the page showed instead, so a CI log explains a failure
                text = tab.locator("body").inner_text(timeout=5_000)
                raise AssertionError(f"session {i} never finished; its page said:\n{text[:3000]}\n"
                                     f"browser errors: {errors}") from err
            try:
                settle(tab)
                assert float(metric(tab, "PSNR").split()[0]) > 25
            except Exception as err:
                raise AssertionError(f"session {i} lost its result; browser errors: {errors}") from err
            clean(tab)
    finally:
        for c in contexts:
            c.close()


def test_prior_page_turns_the_prior_on(page, server, shots):
    """The VAE prior on a small batch: the run ends with a reconstruction, its spread and the training-set check."""
    tab = page
    open_url(tab, f"{server}/prior?prior.batch=4&prior.seconds=4", "The image prior")
    assert metric(tab, "Pixels a pixel attack must find") == f"{4 * 784:,}"
    tab.get_by_role("button", name="Run the prior attack").click()
    tab.get_by_text("Ended:").wait_for(timeout=90_000)
    settle(tab)
    assert metric(tab, "PSNR (higher = closer)").endswith("dB")
    assert metric(tab, "Nearer their victim").endswith("of 4")
    tab.get_by_text("Where the attacker is guessing").wait_for()
    clean(tab)
    shoot(tab, shots, "11-prior")
