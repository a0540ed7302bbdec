"""Stronger attacks: labels from the gradient, DLG against Inverting Gradients, batch size against PSNR."""

import pandas as pd
import streamlit as st

from engine.config import from_json, to_json, with_overrides
from engine.experiment import auxiliary_images
from engine.labels import recover_labels
from engine.metrics import label_accuracy
from pages import common, draw
from pages.runner import Job, live, load_jobs, race_jobs, recording, sweep_jobs

RACE, SWEEP = "race_jobs", "sweep_jobs"
RECORDED = ("A recorded run of these settings (made by `scripts/precompute_app_runs.py`), shown so the page "
            "opens with a result. Press the button to run it live in your session.")


def recorded(path) -> list[Job]:
    """The recorded jobs for these settings, if `scripts/precompute_app_runs.py` made them."""
    return load_jobs(path)[0] if path.is_file() else []


common.header(
    "stronger",
    "how much an attacker gets for free (the labels), how two published attacks compare on the very same "
    "leak, and how the batch size changes the outcome.",
)
setup = common.need_setup()
cfg = common.config()
st.info(f"**Under attack:** {common.describe(setup)}.", icon=":material/target:")

# --- 1. labels ------------------------------------------------------------------------------------
st.subheader("1. Labels straight from the gradient", anchor=False)


PUBLIC = 1000  # labelled public images the informed attacker holds (the config's attack.auxiliary)


@st.cache_resource(show_spinner=False, max_entries=4)
def public_images(config_json: str):
    """PUBLIC labelled train images of this config's data set (never a victim), or None if it has none."""
    return auxiliary_images(with_overrides(from_json(config_json), [f"attack.auxiliary={PUBLIC}", 'attack.labels="recovered"']))


@st.cache_data(show_spinner=False, max_entries=32)
def label_table(config_json: str) -> pd.DataFrame:
    """Share of exact label multisets over ten seeds, for several batch sizes of this set and model,
    read from random probes and from the attacker's public labelled images."""
    base = from_json(config_json)
    auxiliary = public_images(config_json)
    rows = []
    for size in (1, 8, 16, 32, 64):
        blind, informed = [], []
        for seed in range(10):
            s = common.setup_for(with_overrides(base, [f"data.batch_size={size}", "data.clients=1", f"seed={seed}",
                                                       "leak.round=0"]))  # fresh batches, not a federated round
            truth = sorted(s.labels.tolist())
            blind.append(recover_labels(s.leak).tolist() == truth)
            if auxiliary is not None:
                informed.append(recover_labels(s.leak, auxiliary=auxiliary).tolist() == truth)
        row = {"batch size": size, "no data": sum(blind) / len(blind)}
        if informed:
            row[f"{len(auxiliary[1])} public images"] = sum(informed) / len(informed)
        rows.append(row)
    return pd.DataFrame(rows)


names = setup.dataset.classes
auxiliary = public_images(to_json(cfg))
informed = auxiliary is not None and common.setting(
    st.toggle, f"The attacker holds {PUBLIC} labelled public images of this kind (none of the victims')",
    "attack.auxiliary", show=lambda n: n > 0, read=lambda on: PUBLIC if on else 0,
    help="Public data is easy to come by. The attacker computes, for each class, the update one of its images "
         "sends, and fits the leaked last layer as a mix of those: the counts fall out of a least-squares fit. "
         "Off: it only has random noise images to guess the model's output with. Every attack in this session "
         "follows this switch.",
)
recovered = common.attempt(recover_labels, setup.leak, auxiliary=auxiliary if informed else None)
c1, c2 = st.columns([1, 1.3])
with c1:
    if recovered is not None:
        st.markdown(f"True labels: **{', '.join(sorted(names[int(y)] for y in setup.labels))}**")
        st.markdown(f"From the gradient: **{', '.join(sorted(names[int(y)] for y in recovered))}**")
        st.metric("Recovered", f"{label_accuracy(recovered.tolist(), setup.labels.tolist()):.0%}")
    st.caption("With labels known, the attack only has to find pixels: the DLG page uses these by default. "
               "Switch the public images off and watch the batch of 16 lose its labels.")
with c2:
    if common.uploads() is None:
        table = common.attempt(label_table, to_json(cfg))
        if table is not None:
            st.caption("Exact label sets out of 10 batches of each size (the model and data set above):")
            bar = st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)
            st.dataframe(table, hide_index=True, column_config={c: bar for c in table.columns if c != "batch size"})
    if auxiliary is None:
        st.caption("This data set has no public training images to give the attacker: it reads the labels blind.")

# --- 2. DLG against Inverting Gradients -------------------------------------------------------------
st.subheader("2. DLG against Inverting Gradients, same leak", anchor=False)
st.markdown("DLG matches the gradient's *values* (squared distance, L-BFGS). Inverting Gradients matches its "
            "*direction* (cosine distance), adds a smoothness prior (total variation) and takes signed Adam steps.")
