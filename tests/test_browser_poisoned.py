"""The page "Poisoned clients" in headless Chromium: what the issue's learner does. 20% sign flippers
(recorded: FedAvg at chance, MultiKrum back), then ALIE against the median, run live."""

from __future__ import annotations

from test_browser import browser, clean, metric, open_url, page, server, settle, shoot, shots  # noqa: F401

SIGN_FLIP = "federation.attack=sign_flip&federation.attackers=0.2&federation.strategy=multikrum"


def test_sign_flippers_then_alie_against_the_median(page, server, shots):  # noqa: F811
    open_url(page, f"{server}/poisoned?{SIGN_FLIP}", "Poisoned clients")
    main = page.locator("[data-testid=stMain]")
    assert "Recorded earlier" in main.inner_text()
    attacked = float(metric(page, "attacked (FedAvg").rstrip("%"))
    defended = float(metric(page, "defended (MultiKrum)").rstrip("%"))
    assert attacked <= 15 and defended >= 50
    clean(page)
    shoot(page, shots, "poisoned-sign-flip")

    open_url(page, f"{server}/poisoned?federation.attack=alie&federation.strategy=median&model.width=4",
             "Poisoned clients")
    page.get_by_role("button", name="Run clean, attacked, defended").click()
    page.get_by_text("defended (median)").first.wait_for(timeout=300_000)
    settle(page)
    clean(page)
    assert "Weight each phone's update got" in main.inner_text()  # the kept grid and its legend
    shoot(page, shots, "poisoned-alie-median")
