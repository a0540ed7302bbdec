"""The page "Poisoned clients" under AppTest: a small live comparison, the kept grid, and the refusals."""

from __future__ import annotations

from test_app import metric, open_page, texts

NARROW = {"model.width": "4"}  # the page's 15 phones, on a narrow ConvNet: each run takes a few seconds


def test_the_page_opens_and_says_what_to_press_or_shows_its_recording():
    at = open_page("pages/poisoned.py")
    shown = texts(at)
    assert "Press **Run clean, attacked, defended**" in shown or "Recorded earlier" in shown
    assert any(s.label == "How the server aggregates" for s in at.selectbox)


def test_sign_flippers_against_multikrum_live():
    at = open_page("pages/poisoned.py", **NARROW, **{"federation.attack": "sign_flip", "federation.attackers": "0.2",
                                                      "federation.strategy": "multikrum"})
    at.button[0].click().run()  # Run clean, attacked, defended
    assert not at.exception, at.exception
    attacked = float(metric(at, "attacked (FedAvg, sign flip (sends -10 x its update))").rstrip("%"))
    defended = float(metric(at, "defended (MultiKrum)").rstrip("%"))
    assert attacked <= 15.0 < defended
    grid = next(d.value for d in at.dataframe if str(d.value.index[0]).startswith("phone"))
    attackers = [row for row in grid.index if "attacker" in row]
    assert len(attackers) == 3 and (grid.loc[attackers] == 0.0).all().all()  # dropped in every round
    steps = at.dataframe[0].value  # each round's cosine with the honest phones' step
    assert (steps.loc["attacked (FedAvg, sign flip (sends -10 x its update))"] < 0).all()
    assert (steps.loc["defended (MultiKrum)"] > 0.99).all()


def test_secure_aggregation_with_a_robust_aggregator_is_refused_with_the_reason():
    at = open_page("pages/poisoned.py", **{"federation.strategy": "median"})
    at.toggle(key="w:defence.secure_aggregation").set_value(True).run()
    assert at.error and "needs each client's update, which secure aggregation" in at.error[0].value
    assert not at.exception
    at.selectbox(key="w:federation.strategy").set_value("fedavg").run()  # the session goes on
    assert not at.exception


def test_a_broken_precondition_is_one_error_and_the_session_goes_on():
    at = open_page("pages/poisoned.py", **{"federation.attack": "sign_flip", "federation.attackers": "0.4"})
    at.selectbox(key="w:federation.strategy").set_value("bulyan").run()
    assert at.error and "bulyan needs n >= 4f + 3" in at.error[0].value
    at.selectbox(key="w:federation.strategy").set_value("multikrum").run()
    assert not at.exception and not at.error


def test_the_lecture_step_follows_the_fl_run_and_opens_on_its_recording():
    from pages.common import PAGES
    from pages.lecture import STEPS

    keys, steps = [p.key for p in PAGES], [s.page for s in STEPS]
    assert keys.index("poisoned") == keys.index("federation") + 1
    assert steps.index("poisoned") == steps.index("federation") + 1
    step = STEPS[steps.index("poisoned")]
    at = open_page("pages/poisoned.py", **dict(s.split("=") for s in step.settings))
    assert "Recorded earlier" in texts(at)
    assert metric(at, "attacked (FedAvg, sign flip (sends -10 x its update))") == "10.0%"
    assert float(metric(at, "defended (MultiKrum)").rstrip("%")) > 50


def test_the_recorded_backdoor_hides_behind_a_clean_accuracy_that_barely_moves():
    at = open_page("pages/poisoned.py", **{"federation.attack": "backdoor", "federation.strategy": "norm_clip"})
    shown = texts(at)
    assert "Recorded earlier" in shown and "pretrained on its own public digits" in shown
    clean = float(metric(at, "clean (FedAvg, no attacker)").rstrip("%"))
    attacked = float(metric(at, "attacked (FedAvg, backdoor (a white square -> 1))").rstrip("%"))
    assert clean > 85 and attacked > clean - 5  # the backdoor is not seen in the accuracy
