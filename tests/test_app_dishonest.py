"""The dishonest-server page: 64 digits leak in one step, through secure aggregation; the phones' check refuses."""

from __future__ import annotations

from test_app import metric, open_page


def exact(at, label: str = "Exact images (above 60 dB)") -> int:
    return int(metric(at, label).split(" of ")[0])


def test_dishonest_page_leaks_through_secure_aggregation_and_the_check_refuses():
    at = open_page("pages/dishonest.py")
    assert at.title[0].value == "A dishonest server"
    assert exact(at) >= 50  # one phone of 64, 1024 bins, shown at once
    assert not at.success  # the secure round waits for its button
    at.button(key="dis.secure.go").click().run()
    assert not at.exception, at.exception
    assert any("came back exactly from a sum" in s.value for s in at.success)
    assert int(at.success[0].value.split("**")[1].split(" of ")[0]) >= 56
    at.toggle(key="dis.vet").set_value(True).run()
    assert not at.exception, at.exception
    assert any("refuses the model" in e.value for e in at.error)
    at.toggle(key="dis.disguise").set_value(True).run()
    assert not at.exception, at.exception
    assert any("**accepts** the model" in w.value for w in at.warning)


def test_dishonest_page_trap_and_noise():
    at = open_page("pages/dishonest.py")
    at.radio(key="dis.server").set_value("trap").run()
    assert not at.exception, at.exception
    assert exact(at) >= 15
    at.select_slider(key="dis.sigma").set_value(1e-3).run()
    assert not at.exception, at.exception
    assert exact(at, "Exact images under noise") == 0


def test_dishonest_page_follows_the_defences_in_the_story_and_in_lecture_mode():
    from pages.common import PAGES
    from pages.lecture import STEPS

    keys = [p.key for p in PAGES]
    assert keys.index("dishonest") == keys.index("defences") + 1
    steps = [s.page for s in STEPS]
    assert steps.index("dishonest") == steps.index("defences") + 1
