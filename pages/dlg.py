"""DLG in four stages: step the attack stage by stage, an iteration, N, or to the end; scrub the film."""

import pandas as pd
import streamlit as st

from engine.attacks import dummy_gradient
from engine.experiment import make_attack
from engine.objectives import layer_shares
from pages import common, draw
from pages.runner import Job, live, make_job

JOB = "dlg_job"
STAGES = ("dummy", "gradient", "compare", "update")
TITLES = ("1. Dummy", "2. Dummy gradient", "3. Compare", "4. Update")
EQUATIONS = {
    "dummy": r"x' \leftarrow \tfrac12 + \epsilon",
    "gradient": r"\nabla W' = \nabla_W\, \ell(x', y')",
    "compare": r"\mathbb{D} = \big\lVert \nabla W' - \nabla W \big\rVert^2",
    "update": r"x' \leftarrow x' - \eta\, \nabla_{x'} \mathbb{D}",
}
COSINE = r"\mathbb{D} = 1 - \cos(\nabla W', \nabla W) + \alpha\, \mathrm{TV}(x')"
MEAN_START = r"x'_i \leftarrow \bar{x}_{\,y_i} + \epsilon"  # the attacker's mean public image of label y_i
MEAN_WORDS = "Start from the average public image of each label read off the gradient."
WORDS = {
    "dummy": "Start from a guess: grey images with a little noise (and the labels, read off the gradient).",
    "gradient": "Feed the guess through the same model and take its gradient, exactly as a client would.",
    "compare": "Measure how far the guess's gradient is from the leaked one: that is the loss.",
    "update": "Nudge every pixel of the guess to shrink that distance, then go back to stage 2.",
}

common.header(
    "dlg",
    "random dummy images turning into the private images, driven only by the leaked gradient. "
    "The originals are shown for you; the attacker never sees them.",
)
setup = common.need_setup()
cfg = common.config()
st.info(f"**Under attack:** {common.describe(setup)}. Change it on *Pick a batch and leak it*.",
        icon=":material/target:")
if len(setup.labels) > 8:
    st.warning(f"{len(setup.labels)} images is a hard case for DLG: expect a slow run and blurry results. "
               "That is one of the lessons.", icon=":material/hourglass:")

# --- the attacker's knobs (part of the experiment, so they travel in the URL) -----------------
with st.expander("Attack settings: iterations, labels, restarts, seed", expanded=False):
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        common.setting(st.selectbox, "Attack", "attack.name", options=["dlg", "idlg", "ig"],
                       format_func={"dlg": "DLG", "idlg": "iDLG", "ig": "Inverting Gradients"}.get)
    with c2:
        common.setting(st.number_input, "Iteration budget", "attack.iterations", min_value=1, max_value=5000, step=50)
    with c3:
        common.setting(st.selectbox, "Labels the attacker uses", "attack.labels",
                       options=["recovered", "true", "joint"],
                       format_func={"recovered": "read off the gradient", "true": "known (given)",
                                    "joint": "optimised with the images (original DLG)"}.get)
    with c4:
        common.setting(st.number_input, "Restarts", "attack.restarts", min_value=1, max_value=8)
    d1, d2 = st.columns([1, 3])
    dummy_seed = d1.number_input("Dummy seed (a different random start)", min_value=0, max_value=10_000,
                                 value=cfg.seed, key="dlg.seed")
    with d2:
        common.setting(st.radio, "Dummies start from", "attack.init", options=[None, "class_mean"], horizontal=True,
                       format_func={None: "grey noise (the paper)",
                                    "class_mean": "the average public image of each recovered label"}.get,
                       help="An attacker with labelled public images (turned on or off on *Stronger attacks*) can "
                            "start each dummy at the average digit of its label: batches of 8 that stall from "
                            "noise come back in seconds.")

cfg = common.config()
job_key = (cfg, id(common.uploads()), int(dummy_seed))


def current_job(fresh: bool = False) -> Job:
    """The session's run for these settings; a new one when the settings changed."""
    job = st.session_state.get(JOB)
    if job is not None and (fresh or job.key != job_key):
        job.close()
        job = None
    if job is None:
        attack = make_attack(cfg, stages=True, seed=int(dummy_seed))
        steps = attack.steps(setup.leak, setup.attacker_labels)
        job = make_job("DLG", setup, steps, cfg.attack.iterations, key=job_key)
        st.session_state[JOB] = job
    return job


def ask(kind: str, count: int = 1) -> None:
    job = common.attempt(current_job)
    if job is not None:
        job.ask(kind, count)


