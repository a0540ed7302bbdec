"""The dishonest-server page in a real browser (the fixtures and helpers of test_browser.py)."""

from __future__ import annotations

from test_browser import browser, clean, metric, open_url, page, pytestmark, server, settle, shoot, shots  # noqa: F401


def test_dishonest_page_leaks_through_secure_aggregation_then_the_phone_refuses(page, server, shots):  # noqa: F811
    """One click: 8 phones behind secure aggregation, and most of the 64 digits come back exactly; then the
    phones' check refuses the model."""
    tab = page
    open_url(tab, f"{server}/dishonest", "A dishonest server")
    assert int(metric(tab, "Exact images (above 60 dB)").split(" of ")[0]) >= 50
    tab.get_by_role("button", name="Run the round: 8 phones x 8 images, secure aggregation").click()
    tab.get_by_text("came back exactly from a sum").wait_for(timeout=120_000)
    settle(tab)
    tab.get_by_text("Phones vet the model before training").click()
    tab.get_by_text("The phone refuses the model").wait_for(timeout=60_000)
    settle(tab)
    clean(tab)
    shoot(tab, shots, "12-dishonest")
