"""Lecture mode: the pages in order, one preset per step, driven from the sidebar. Not a page.

A step is a page plus the settings to open it with (dotted config keys, as in the CLI's --set)
and one instruction for the room. `?lecture=3` in the URL reopens step 3.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from engine.config import Config, with_overrides
from pages import common

KEY = "lecture"


@dataclass(frozen=True)
class Step:
    page: str
    title: str
    settings: tuple[str, ...]
    instruction: str


STEPS = (
    Step("promise", "The promise", ("data.clients=4", "data.batch_size=8"),
         "Move *Clients* from 1 to 8: the update shrinks, yet it leaves every phone. What is in it?"),
    Step("leak", "One digit leaks", ("data.batch_size=1",),
         "Look at the last layer: one row is blue. The server reads the label off it, no attack needed."),
    Step("dlg", "DLG, stage by stage", ("data.batch_size=1",),
         "Press *Next stage* four times and read each box. Then *Run to the end*."),
    Step("leak", "A batch of four", ("data.batch_size=4", "attack.iterations=2000"),
         "Four digits, one averaged gradient. Compare *True labels* with *Read off the gradient*: they still match."),
    Step("dlg", "Four digits come back", ("data.batch_size=4", "attack.iterations=2000"),
         "Press *Run to the end* (well under a minute). Averaging over a batch did not hide the images."),
    Step("dlg", "Two phones, averaged", ("data.batch_size=2", "data.clients=2", "attack.iterations=2000"),
         "The server only sees the average of two phones' updates. *Run to the end*."),
    Step("federation", "A real FL run", ("federation.dropout=0.3", "federation.deadline=1.0"),
         "Press *Run this federation*. In the timeline the slow phones miss the red deadline; then pick a phone's "
         "update and press *Attack it with DLG*."),
    Step("poisoned", "Poisoned clients", ("federation.attack=sign_flip", "federation.attackers=0.2",
                                          "federation.strategy=multikrum"),
         "Three phones of 15 send -10x their update: FedAvg's curve falls to chance, MultiKrum's stays. Now pick "
         "*IPM* and *Krum*, and press *Run clean, attacked, defended*: no aggregator wins every attack."),
    Step("stronger", "Stronger attacks", ("data.batch_size=4",),
         "Run DLG against Inverting Gradients on the same leak, then the batch-size sweep."),
    Step("prior", "A prior for 16 digits", (),
         "Press *Race it against Inverting Gradients*: 16 digits, the same seconds. Then look at the spread map, "
         "and press *Race the VAE against diffusion*: the two priors on the same leak."),
    Step("defences", "Noise, and its price", ("data.batch_size=1", "attack.iterations=300"),
         "Drag *Noise multiplier sigma* to 1: epsilon falls from ∞ to 0.67. Press *Run DLG on both*: the noisy "
         "digit drowns. Section 4 shows what that noise costs the model's accuracy."),
    Step("dishonest", "A dishonest server", (),
         "Press *Run the round: 8 phones x 8 images*: secure aggregation on, and about 60 of 64 digits come back "
         "exactly. Then turn on *Phones vet the model*."),
    Step("experiment", "Your turn", ("data.batch_size=2",),
         "Copy the link of any step for your students, or download config.json for the command line."),
)


def go(index: int) -> None:
    """Open step `index`: its preset replaces the experiment, then its page opens."""
    step = STEPS[index]
    st.session_state[KEY] = index
    common.set_config(with_overrides(Config(), list(step.settings)))
    st.session_state.pop(common.UPLOADS, None)
    st.switch_page(common.PAGE[step.page].path, query_params={**common.encode(common.config()), KEY: str(index)})


def leave() -> None:
    st.session_state.pop(KEY, None)
    if KEY in st.query_params:
        del st.query_params[KEY]


def current() -> int | None:
    """The lecture step this session is on; a `?lecture=k` link starts there."""
    if KEY not in st.session_state and KEY in st.query_params:
        raw = st.query_params[KEY]
        if raw.isdigit() and int(raw) < len(STEPS):
            st.session_state[KEY] = int(raw)
    return st.session_state.get(KEY)


def sidebar() -> None:
    """The lecture bar: where we are, the instruction, back and next."""
    index = current()
    with st.sidebar:
        if index is None:
            if st.button("Start lecture mode", icon=":material/co_present:", key="lecture.start"):
                go(0)
            return
        st.query_params[KEY] = str(index)
        step = STEPS[index]
        st.markdown(f"**Lecture, step {index + 1} of {len(STEPS)}: {step.title}**")
        st.info(step.instruction)
        back, ahead = st.columns(2)
        if back.button("Back", disabled=index == 0, icon=":material/arrow_back:", key="lecture.back"):
            go(index - 1)
        if ahead.button("Next", disabled=index == len(STEPS) - 1, icon=":material/arrow_forward:",
                        key="lecture.next", type="primary"):
            go(index + 1)
        st.button("Leave lecture mode", on_click=leave, key="lecture.leave")