def stop() -> None:
    job = st.session_state.get(JOB)
    if job is not None:
        job.stop()


def restart() -> None:
    common.attempt(current_job, fresh=True)


# --- controls ----------------------------------------------------------------------------------
b = st.columns([1.1, 1.2, 0.8, 1.4, 1.3, 0.8, 0.9])
b[0].button("Next stage", on_click=ask, args=("stage",), key="dlg.stage", icon=":material/skip_next:")
b[1].button("One iteration", on_click=ask, args=("iterations", 1), key="dlg.one", icon=":material/redo:")
n = b[2].number_input("N", min_value=1, max_value=1000, value=10, key="dlg.n", label_visibility="collapsed")
b[3].button(f"Run {n} iterations", on_click=ask, args=("iterations", int(n)), key="dlg.n_run",
            icon=":material/fast_forward:")
b[4].button("Run to the end", on_click=ask, args=("end",), key="dlg.end", type="primary",
            icon=":material/play_arrow:")
b[5].button("Stop", on_click=stop, key="dlg.stop", icon=":material/stop:")
b[6].button("Reset", on_click=restart, key="dlg.reset", icon=":material/restart_alt:")

job: Job | None = st.session_state.get(JOB)
if job is not None and job.key != job_key:
    job = None  # settings changed: the next button press starts a fresh run


def pipeline(stage: str) -> None:
    """The four stages as one picture, the current one marked."""
    cols = st.columns(4)
    for col, name, title in zip(cols, STAGES, TITLES):
        with col.container(border=True):
            now = name == stage
            st.markdown(f"**{title}**" + ("  :red-badge[:material/arrow_back: now]" if now else ""))
            from_means = name == "dummy" and cfg.attack.init == "class_mean"
            st.latex(COSINE if name == "compare" and cfg.attack.name == "ig"
                     else MEAN_START if from_means else EQUATIONS[name])
            st.caption(MEAN_WORDS if from_means else WORDS[name])


def stage_detail(job: Job) -> None:
    """What the current stage computed, per layer."""
    step = job.last
    if step.stage == "dummy":
        if cfg.attack.init == "class_mean":
            st.markdown("**Stage 1:** each dummy is the average of the attacker's public images of its recovered "
                        "label. That is what a typical digit of that class looks like, not this client's one.")
        else:
            st.markdown("**Stage 1:** the dummies are grey with a faint noise, the same size as the private images. "
                        "Nothing about the private images is in them yet.")
        return
    if step.stage == "update":
        before = job.losses[-2][1] if len(job.losses) > 1 else None
        change = f" (it was {before:.3g} one step before)" if before is not None else ""
        st.markdown(f"**Stage 4:** every pixel moved a little; the distance is now {step.loss:.3g}{change}.")
        return
    if step.stage not in ("gradient", "compare"):
        return
    leak = setup.leak
    dummy = dummy_gradient(leak, step.images.to(setup.device), step.labels.to(setup.device))
    if step.stage == "gradient" and job.previous_stage == "compare":
        st.caption("Why stage 2 again? L-BFGS takes stage 4 on trial: it moves the guess, runs stages 2 and 3 on the "
                   "moved guess, and keeps the step (4. Update) once that distance is known.")
    if step.stage == "gradient":
        rows = [{"layer": name, "update": who, "norm": float(value.norm())}
                for who, grads in (("leaked (what the server saw)", leak.update), ("dummy (the guess)", dummy))
                for name, value in grads.items()]
        st.markdown("**Stage 2, per layer:** the guess's gradient has the same shape as the leaked one; "
                    "here are their sizes.")
        draw.grouped_bars(pd.DataFrame(rows), "layer", "norm", "update", "norm of the gradient", log=True)
    else:
        shares = layer_shares(dummy, leak.update)
        worst = max(shares, key=shares.get)
        st.markdown(f"**Stage 3, per layer:** each layer's share of the distance. Most of the mismatch is in "
                    f"`{worst}` ({shares[worst]:.0%}).")
        draw.bars(shares, "layer", "share of the distance", highlight=worst)