st.latex(r"\text{DLG: } \lVert \nabla W' - \nabla W \rVert^2 \qquad\qquad \text{IG: } 1 - "
         r"\frac{\langle \nabla W', \nabla W\rangle}{\lVert \nabla W'\rVert\,\lVert \nabla W\rVert}"
         r" + \alpha\,\mathrm{TV}(x')")
r1, r2, r3 = st.columns(3)
dlg_iters = r1.number_input("DLG iterations", 10, 5000, max(cfg.attack.iterations, 300), step=100, key="race.dlg")
ig_iters = r2.number_input("IG iterations", 10, 5000, 1000, step=100, key="race.ig")
race_limit = r3.slider("Time limit per attack (s)", 2, 60, 20, key="race.limit")


def start_race() -> None:
    stop(RACE)
    jobs = common.attempt(race_jobs, cfg, setup, int(dlg_iters), int(ig_iters), float(race_limit))
    if jobs is not None:
        st.session_state[RACE] = jobs


def stop(key: str) -> None:
    for job in st.session_state.get(key, []):
        job.stop()


b1, b2, _ = st.columns([1, 1, 4])
b1.button("Race them", on_click=start_race, type="primary", key="race.go", icon=":material/flag:")
b2.button("Stop", on_click=stop, args=(RACE,), key="race.stop", icon=":material/stop:")
race: list[Job] = st.session_state.get(RACE, []) or recorded(
    recording("race", cfg, dlg=int(dlg_iters), ig=int(ig_iters), seconds=float(race_limit)))


def show_race() -> None:
    if race and race[0].recorded:
        st.caption(RECORDED)
    draw.jobs_side_by_side(setup, race)
    curves = [{"seconds": f.seconds, "PSNR (dB)": f.psnr, "attack": job.title} for job in race for f in job.frames]
    if curves:
        draw.curve(pd.DataFrame(curves), "seconds", "PSNR (dB)", "PSNR (dB)", color="attack", rule=30.0)


if race:
    live(race, show_race, key="race.live", together=True)
else:
    st.caption("Press **Race them**: both attacks start from the same leak and run side by side.")

# --- 3. batch size against PSNR ------------------------------------------------------------------
st.subheader("3. Batch size against PSNR", anchor=False)
st.markdown("The same data set, model and seed; only the number of images behind the gradient changes. "
            "DLG gets the same time for each.")
s1, s2 = st.columns(2)
sizes = s1.multiselect("Batch sizes", [1, 2, 4, 8, 16], default=[1, 2, 4, 8], key="sweep.sizes")
seconds = s2.slider("Seconds per batch size", 2, 60, 8, key="sweep.seconds")


def start_sweep() -> None:
    stop(SWEEP)
    jobs = common.attempt(sweep_jobs, cfg, sizes, float(seconds), common.setup_for)
    if jobs is not None:
        st.session_state[SWEEP] = jobs


b1, b2, _ = st.columns([1, 1, 4])
b1.button("Run the sweep", on_click=start_sweep, type="primary", key="sweep.go", icon=":material/stacked_line_chart:",
          disabled=not sizes)
b2.button("Stop", on_click=stop, args=(SWEEP,), key="sweep.stop", icon=":material/stop:")
sweep: list[Job] = st.session_state.get(SWEEP, []) or recorded(
    recording("sweep", cfg, sizes=sorted(sizes), seconds=float(seconds)))


def show_sweep() -> None:
    if sweep and sweep[0].recorded:
        st.caption(RECORDED)
    rows = []
    for job in sweep:
        if job.frames:
            rows.append({"batch size": len(job.frames[-1].images), "PSNR (dB)": job.frames[-1].psnr,
                         "state": job.state})
    if rows:
        draw.curve(pd.DataFrame(rows), "batch size", "PSNR (dB)", "PSNR (dB)", rule=30.0, ordinal=True)
    for job in sweep:
        if job.frames:
            st.markdown(f"**{job.title}**: PSNR {job.frames[-1].psnr:.1f} dB after {job.compute_s:.1f} s")
            draw.strip(job.frames[-1].images, size=42)


if sweep:
    live(sweep, show_sweep, key="sweep.live")
else:
    st.caption("Press **Run the sweep**: each batch size gets the same few seconds of DLG.")

common.try_this(
    "Race DLG against Inverting Gradients on one digit, then on 4 (set the batch size on *Pick a batch*).",
    "Switch the model to *ConvNet (ReLU)* on *Pick a batch* and race again: the winner can change.",
    "Run the sweep with 16 included: where does the curve fall below 20 dB?",
)
common.page_next("prior", "The image prior: what a generative model of digits (VAE or diffusion) adds to the attack")
