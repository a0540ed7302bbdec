"""Every page of the app under Streamlit's AppTest: it runs without an exception, and its key widgets
change what it shows. Attacks are kept to a few iterations so the file runs in well under two minutes."""

from __future__ import annotations

import gc

import pytest
from streamlit.testing.v1 import AppTest

APP = "../app.py"  # AppTest resolves paths relative to this file
TIMEOUT = 120


def open_page(page: str, **query: str) -> AppTest:
    """The app started from app.py, switched to `page` (e.g. "pages/leak.py"), optionally with a deep link."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.success, *at.info, *at.caption])


def drain(at: AppTest, done, runs: int = 60) -> None:
    """Rerun (each run advances a live attack by a slice) until `done(at)`."""
    for _ in range(runs):
        if done(at):
            return
        at.run()
        assert not at.exception, at.exception
    raise AssertionError("the run did not finish")


def test_home_shows_story_and_lecture_mode_opens_a_step():
    at = open_page("pages/home.py")
    assert at.title[0].value == "Gradient Inversion Lab"
    assert "The story in five lines" in [s.value for s in at.subheader]
    at.button(key="home.lecture.2").click().run()  # "DLG, stage by stage"
    assert not at.exception
    assert at.title[0].value == "DLG in four stages"
    assert any("Lecture, step 3" in m.value for m in at.sidebar.markdown)
    at.sidebar.button(key="lecture.next").click().run()
    assert at.title[0].value == "Pick a batch and leak it"
    assert metric(at, "Unknowns (pixels and labels)") == f"{4 * 785:,}"  # that step's preset: 4 images


def test_lecture_step_on_the_defences_page_does_what_it_says():
    from pages.lecture import STEPS

    index = next(i for i, s in enumerate(STEPS) if s.page == "defences")
    assert "prior" in [s.page for s in STEPS[:index]]  # after the prior, as the pages run
    at = open_page("pages/home.py")
    at.button(key=f"home.lecture.{index}").click().run()
    assert not at.exception and at.title[0].value == "Defences and their price"
    assert any(f"Lecture, step {index + 1}" in m.value for m in at.sidebar.markdown)
    assert metric(at, "Privacy budget epsilon") == "∞"
    at = open_page("pages/defences.py", **dict(s.split("=") for s in STEPS[index].settings))  # the step's link
    at.select_slider(key="def.sigma").set_value(1.0).run()  # the instruction: sigma to 1, epsilon 0.67
    assert metric(at, "Privacy budget epsilon") == "0.671" and "0.67" in STEPS[index].instruction


def test_pages_hide_the_imports_from_the_garbage_collector():
    """Streamlit runs a full gc.collect() after every run; the pages freeze the objects the imports made
    (torch and the rest, hundreds of thousands), so that collection stays short."""
    open_page("pages/leak.py")
    assert gc.get_freeze_count() > 100_000


def test_promise_clients_change_what_the_server_averages():
    at = open_page("pages/promise.py")
    assert metric(at, "Images behind the server's average") == "1"
    at.slider(key="w:data.clients").set_value(4).run()
    at.slider(key="w:data.batch_size").set_value(2).run()
    assert not at.exception
    assert metric(at, "Images behind the server's average") == "8"
    assert metric(at, "Pixels on each phone") == f"{2 * 784:,}"


def test_leak_batch_size_changes_the_leak_and_labels_are_recovered():
    at = open_page("pages/leak.py")
    assert metric(at, "Unknowns (pixels and labels)") == "785"
    assert metric(at, "Labels recovered") == "100%"
    at.slider(key="w:data.batch_size").set_value(4).run()
    assert not at.exception
    assert metric(at, "Unknowns (pixels and labels)") == f"{4 * 785:,}"
    assert metric(at, "Numbers the server sees") == "13,426"  # the update keeps its size
    at.slider(key="w:data.clients").set_value(3).run()
    at.radio(key="w:data.split").set_value("dirichlet").run()
    assert not at.exception
    assert metric(at, "Unknowns (pixels and labels)") == f"{12 * 785:,}"
    assert "Which classes each client holds" in texts(at)


def test_leak_impossible_batch_is_a_message_not_a_traceback():
    at = open_page("pages/leak.py")
    at.multiselect(key="w:data.classesmnist").set_value(["1", "7"]).run()
    at.checkbox(key="w:data.unique_labels").check().run()
    at.slider(key="w:data.batch_size").set_value(3).run()  # 3 distinct labels from 2 classes
    assert not at.exception
    assert any("distinct labels" in e.value for e in at.error)
    at.slider(key="w:data.batch_size").set_value(2).run()  # back to a valid batch: the session recovers
    assert not at.exception and not at.error
    assert metric(at, "Unknowns (pixels and labels)") == f"{2 * 785:,}"


def test_leak_fedavg_switch():
    at = open_page("pages/leak.py")
    at.radio(key="w:leak.protocol").set_value("fedavg").run()
    assert not at.exception
    assert any("weight change after 1 local steps" in m.value for m in at.markdown)
    assert at.slider(key="w:leak.local_steps").value == 1


def test_dlg_stages_then_iterations_give_a_psnr():
    at = open_page("pages/dlg.py")
    assert "Press **Next stage**" in texts(at)
    at.button(key="dlg.stage").click().run()  # stage 1: the dummy
    assert metric(at, "Iteration").startswith("0 /")
    assert any("now" in m.value and "1. Dummy" in m.value for m in at.markdown)
    at.button(key="dlg.stage").click().run()  # stage 2: its gradient, per layer
    assert any("Stage 2, per layer" in m.value for m in at.markdown)
    at.button(key="dlg.stage").click().run()  # stage 3: the distance, per layer
    assert any("Stage 3, per layer" in m.value for m in at.markdown)
    at.number_input(key="dlg.n").set_value(5).run()
    at.button(key="dlg.n_run").click().run()
    drain(at, lambda a: int(metric(a, "Iteration").split(" /")[0]) >= 5)
    assert metric(at, "PSNR (higher = closer)").endswith("dB")


@pytest.mark.slow
def test_dlg_runs_one_digit_to_the_end_and_the_film_scrubs():
    at = open_page("pages/dlg.py")
    at.button(key="dlg.end").click().run()
    drain(at, lambda a: len(a.success) > 0)
    assert "Done:" in at.success[0].value
    psnr = float(metric(at, "PSNR (higher = closer)").split()[0])
    assert psnr > 30
    film = at.slider[0]
    assert film.label == "Frame"
    film.set_value(0).run()
    assert not at.exception
    assert any("Iteration **0**" in m.value for m in at.markdown)


def test_dlg_stop_mid_run_then_carry_on():
    # true labels: one restart, so the iteration count only grows (with recovered labels the count
    # restarts as the attack moves from one probed label guess to the next)
    at = open_page("pages/dlg.py", **{"data.batch_size": "4", "attack.iterations": "3000", "attack.labels": "true"})
    at.button(key="dlg.end").click().run()  # one slice of the run, far from its end
    at.button(key="dlg.stop").click().run()
    assert not at.exception
    stopped_at = metric(at, "Iteration")
    assert at.get("progress")[0].proto.text == "stopped"
    at.run()  # nothing runs while stopped
    assert metric(at, "Iteration") == stopped_at
    at.button(key="dlg.one").click().run()  # the same run carries on from where it stopped
    assert int(metric(at, "Iteration").split(" /")[0]) > int(stopped_at.split(" /")[0])


def test_dlg_diverging_run_is_reported_not_raised(monkeypatch):
    """A run whose gradient distance turns non-finite ends with a warning and the best point before it. The
    engine's step guard keeps lr = 1e6 finite on some CPUs (the numerics differ), so the distance itself is
    made to blow up after a few evaluations: the page's handling is what is tested."""
    from engine import objectives

    calls = [0]

    def exploding(dummy, leaked):
        calls[0] += 1
        distance = objectives.squared_l2(dummy, leaked)
        return distance * float("inf") if calls[0] > 30 else distance

    monkeypatch.setitem(objectives.DISTANCES, "l2", exploding)  # DLG's distance
    at = open_page("pages/dlg.py", **{"attack.lr": "1000000", "attack.iterations": "50"})
    at.button(key="dlg.end").click().run()
    drain(at, lambda a: any("The run diverged" in w.value for w in a.warning))
    at.button(key="dlg.reset").click().run()  # the session carries on
    assert not at.exception
    assert not at.warning and "Press **Next stage**" in texts(at)


