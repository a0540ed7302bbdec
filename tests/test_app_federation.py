"""The page "A real FL run" under AppTest: the recorded default, a small live run, the timeline, bad knobs,
and the attack on a round that opens the DLG page on that round's leak."""

from __future__ import annotations

from test_app import drain, metric, open_page, texts

SMALL = {"federation.clients": "20", "federation.rounds": "2", "federation.local_epochs": "1",
         "federation.fraction": "0.2", "model.width": "4"}


def test_the_default_run_shows_at_once_from_its_recording():
    at = open_page("pages/federation.py")
    assert at.title[0].value == "A real FL run"
    assert "recorded earlier" in texts(at)
    assert float(metric(at, "Test accuracy").rstrip("%")) > 90
    assert at.slider(key="fl.round").value == 5  # the timeline of round 5
    assert any("phones sampled" in c.value for c in at.caption)


def test_a_small_run_goes_round_by_round_then_attacks_a_phone():
    at = open_page("pages/federation.py", **SMALL, **{"federation.dropout": "0.2"})
    assert "Press **Run this federation**" in texts(at)
    at.button(key="fl.run").click().run()
    drain(at, lambda a: "2 of 2 rounds, finished" in texts(a))
    assert metric(at, "Epsilon spent") == "∞ (no DP)"
    assert any("phones sampled" in c.value for c in at.caption)
    target = at.selectbox(key="fl.target")
    assert target.options[0].startswith("phone ") and target.options[-1].startswith("the aggregate")
    target.select_index(0).run()  # the first phone's own update
    at.button(key="fl.attack.dlg").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "DLG in four stages"
    assert "in round" in texts(at) and "of the federated run" in texts(at)


def test_dp_noise_and_secure_aggregation_on_the_page():
    at = open_page("pages/federation.py", **SMALL, **{"defence.dp.noise_multiplier": "1.0",
                                                       "defence.secure_aggregation": "true"})
    at.button(key="fl.run").click().run()
    drain(at, lambda a: "2 of 2 rounds, finished" in texts(a))
    assert float(metric(at, "Epsilon spent")) > 0
    assert at.selectbox(key="fl.target").options == ["the aggregate of all 4 phones"]


def test_a_setting_no_round_can_meet_is_one_clear_message():
    at = open_page("pages/federation.py", **SMALL, **{"federation.deadline": "0.5",
                                                       "federation.bandwidth.up.median": "0.5"})
    at.button(key="fl.run").click().run()
    drain(at, lambda a: len(a.error) > 0)
    assert "deadline" in at.error[0].value
    at.select_slider(key="w:federation.deadline").set_value(30.0).run()
    assert not at.exception


def test_the_poisoned_pages_settings_are_named_and_the_default_comes_back():
    at = open_page("pages/federation.py", **{"federation.clients": "15", "federation.fraction": "1.0",
                                             "federation.attack": "sign_flip", "federation.strategy": "multikrum",
                                             "federation.attackers": "0.2"})  # as the Poisoned page leaves them
    assert any("Poisoned clients" in i.value for i in at.info)
    at.button(key="fl.defaults").click().run()
    assert not at.exception, at.exception
    assert at.session_state["config"].federation == type(at.session_state["config"].federation)()
    assert "recorded earlier" in texts(at)
