"""The image prior page (VAE) with the MLP victim: the row-space box appears and a batch of 8 comes back exactly."""

from __future__ import annotations

from test_app import drain, metric, open_page


def test_prior_page_mlp_victim_explains_the_row_space_and_recovers_the_batch():
    at = open_page("pages/prior.py", **{"prior.batch": "8", "prior.seconds": "10", "prior.restarts": "1"})
    assert not any("This victim gives more away" in m.value for m in at.markdown)  # the LeNet: no slice
    at.selectbox(key="prior.victim").set_value("mlp").run()
    assert not at.exception, at.exception
    assert any("This victim gives more away" in m.value and "8-dimensional slice" in m.value for m in at.markdown)
    assert any("**64** numbers instead of 6,272 pixels" in m.value for m in at.markdown)
    assert at.query_params["prior.victim"] in ("mlp", ["mlp"])
    at.button(key="prior.go").click().run()
    drain(at, lambda a: any(m.label.startswith("PSNR") for m in a.metric))
    assert float(metric(at, "PSNR (higher = closer)").split()[0]) > 35
