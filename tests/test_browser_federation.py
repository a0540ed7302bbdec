"""The page "A real FL run" in headless Chromium: the recorded default, then what the issue's learner does:
drag the dropout slider, run, see phones drop out of the timeline, and attack round 5 on the DLG page."""

from __future__ import annotations

import re

from test_browser import browser, clean, metric, open_url, page, server, settle, shoot, shots, slider  # noqa: F401

SMALL = ("federation.clients=20&federation.fraction=0.25&federation.rounds=5&federation.local_epochs=1"
         "&model.width=4")


def wait_finished(tab, rounds: int) -> None:
    tab.get_by_text(re.compile(f"{rounds} of {rounds} rounds, finished")).first.wait_for(timeout=120_000)
    settle(tab)


def test_drag_dropout_run_and_attack_round_5(page, server, shots):  # noqa: F811
    open_url(page, f"{server}/federation", "A real FL run")
    assert "recorded earlier" in page.locator("[data-testid=stMain]").inner_text()
    assert float(metric(page, "Test accuracy").rstrip("%")) > 90
    clean(page)
    shoot(page, shots, "federation-default")

    open_url(page, f"{server}/federation?{SMALL}", "A real FL run")
    dropout = slider(page, "Dropout")
    dropout.focus()
    for _ in range(6):  # 0.0 -> 0.3
        dropout.press("ArrowRight")
    settle(page)
    assert "federation.dropout=0.3" in page.url  # the setting is in the session's link
    page.get_by_role("button", name="Run this federation").click()
    wait_finished(page, 5)
    clean(page)
    text = page.locator("[data-testid=stMain]").inner_text()
    dropped = re.search(r"Over the whole run: (\d+) of (\d+) sampled phones dropped out", text)
    assert dropped and int(dropped.group(1)) > 0, text[-2000:]
    shoot(page, shots, "federation-dropout")

    page.get_by_role("button", name="Attack it with DLG").click()
    page.get_by_role("heading", name="DLG in four stages").first.wait_for(timeout=120_000)
    # the page's heading comes first; the leak of round 5 is rebuilt before the rest of the page is drawn
    page.get_by_text("round 5 of the federated run").first.wait_for(timeout=120_000)
    settle(page)
    clean(page)
    assert "round 5 of the federated run" in page.locator("[data-testid=stMain]").inner_text()
    shoot(page, shots, "federation-attack-dlg")