def show() -> None:
    """Everything that changes while the attack runs."""
    stage = "dummy" if job is None or job.last is None else job.last.stage
    pipeline(stage if job is not None and job.last is not None else "")
    left, right = st.columns(2)
    with left:
        st.markdown("**The private images** (hidden from the attacker)")
        draw.strip(setup.images, common.class_names(setup, setup.labels))
    with right:
        if job is None or job.last is None:
            st.markdown("**The attacker's dummies**")
            st.caption("Press **Next stage** to make them, or **Run to the end**.")
            return
        step = job.last
        start = f" of start {step.restart + 1} (a restart or another label guess)" if step.restart else ""
        st.markdown(f"**The attacker's dummies**, iteration {step.iteration}{start}")
        images, labels = job.current()
        draw.strip(images, [f"guess {setup.dataset.classes[y]}" for y in labels])
    frame = job.frames[-1] if job.frames else None
    m = st.columns(4)
    m[0].metric("Iteration", f"{min(job.iteration, job.budget)} / {job.budget}")
    m[1].metric("Gradient distance", "-" if step.stage in ("dummy", "gradient") else f"{step.loss:.3g}")
    m[2].metric("PSNR (higher = closer)", "-" if frame is None else f"{frame.psnr:.1f} dB")
    m[3].metric("Attack time", f"{job.compute_s:.1f} s")
    st.progress(min(1.0, job.iteration / max(1, job.budget)),
                text=job.state)
    if job.error:
        st.error(job.error, icon=":material/error:")
    stage_detail(job)
    if len(job.losses) > 1:
        starts = len({r for _, _, r in job.losses})
        color = "start" if starts > 1 else None
        if starts > 1 and cfg.attack.labels == "recovered":
            st.caption("One line per start. The attacker is not sure of the labels, so it tries each likely set of "
                       "labels for a short while and carries on with the one whose gradient fits best.")
        elif starts > 1:
            st.caption("One line per start (restart): the attack keeps the one whose gradient fits best.")
        c1, c2 = st.columns(2)
        with c1:
            losses = pd.DataFrame([(i, loss, f"start {r + 1}") for i, loss, r in job.losses],
                                  columns=["iteration", "loss", "start"])
            draw.curve(losses, "iteration", "loss", "gradient distance (log)", log=True, color=color)
        with c2:
            psnr = pd.DataFrame([(f.iteration, f.psnr, f"start {f.restart + 1}") for f in job.frames],
                                columns=["iteration", "PSNR (dB)", "start"])
            draw.curve(psnr, "iteration", "PSNR (dB)", "PSNR (dB)", rule=30.0, color=color)
    if job.result is not None:
        ev = job.result.evaluation
        if "diverged" in job.result.reason:
            st.warning(f"**The run diverged:** {job.result.reason}. Shown is the best point before that "
                       f"(PSNR {ev.psnr:.1f} dB). Press **Reset** to try another start.", icon=":material/warning:")
        else:
            st.success(f"**Done:** PSNR {ev.psnr:.1f} dB, SSIM {ev.ssim:.2f}"
                       + (f", labels {ev.label_accuracy:.0%} right" if ev.label_accuracy is not None else "")
                       + f". {job.result.reason.capitalize()}. Above about 30 dB the images are as good as the "
                       "originals.", icon=":material/check_circle:")
    if job.done and len(job.frames) > 1:
        film(job)


def film(job: Job) -> None:
    """A finished run, frame by frame. Drawn inside the live fragment, so it is there the moment the
    run ends (it does not wait for the full rerun that follows)."""
    st.subheader("Scrub the run like a film", anchor=False)
    idx = st.slider("Frame", 0, len(job.frames) - 1, len(job.frames) - 1, key=f"dlg.film.{id(job)}")
    frame = job.frames[idx]
    st.markdown(f"Iteration **{frame.iteration}**: distance {frame.loss:.3g}, PSNR **{frame.psnr:.1f} dB**")
    left, right = st.columns(2)
    with left:
        draw.strip(setup.images, ["original"] * len(setup.labels))
    with right:
        draw.strip(frame.images, ["guess"] * len(frame.images))


live([job] if job is not None else [], show, key="dlg.live")

common.try_this(
    "Press **Next stage** four times and read each box: which stage uses the leaked gradient?",
    "Go back to *Pick a batch* and set the batch size to 4 (or 2 clients of 2): the same button still "
    "brings the digits back, from an *averaged* gradient.",
    "Set *Labels the attacker uses* to *optimised with the images (original DLG)*: slower, sometimes wrong.",
    "Change the *Dummy seed*: a different start can end at a different picture.",
    "With a batch of 8, let the dummies start from *the average public image of each recovered label*: the "
    "attacker's public data does the first half of the work.",
)
common.page_next("stronger", "Stronger attacks: labels for free, a second attack, bigger batches")
