"""The prior page's diffusion prior in a real browser (the fixtures and helpers of test_browser.py)."""

from __future__ import annotations

from test_browser import browser, clean, metric, open_url, page, pytestmark, server, settle, shoot, shots  # noqa: F401


def test_prior_page_races_the_vae_against_the_diffusion_prior(page, server, shots):  # noqa: F811
    """Both priors on one leak of 4 digits: the table compares them, then the sampler's film from noise."""
    tab = page
    open_url(tab, f"{server}/prior?prior.batch=4&prior.seconds=6&prior.restarts=1&prior.kind=diffusion",
             "The image prior")
    tab.get_by_text("diffusion posterior sampling").first.wait_for()
    tab.get_by_role("button", name="Race the VAE against diffusion").click()
    tab.get_by_text("The two priors on the same leak").wait_for(timeout=120_000)
    settle(tab)
    tab.get_by_role("button", name="Watch the sampler from noise").click()
    tab.get_by_text("What to notice: the first frames").wait_for(timeout=120_000)
    settle(tab)
    assert metric(tab, "PSNR (higher = closer)").endswith("dB")
    clean(tab)
    shoot(tab, shots, "11b-prior-diffusion")