def test_stronger_labels_and_race():
    at = open_page("pages/stronger.py")
    assert metric(at, "Recovered") == "100%"
    assert list(at.dataframe[0].value.columns) == ["batch size", "no data", "1000 public images"]
    at.toggle(key="w:attack.auxiliary").set_value(False).run()  # the attacker loses its public images
    assert not at.exception and at.session_state["config"].attack.auxiliary == 0
    assert metric(at, "Recovered").endswith("%")
    at.toggle(key="w:attack.auxiliary").set_value(True).run()
    assert at.session_state["config"].attack.auxiliary == 1000
    recorded = [c.value for c in at.caption if "recorded run" in c.value]
    assert len(recorded) == 2  # the page opens on the recorded race and sweep for the default settings
    at.number_input(key="race.dlg").set_value(20).run()
    at.number_input(key="race.ig").set_value(20).run()
    at.button(key="race.go").click().run()
    drain(at, lambda a: sum("(done)" in m.value for m in a.markdown) == 2)
    assert len([c.value for c in at.caption if "recorded run" in c.value]) == 1  # the race is live now
    assert any(m.value.startswith("**Inverting Gradients**") and "dB" in m.value for m in at.markdown)


def test_defences_noise_moves_epsilon_and_stops_dlg():
    at = open_page("pages/defences.py")
    assert metric(at, "Privacy budget epsilon") == "∞"  # no noise: no bound at all, said in a short value
    assert next(m for m in at.metric if m.label == "Privacy budget epsilon").delta == "no noise, no guarantee"
    assert metric(at, "Largest difference, secure vs plain sum") != ""  # the walk-through drew without an attack
    at.select_slider(key="def.sigma").set_value(0.1).run()
    weak = metric(at, "Privacy budget epsilon")
    at.select_slider(key="def.sigma").set_value(1.0).run()
    assert not at.exception
    strong = metric(at, "Privacy budget epsilon")
    assert float(strong) < float(weak)  # more noise, smaller epsilon
    at.number_input(key="def.iters").set_value(100).run()
    at.button(key="def.go").click().run()
    drain(at, lambda a: sum("(done)" in m.value for m in a.markdown) == 2)
    psnr = {m.value.split("**")[1]: float(m.value.split("**")[3].split()[0]) for m in at.markdown
            if "PSNR **" in m.value}
    assert psnr["With the defence"] < psnr["No defence"] - 5, psnr
    at.selectbox(key="def.method").set_value("top_k").run()
    assert not at.exception
    assert metric(at, "Compression ratio").endswith("x") and metric(at, "Compression ratio") != "1x (none)"
    at.checkbox(key="def.sa_drop").check().run()  # a phone drops out: the server still unmasks the others' sum
    assert not at.exception and not at.error
    assert any("sum is of the 2 phones that stayed" in c.value for c in at.caption)
    assert float(metric(at, "Largest difference, secure vs plain sum")) < 1e-3


