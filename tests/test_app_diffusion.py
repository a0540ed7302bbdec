"""The prior page with the diffusion prior: the choice of prior, the race between the two on one leak,
and the sampler's film strip from noise."""

from __future__ import annotations

from test_app import drain, metric, open_page


def test_prior_page_switches_to_the_diffusion_prior_and_runs_it():
    at = open_page("pages/prior.py", **{"prior.batch": "2", "prior.seconds": "6", "prior.restarts": "1"})
    assert not any("diffusion posterior sampling" in m.value for m in at.markdown)
    at.radio(key="prior.kind").set_value("diffusion").run()
    assert not at.exception, at.exception
    assert any("diffusion posterior sampling" in m.value for m in at.markdown)
    assert at.query_params["prior.kind"] in ("diffusion", ["diffusion"])
    at.button(key="prior.go").click().run()
    drain(at, lambda a: any(m.label.startswith("PSNR") for m in a.metric))
    assert metric(at, "PSNR (higher = closer)").endswith("dB")
    assert any("diffusion prior" in c.value and "Ended:" in c.value for c in at.caption)


def test_prior_page_races_the_vae_against_diffusion_on_one_leak():
    at = open_page("pages/prior.py", **{"prior.batch": "2", "prior.seconds": "6", "prior.restarts": "1"})
    at.button(key="prior.versus").click().run()
    drain(at, lambda a: len(a.dataframe) > 0 and len(a.dataframe[0].value) == 2)
    table = at.dataframe[0].value
    assert list(table["prior"]) == ["VAE prior", "diffusion prior"]
    assert all(str(v).endswith("of 2") for v in table["nearer their victim"])


def test_prior_page_films_the_sampler_from_noise():
    at = open_page("pages/prior.py", **{"prior.batch": "2", "prior.seconds": "6"})
    at.button(key="prior.film.go").click().run()
    drain(at, lambda a: any("What to notice: the first frames" in m.value for m in a.markdown))
    assert any(c.value.startswith("Latest frame: PSNR") for c in at.caption)


def test_prior_page_offers_the_diffusion_showcase_where_the_diffusion_prior_loses():
    at = open_page("pages/prior.py", **{"prior.kind": "diffusion"})  # the defaults: LeNet, 16 images
    assert not at.exception, at.exception
    assert any("usually *loses* to the VAE" in m.value for m in at.markdown)
    at.button(key="prior.showcase").click().run()
    assert not at.exception, at.exception
    state = {k: at.session_state[f"prior.{k}"] for k in ("victim", "batch", "seconds", "restarts")}
    assert state == {"victim": "convnet32", "batch": 32, "seconds": 60, "restarts": 1}
    assert at.query_params["prior.victim"] in ("convnet32", ["convnet32"])
    assert not any(b.key == "prior.showcase" for b in at.button)  # set up: the hint has gone