def test_experiment_rejects_a_malformed_config_and_loads_a_good_one():
    at = open_page("pages/experiment.py")
    at.text_area(key="exp.paste").input('{"data": {"batch_size": "two"}}').run()
    at.button(key="exp.load_text").click().run()
    assert not at.exception
    assert "data.batch_size" in at.error[0].value
    at.text_area(key="exp.paste").input('{"data": {"batch_size": 2}').run()  # not even JSON
    at.button(key="exp.load_text").click().run()
    assert "not valid JSON" in at.error[0].value
    at.text_area(key="exp.paste").input("[" * 5000 + "]" * 5000).run()  # deeper than Python's JSON decoder goes
    at.button(key="exp.load_text").click().run()
    assert not at.exception and "nested too deeply" in at.error[0].value
    at.text_area(key="exp.paste").input('{"leak": {"protocol": "fedavg", "local_steps": 100000}}').run()
    at.button(key="exp.load_text").click().run()  # once minutes of silent work
    assert not at.exception and "leak.local_steps must be at most 100" in at.error[0].value
    at.text_area(key="exp.paste").input('{"data": {"dataset": "fashion_mnist"}, "attack": {"iterations": 5}}').run()
    at.button(key="exp.load_text").click().run()
    assert not at.exception and not at.error
    assert '"dataset": "fashion_mnist"' in at.code[0].value
    assert any("data.dataset=fashion_mnist" in c.value for c in at.code)  # the share links follow
    at.button(key="exp.run").click().run()
    drain(at, lambda a: any(m.label == "PSNR" for m in a.metric))
    assert len(at.get("download_button")) == 4  # config.json, metrics.json, reconstruction.png, the zip
    assert metric(at, "PSNR").endswith("dB")


def test_a_loaded_config_beyond_the_sliders_ranges_opens_the_pages():
    """The leak page's E slider ends at 10 and its batch slider at 16; a config.json may hold more."""
    at = open_page("pages/experiment.py")
    at.text_area(key="exp.paste").input('{"data": {"batch_size": 20}, "leak": {"protocol": "fedavg", '
                                        '"local_steps": 12}, "model": {"train_steps": 30}}').run()
    at.button(key="exp.load_text").click().run()
    assert not at.error
    at.switch_page("pages/leak.py").run(timeout=120)
    assert not at.exception
    assert at.slider(key="w:leak.local_steps").value == 12 and at.slider(key="w:leak.local_steps").max == 12
    assert at.slider(key="w:data.batch_size").value == 20
    at.switch_page("pages/promise.py").run(timeout=120)
    assert not at.exception


def test_deep_link_opens_with_its_settings_and_names_a_bad_one():
    at = open_page("pages/leak.py", **{"data.batch_size": "3", "seed": "minus one"})
    assert metric(at, "Unknowns (pixels and labels)") == f"{3 * 785:,}"
    assert any("seed=minus one" in w.value for w in at.warning)
    assert at.query_params["data.batch_size"] in ("3", ["3"])  # kept in the URL; the bad seed is dropped
    assert "seed" not in at.query_params


def test_prior_page_counts_the_unknowns_and_runs_a_small_batch():
    at = open_page("pages/prior.py", **{"prior.batch": "2", "prior.seconds": "2"})
    assert metric(at, "Pixels a pixel attack must find") == f"{2 * 784:,}"
    assert metric(at, "Numbers the server sees") == "13,426"
    at.button(key="prior.go").click().run()
    drain(at, lambda a: any(m.label.startswith("PSNR") for m in a.metric))
    assert metric(at, "PSNR (higher = closer)").endswith("dB")
    assert metric(at, "Nearer their victim").endswith("of 2")
    assert any("Where the attacker is guessing" in m.value for m in at.markdown)  # the spread over 2 restarts


def test_prior_page_races_inverting_gradients_and_shows_a_wrong_prior():
    at = open_page("pages/prior.py", **{"prior.batch": "2", "prior.seconds": "2", "prior.restarts": "1"})
    at.button(key="prior.race").click().run()
    drain(at, lambda a: sum("(done)" in m.value for m in a.markdown) == 2)
    assert any(m.value.startswith("**Inverting Gradients (pixels)**") and "dB" in m.value for m in at.markdown)
    at.button(key="prior.wrong.go").click().run()  # 8 clothes: the MNIST prior, and the right one beside it
    drain(at, lambda a: any("The wrong prior can only draw digits" in m.value for m in a.markdown))
    assert any(m.value.startswith("**Fashion-MNIST prior (right)**") for m in at.markdown)


def test_prior_page_faces_without_a_prior_is_a_message_not_a_traceback():
    at = open_page("pages/prior.py", **{"data.dataset": "lfw_faces", "prior.batch": "2"})
    assert any("no image prior is trained on lfw_faces" in e.value for e in at.error)
    assert at.button(key="prior.go").disabled
    at.selectbox(key="w:attack.prior").set_value("mnist").run()  # the wrong prior, on purpose
    assert not at.exception and not at.error
    assert not at.button(key="prior.go").disabled


def test_dlg_class_mean_start_and_its_refusal():
    at = open_page("pages/dlg.py", **{"data.batch_size": "8"})
    at.radio(key="w:attack.init").set_value("class_mean").run()
    assert not at.exception and at.session_state["config"].attack.init == "class_mean"
    at.button(key="dlg.stage").click().run()  # stage 1: the dummies are the class means
    assert any("average of the attacker's public images" in m.value for m in at.markdown)
    at.selectbox(key="w:attack.labels").set_value("joint").run()  # joint labels: no class to take the mean of
    assert not at.exception
    assert any("class_mean" in e.value for e in at.error)
    assert at.session_state["config"].attack.labels == "recovered"  # the session keeps its last good settings
