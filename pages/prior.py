"""The image prior: at 16-32 images the pixel attacks give up; a generative model of digits does not.
A VAE or a diffusion model, raced on the same leak, and the diffusion sampler's film from noise to digits."""

from dataclasses import dataclass, replace
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd
import streamlit as st

from engine.attacks import PriorSettings
from engine.attacks.rowspace import image_basis
from engine.config import DefenceConfig, with_overrides
from engine.data.imageset import CLASS_NAMES
from engine.experiment import make_attack, prior_check, prior_name
from engine.metrics import mse
from engine.priors import DiffusionPrior, Prior, load_diffusion, load_prior
from pages import common, draw
from pages.runner import Job, live, make_job

RUN, WRONG, CHECKS, FILM = "prior_run", "prior_wrong", "prior_checks", "prior_film"  # session keys
KINDS = {"vae": "VAE (search its 16-number codes)", "diffusion": "diffusion model (guided denoising)"}
ATTACK_OF = {"vae": "vae_prior", "diffusion": "diffusion_prior"}
TITLE_OF = {"vae": "VAE prior", "diffusion": "diffusion prior"}
FILM_FRAMES, FILM_IMAGES = 8, 4  # the film strip: frames across, images down
BATCHES = (2, 4, 8, 16, 32)
VICTIMS = {"lenet": ("LeNet", ["model.name=lenet", "model.width=0"]),
           "convnet32": ("wider ConvNet", ["model.name=convnet", "model.width=32"]),
           "mlp": ("MLP (fully connected)", ["model.name=mlp", "model.width=0"])}
SIGMA = PriorSettings().sigma_g  # the engine's width of the gradient likelihood
TRUST = {"more": 0.1, "default": 1.0, "less": 10.0, "hardly": 100.0}  # sigma_g as a multiple of the engine's
TRUST_WORDS = {"more": "more (σ/10)", "default": "default σ", "less": "less (σ×10)", "hardly": "hardly (σ×100)"}
IG_ITERATIONS = 1000  # as in the Stronger page's race
WRONG_SETS = {"fashion_mnist": "Fashion-MNIST clothes", "lfw_faces": "faces"}


@dataclass
class Run:
    """Jobs started by one button press, and what they were asked to do."""

    jobs: list[Job]
    seconds: float  # time budget of each attack
    steps: int  # latent + refinement steps of one restart of the prior attack
    restarts: int
    what: str  # the settings in words


def knob(widget: Callable[..., Any], label: str, name: str, default: Any, **kwargs: Any) -> Any:
    """A widget of this page whose value travels in the URL as prior.<name>, when not the default."""
    key = f"prior.{name}"
    if key not in st.session_state:
        raw, options = st.query_params.get(key, ""), kwargs.get("options")
        if options is None:  # a slider: a whole number within its range
            options = list(range(kwargs["min_value"], kwargs["max_value"] + 1))
        fits = [o for o in options if str(o) == raw]
        st.session_state[key] = fits[0] if fits else default  # a bad link value: the default
    value = widget(label, key=key, **kwargs)
    if value == default:
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = str(value)
    return value


@st.cache_resource(show_spinner=False, max_entries=4)
def prior(name: str) -> Prior:
    """A shipped VAE prior, loaded once for all sessions (frozen, read-only)."""
    return load_prior(name)


@st.cache_resource(show_spinner=False, max_entries=4)
def diffusion(name: str) -> DiffusionPrior:
    """A shipped diffusion prior, loaded once for all sessions (frozen, read-only)."""
    return load_diffusion(name)


def attack_for(cfg):
    """The configured prior attack, with the cached priors."""
    name = prior_name(cfg)
    extra = {"diffusion": diffusion(name)} if cfg.attack.name == "diffusion_prior" else {}
    return make_attack(cfg, prior=prior(name), **extra)


@st.cache_resource(show_spinner=False, max_entries=4)
def class_pictures(name: str) -> np.ndarray:
    """What the prior draws for the mean code of each class, (K, H, W, C) uint8."""
    p = prior(name)
    return draw.to_uint8(p.vae.decode(p.class_means))


SHOWCASE_VALUES = ("convnet32", 32, 60, 1)  # victim, batch, seconds, restarts where the diffusion prior shows its worth


def showcase() -> None:
    """Set the knobs of the race where the diffusion prior shows what it adds (a button's callback:
    it runs before the widgets are drawn again)."""
    for name, value in zip(("victim", "batch", "seconds", "restarts"), SHOWCASE_VALUES):
        st.session_state[f"prior.{name}"] = value


def page_config(batch: int, victim: str, kind: str = "vae", **attack: Any):
    """The session's experiment as this page attacks it: one phone, its batch size and victim, no defence."""
    cfg = replace(common.config(), defence=DefenceConfig())
    labels = cfg.attack.labels if cfg.attack.labels != "joint" else "recovered"
    settings = [f"data.batch_size={batch}", "data.clients=1", *VICTIMS[victim][1], f"attack.labels={labels}",
                "data.indices=null", "attack.lr=null", "attack.distance=null", "attack.tv=null",
                f"attack.name={ATTACK_OF[kind]}",
                f"attack.iterations={PriorSettings().iterations}"]
    return with_overrides(cfg, settings + [f"attack.{k}={v}" for k, v in attack.items()])


def page_setup(cfg, slot: str = "prior_setup"):
    """A leak of this page, made once per change (per session: the attack swaps weights into the model)."""
    cached = st.session_state.get(slot)
    if cached is None or cached[0] != cfg:
        cached = (cfg, common.setup_for(cfg))
        st.session_state[slot] = cached
    return cached[1]


def run_words(cfg, seconds: float) -> str:
    """What a run attacks and with what, in words."""
    a = cfg.attack
    victim = {"lenet": "LeNet", "convnet": "wider ConvNet", "mlp": "MLP"}[cfg.model.name]
    kind = "diffusion" if a.name == "diffusion_prior" else "VAE"
    return (f"{cfg.data.batch_size} {common.SET_NAMES[cfg.data.dataset]} images, {victim}, "
            f"{prior_words(a.prior, cfg)} {kind} prior, {a.restarts} restart(s), at most {seconds:g} s")


def start(key: str, cfg, setup, seconds: float, race: bool, title: str, *others) -> None:
    """Start the prior attack (and, in a race, Inverting Gradients; or the same attack with other
    priors, given as (title, config) pairs) on `setup`'s leak, all asked to run to the end."""
    for job in st.session_state[key].jobs if key in st.session_state else []:
        job.close()  # the previous run's generators end here
    attack = attack_for(cfg)
    jobs = [make_job(title, setup, attack.steps(setup.leak, setup.attacker_labels), attack.steps_per_restart(setup.leak))]
    for other_title, other in others:
        a = attack_for(other)
        jobs.append(make_job(other_title, setup, a.steps(setup.leak, setup.attacker_labels), a.steps_per_restart(setup.leak)))
    if race:
        ig = with_overrides(cfg, ["attack.name=ig", f"attack.iterations={IG_ITERATIONS}", "attack.restarts=1"])
        jobs.append(make_job("Inverting Gradients (pixels)", setup,
                             make_attack(ig).steps(setup.leak, setup.attacker_labels), IG_ITERATIONS))
    for job in jobs:
        job.ask("end")
    st.session_state[key] = Run(jobs, seconds, attack.steps_per_restart(setup.leak),
                                cfg.attack.restarts, run_words(cfg, seconds))


def stop(key: str) -> None:
    run: Optional[Run] = st.session_state.get(key)
    for job in run.jobs if run else []:
        job.stop()


def carry_on(key: str) -> None:
    run: Optional[Run] = st.session_state.get(key)
    for job in run.jobs if run else []:
        job.ask("end")


def prior_words(name: Optional[str], cfg) -> str:
    """'MNIST' for a prior name; None is the data set's own."""
    return common.SET_NAMES.get(name or cfg.data.dataset, name or cfg.data.dataset)


common.header(
    "prior",
    "why the pixel attacks give up on batches of 16-32 images, how a generative model of digits (a VAE) lets the "
    "attacker search 16 numbers per image instead of 784 pixels, what a diffusion model's guided denoising adds, "
    "where the attacker is still guessing, and what a wrong prior does.",
)
cfg = common.config()

# --- the batch under attack --------------------------------------------------------------------
c1, c2, c3 = st.columns(3)
with c1:
    batch = knob(st.select_slider, "Batch size (images on one phone)", "batch", 16, options=BATCHES)
with c2:
    victim = knob(st.selectbox, "Victim model", "victim", "lenet", options=list(VICTIMS),
                  format_func=lambda v: VICTIMS[v][0])
with c3:
    common.setting(st.selectbox, "Image prior the attacker uses", "attack.prior",
                   options=["own", "mnist", "fashion_mnist"], show=lambda p: p or "own",
                   read=lambda p: None if p == "own" else p,
                   format_func=lambda p: f"the {common.SET_NAMES[p]} prior" if p != "own" else
                   "the data set's own" + (f" ({prior_words(None, common.config())})"
                                           if common.config().data.dataset in ("mnist", "fashion_mnist") else
                                           " (none for this data set)"))
victim_name = VICTIMS[victim][0]
px = 56 if batch <= 16 else 42  # on-screen size of one image: a batch of 32 still fits a row or two
protocol = ("one FedSGD gradient" if cfg.leak.protocol == "fedsgd"
            else f"one FedAvg update ({cfg.leak.local_steps} local steps)")
cfg = page_config(batch, victim)
if common.uploads() is not None:
    st.caption("This page attacks bundled images (batches of 2-32), not your uploads.")
setup = common.attempt(page_setup, cfg)
if setup is None:
    st.stop()
used = common.attempt(prior_name, cfg)  # None: no prior fits this data set (the faces); said why
if used is None:
    st.info("Pick the MNIST or the Fashion-MNIST prior above: the faces are then attacked with a prior of the "
            "wrong data (section 4 shows what that does).", icon=":material/arrow_upward:")
the_prior = common.attempt(prior, used) if used else None
names = ", ".join(common.class_names(setup, setup.labels)[:16]) + (" ..." if batch > 16 else "")
st.info(f"**Under attack:** {batch} {common.SET_NAMES[cfg.data.dataset]} images on one phone (labels {names}), "
        f"{protocol} of the {victim_name}. The other settings come from *Pick a batch and leak it*.",
        icon=":material/target:")

# --- 1. why a prior ----------------------------------------------------------------------------
st.subheader("1. Why a prior", anchor=False)
pixels = batch * setup.images[0].numel()
latent = the_prior.vae.latent if the_prior else 16
m = st.columns(3)
m[0].metric("Numbers the server sees", f"{setup.leak.observed:,}")
m[1].metric("Pixels a pixel attack must find", f"{pixels:,}")
m[2].metric("Numbers the prior attack must find", f"{batch * latent:,}")
seen = f"The server sees **{setup.leak.observed:,}** numbers; DLG and Inverting Gradients must find **{pixels:,}** pixels."
if setup.leak.observed <= pixels:
    st.markdown(f"{seen} Fewer equations than unknowns: countless batches fit the gradient, and almost all of them "
                "are noise.")
elif setup.leak.observed <= 2 * pixels:
    st.markdown(f"{seen} Barely more equations than unknowns, and every pixel is tangled with every number: from "
                "16 images up, the pixel search stalls long before it finds the right batch.")
else:
    st.markdown(f"{seen} More equations than unknowns: in principle enough to pin the batch down, yet searching "
                "that many pixels is slow. Race the two attacks below to see which gets there first.")
st.markdown(f"A **prior** is what the attacker believes before it sees the gradient: *these are handwritten digits*. "
            f"Here it is a **VAE** (variational autoencoder): a small network trained on "
            f"{prior_words(used or 'mnist', cfg)} training images "
            f"that draws a 28x28 image from just **{latent} numbers** (its *code* z). Searching {latent} numbers per "
            "image instead of 784 pixels, every guess is already a digit.")
if the_prior is not None:
    st.caption(f"What the {prior_words(used, cfg)} prior draws for the average code of each class "
               f"(it redraws unseen images at about {the_prior.card.get('heldout_psnr_db', 0):.0f} dB: "
               "no attack through it can do much better):")
    draw.strip(class_pictures(used), CLASS_NAMES[used], size=56, limit=10)
st.markdown("Bayes' rule: how likely a batch x is, once the gradient g is seen, is how well x explains g "
            "times how digit-like x is.")
st.latex(r"p(x \mid g) \;\propto\; \underbrace{p(g \mid x)}_{\text{fits the gradient}}\;"
         r"\underbrace{p(x)}_{\text{looks like a digit}}")
st.markdown("The attack takes the most likely batch (the **MAP**, *maximum a posteriori*): best fit plus prior. "
            "D is the VAE's decoder (code in, image out):")
st.latex(r"z^\star = \arg\min_z \; \Big[1 - \cos\big(\nabla W(D(z)),\, \nabla W\big)\Big] \;+\; "
         r"\frac{\sigma_g^2}{2} \sum_i \lVert z_i \rVert^2")
rowspace = image_basis(setup.leak) is not None  # a fully connected first layer wider than the batch
polish = ("Then a short polish frees the decoder's last feature map, so the guesses can leave the VAE's range a "
          "little (it cannot draw every digit exactly)." if not rowspace else
          "Then the polish of the box below.")
st.caption("σ_g is how much the attacker trusts the gradient over the prior: small σ_g follows the gradient, "
           f"large σ_g pulls every image towards a typical digit. {polish}")
if rowspace:
    with st.container(border=True):
        st.markdown("**This victim gives more away.** The MLP's first layer is fully connected: its "
                    "weight gradient is a sum of one outer product per image, so every private image lies in a "
                    f"{batch}-dimensional slice of the 784-pixel space, and the server reads that slice off the "
                    "gradient (its first singular vectors).")
        st.latex(r"\nabla W_1 = \frac{1}{n}\sum_{i=1}^{n} \delta_i\, x_i^{\top}"
                 r"\quad\Rightarrow\quad x_i = V_n\, c_i,\;\; c_i \in \mathbb{R}^{n}")
        st.markdown(f"After the prior's guess the attack polishes **inside that slice**: {batch}×{batch} = "
                    f"**{batch * batch:,}** numbers instead of {pixels:,} pixels, against {setup.leak.observed:,} "
                    "equations. The prior only has to start it near the truth; the batch then comes back "
                    "(almost) exactly. No prior is needed for that: it is the victim's first layer that leaks.")

# --- 2. run it --------------------------------------------------------------------------------
st.subheader("2. Run it", anchor=False)
kind = knob(st.radio, "The attacker's prior", "kind", "vae", options=list(KINDS), format_func=KINDS.get,
            horizontal=True, help="The VAE searches 16 numbers per image; the diffusion model starts from the VAE's "
                                  "answer, adds noise, and denoises it again with the gradient pulling at every step, round after round.")
if kind == "diffusion":
    st.markdown("A **diffusion model** learnt to remove noise from digits, a little at a time. The attack takes the "
                "VAE's quick first answer (a twelfth of the time), drowns it in noise (step t = 350 of 1000), and walks "
                "back down: at each step the model's clean guess x̂₀ is put through the victim, its gradient "
                "compared with the leaked one, and the step nudged so that the guess fits better (*diffusion "
                "posterior sampling*):")
    st.latex(r"x_{t-1} = \underbrace{\text{denoise}(x_t)}_{\text{looks like a digit}} \;-\; "
             r"\zeta\,\frac{\nabla_{x_t}\, d\big(\nabla W(\hat x_0(x_t)),\, \nabla W\big)}"
             r"{\lVert \nabla_{x_t}\, d \rVert}")
    st.caption("Then it does it again, from the best guess of the last round, with a little less noise each round "
               "(t = 350 down to 100): much noise lets a round redraw a digit the last one got wrong, little noise "
               "only its strokes. The diffusion model can draw strokes the VAE's decoder cannot. The last rounds "
               "all draw nearly the same digits, each with its own slips of the pen; when the time holds 8 rounds "
               "or more (a minute at 32 images, one restart), the answer is the average of the last quarter, "
               "which is nearer the truth than any one of them (the attacker never sees the truth: it only knows "
               "that every one of them fits the leaked gradient).")
r1, r2, r3 = st.columns(3)
with r1:
    seconds = knob(st.slider, "Time budget (at most, s)", "seconds", 20, min_value=2, max_value=60)
with r2:
    restarts = knob(st.slider, "Restarts (posterior samples)", "restarts", 2, min_value=1, max_value=4,
                    help="Each restart starts from other codes; the best fit is kept, and where the restarts "
                         "disagree shows where the attacker is guessing.")
with r3:
    trust = knob(st.select_slider, "Trust in the gradient (σ_g)", "trust", "default", options=list(TRUST),
                 format_func=TRUST_WORDS.get)
if kind == "diffusion" and (victim, batch, seconds, restarts) != SHOWCASE_VALUES:
    with st.container(border=True):
        lenet = ("On the small LeNet it usually *loses* to the VAE: the LeNet's gradient has about 13 thousand "
                 "numbers, so a sampler that fits it harder finds a wrong batch that fits it better. "
                 if victim == "lenet" else "")
        st.markdown(f"{lenet}The diffusion prior shows what it adds on the wider ConvNet, at 32 images, with a "
                    "minute and one restart (in the README's race: about 22 dB and 81% of the images nearer their "
                    "victim, against the VAE's 19 dB and 71%).")
        st.button("Set that up: wider ConvNet, 32 images, 60 s, 1 restart", key="prior.showcase",
                  on_click=showcase, icon=":material/tune:")
knobs = dict(time_limit=float(seconds), restarts=int(restarts), sigma_g=SIGMA * TRUST[trust])
run_cfg = page_config(batch, victim, kind, **knobs)
vae_cfg, diffusion_cfg = (page_config(batch, victim, k, **knobs) for k in ("vae", "diffusion"))
b = st.columns([1.4, 2.1, 2.0, 0.8, 1])
ready = the_prior is not None
b[0].button("Run the prior attack", on_click=common.attempt, key="prior.go", type="primary", disabled=not ready,
            args=(start, RUN, run_cfg, setup, float(seconds), False, TITLE_OF[kind]), icon=":material/play_arrow:")
b[1].button("Race it against Inverting Gradients", on_click=common.attempt, key="prior.race", disabled=not ready,
            args=(start, RUN, run_cfg, setup, float(seconds), True, TITLE_OF[kind]), icon=":material/flag:")
b[2].button("Race the VAE against diffusion", on_click=common.attempt, key="prior.versus", disabled=not ready,
            args=(start, RUN, vae_cfg, setup, float(seconds), False, TITLE_OF["vae"],
                  (TITLE_OF["diffusion"], diffusion_cfg)), icon=":material/compare_arrows:")
b[3].button("Stop", on_click=stop, args=(RUN,), key="prior.stop", icon=":material/stop:")
b[4].button("Carry on", on_click=carry_on, args=(RUN,), key="prior.more", icon=":material/resume:")
run: Optional[Run] = st.session_state.get(RUN)
if run is not None and run.jobs[0].setup is not setup:
    st.caption(f"The run below is of earlier settings ({run.what}). Press a button to run these.")


def show_run() -> None:
    """While it runs: the current guesses and the loss; in a race, both attacks side by side."""
    job = run.jobs[0]
    step = job.last
    if step is not None:
        share = (step.restart * run.steps + step.iteration) / (run.steps * run.restarts)
        st.progress(min(1.0, max(share, job.compute_s / run.seconds)),
                    text=f"{job.state}: restart {step.restart + 1} of {run.restarts}, step {step.iteration}, "
                         f"{job.compute_s:.1f} s")
    if len(run.jobs) > 1:
        draw.jobs_side_by_side(job.setup, run.jobs)
        curves = [{"seconds": f.seconds, "PSNR (dB)": f.psnr, "attack": j.title} for j in run.jobs for f in j.frames]
        if curves:
            draw.curve(pd.DataFrame(curves), "seconds", "PSNR (dB)", "PSNR (dB), higher = closer", color="attack",
                       height=300)
        if run.jobs[-1].title.startswith("Inverting"):
            st.caption(f"Inverting Gradients gets the same {run.seconds:g} s and {IG_ITERATIONS:,} steps (as on the "
                       "Stronger page), whichever ends first; more steps do not rescue it at this batch size.")
        else:
            st.caption(f"Both priors get the same {run.seconds:g} s on the same leak. The diffusion prior spends the "
                       "first twelfth of it on the VAE's search, then denoises in rounds: watch its PSNR jump when it "
                       "switches, then climb round by round.")
    elif step is not None and not job.done:
        st.markdown("**The private images** (hidden from the attacker)")
        draw.strip(job.setup.images, common.class_names(job.setup, job.setup.labels), size=px, limit=32)
        images, labels = job.current()
        psnr = f", PSNR {job.frames[-1].psnr:.1f} dB" if job.frames else ""
        how = (f"decoded from {latent} numbers per image" if job.title == TITLE_OF["vae"] else
               "the VAE's search first, then the denoiser's clean guess at each step")
        st.markdown(f"**The attacker's current guess**, {how}{psnr}")
        draw.strip(images, [f"guess {job.setup.dataset.classes[y]}" for y in labels], size=px, limit=32)
    if job.losses:
        losses = pd.DataFrame([(i, loss, f"restart {r + 1}") for i, loss, r in job.losses],
                              columns=["step", "distance", "restart"])
        st.markdown("**Gradient distance of the prior attack**, per restart (lower = the guess's gradient fits "
                    "the leaked one better)")
        draw.curve(losses, "step", "distance", "gradient distance (log)", log=True, color="restart", height=300)
    for j in run.jobs:
        if j.error:
            st.error(j.error, icon=":material/error:")


if run is not None:
    live(run.jobs, show_run, key="prior.live", together=True)
else:
    st.caption("Press **Run the prior attack** (about 10-20 s for 16 images), race it against Inverting "
               "Gradients, or race the two priors: each gets the same seconds on the same leak.")


# --- 3. what came back ------------------------------------------------------------------------------
def check(job: Job) -> Optional[dict]:
    """The nearest-training-image check of a finished job, made once."""
    held = st.session_state.get(CHECKS)
    if held is None or held[0] is not job:
        held = (job, common.attempt(prior_check, job.setup, job.result))
        st.session_state[CHECKS] = held
    return held[1]


st.subheader("3. What came back", anchor=False)
result = run.jobs[0].result if run is not None else None
if result is None:
    st.caption("The result appears here when the prior attack has finished.")
else:
    s, ev, n = run.jobs[0].setup, result.evaluation, len(result.labels)
    near = check(run.jobs[0])
    st.caption(f"{run.what}. Ended: {result.reason}.")
    m = st.columns(4)
    m[0].metric("PSNR (higher = closer)", f"{ev.psnr:.1f} dB")
    m[1].metric("SSIM (1 = identical)", f"{ev.ssim:.2f}")
    m[2].metric("Labels right", "-" if ev.label_accuracy is None else f"{ev.label_accuracy:.0%}")
    if near is not None:
        m[3].metric("Nearer their victim",
                    f"{round(near['closer_to_victim'] * n)} of {n}")
    st.markdown("**The private images** (hidden from the attacker)")
    draw.strip(s.images, common.class_names(s, s.labels), size=px, limit=32)
    st.markdown("**The reconstruction**: the restart whose gradient fits best (the VAE's MAP; for the diffusion "
                "prior, the mean of that restart's last rounds when it ran 8 or more)")
    draw.strip(result.reconstruction, [f"{s.dataset.classes[int(y)]} {p:.0f} dB" for y, p in
                                       zip(result.labels, ev.per_image_psnr)], size=px, limit=32)
    st.markdown("**Where the attacker is guessing**: how much the restarts disagree, pixel by pixel "
                "(bright = they drew different things here, dark = they all agree)")
    if result.spread is not None and run.restarts > 1:
        top = draw.heat_strip(result.spread, size=px, limit=32)
        st.caption(f"Brightest = a standard deviation of {top:.2f} (pixels run from 0 to 1) over the restarts.")
    else:
        st.caption("One restart: nothing to compare. Raise *Restarts* to 2 or more.")
    if near is not None:
        train = mse(result.reconstruction, near["nearest"])
        own = mse(result.reconstruction, result.originals)
        st.markdown("**The nearest image in the prior's training sample**, and its distance (mean squared pixel "
                    "difference) to the reconstruction; ✓ = the reconstruction is nearer its victim")
        draw.strip(near["nearest"], [f"{'✓' if o < t else '✗'} {t:.3f}" for o, t in zip(own, train)], size=px,
                   limit=32)
        st.markdown(f"**{round(near['closer_to_victim'] * n)} of {n}** reconstructions are closer to their victim "
                    "than to any training image. The others look more like some digit the VAE was trained on than "
                    "like the private one: a *plausible* digit is not necessarily a *leaked* one. The prior can "
                    "make up a convincing 7 that the phone never held.")

if run is not None and len(run.jobs) > 1 and not run.jobs[-1].title.startswith("Inverting"):
    finished = [job for job in run.jobs if job.result is not None]
    if finished:
        st.markdown("**The two priors on the same leak**")
        rows = []
        for job in finished:
            near = common.attempt(prior_check, job.setup, job.result)
            n = len(job.result.labels)
            rows.append({"prior": job.title, "PSNR (dB)": round(job.result.evaluation.psnr, 1),
                         "SSIM": round(job.result.evaluation.ssim, 2),
                         "nearer their victim": "-" if near is None else f"{round(near['closer_to_victim'] * n)} of {n}",
                         "seconds": round(job.result.seconds, 1)})
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        st.caption("Same batch, same seconds. *Nearer their victim*: reconstructions closer to the private image "
                   "than to any image the prior was trained on: sharper is only better if it is the victim's digit, "
                   "not the prior's favourite. Measured on 16 batches of 32 on the wider ConvNet (README, 60 s "
                   "each), the diffusion prior beat the VAE on 15 of them: 22.0 dB against 18.9 on average, 81% of "
                   "images nearer their victim against 71%. On the small LeNet it loses (its gradient has fewer "
                   "numbers than the batch has pixels: fitting it harder fits a wrong batch better).")


# --- the diffusion sampler's film ------------------------------------------------------------------------
def show_film() -> None:
    """The chain from pure noise, frame by frame: a few images down, the frames across."""
    job = st.session_state[FILM].jobs[0]
    frames = job.frames
    if not frames:
        return
    if not job.done:
        st.progress(min(1.0, job.iteration / max(job.budget, 1)),
                    text=f"{job.state}: step {job.iteration} of {job.budget}, {job.compute_s:.1f} s")
    keep = sorted(set(np.linspace(0, len(frames) - 1, min(FILM_FRAMES, len(frames))).round().astype(int)))
    originals = draw.to_uint8(job.setup.images)
    for i in range(min(FILM_IMAGES, len(originals))):
        film = np.stack([frames[k].images[i] for k in keep] + [originals[i]])
        draw.strip(film, [f"step {frames[k].iteration}" for k in keep] + ["the private image"], size=56,
                   limit=FILM_FRAMES + 1)
    last = frames[-1]
    st.caption(f"Latest frame: PSNR {last.psnr:.1f} dB over the batch, gradient distance {last.loss:.3g}.")


st.markdown("**The diffusion sampler, frame by frame.** Start from pure noise (no VAE this time) and watch the guided "
            "chain: each column is the model's clean guess x̂₀ at one step, each row one image of the batch.")
film_cfg = page_config(batch, victim, "diffusion", time_limit=float(seconds), restarts=1, start="noise", rounds=1,
                       sigma_g=SIGMA * TRUST[trust])
st.button("Watch the sampler from noise", key="prior.film.go", on_click=common.attempt, disabled=not ready,
          args=(start, FILM, film_cfg, setup, float(seconds), False, "diffusion from noise"),
          icon=":material/movie:")
if st.session_state.get(FILM) is not None:
    live(st.session_state[FILM].jobs, show_film, key="prior.film.live")
    if st.session_state[FILM].jobs[0].done:
        st.markdown("What to notice: the first frames are noise; about halfway down the chain the gradient's pull "
                    "decides *which* stroke sits where, and the last steps only sharpen it. From pure noise this "
                    "small model (26 minutes of training on one shared CPU thread) fits far worse than the VAE: "
                    "that is why the attack above starts from the VAE's answer and only re-draws it.")

# --- 4. when the prior is wrong ---------------------------------------------------------------------
st.subheader("4. When the prior is wrong", anchor=False)
st.markdown("The prior is an assumption: *the images are handwritten digits*. Attack clothes or faces with the "
            "MNIST prior and every guess is still digit-like, whatever the gradient says.")
w1, _ = st.columns([1, 2])
with w1:
    wrong_set = knob(st.radio, "Private images", "set", "fashion_mnist", options=list(WRONG_SETS),
                     format_func=WRONG_SETS.get, horizontal=True)
wrong_base = with_overrides(run_cfg, [f"data.dataset={wrong_set}", "data.classes=null", "data.batch_size=8", "leak.round=0",
                                      f"attack.time_limit={min(float(seconds), 15.0)}", "attack.prior=mnist",
                                      "attack.restarts=1", f"attack.sigma_g={SIGMA}"])
others = [("Fashion-MNIST prior (right)", with_overrides(wrong_base, ["attack.prior=fashion_mnist"]))] \
    if wrong_set == "fashion_mnist" else []
wrong_setup = common.attempt(page_setup, wrong_base, "prior_wrong_setup")
st.caption("The clothes are attacked twice on the same leak: with the MNIST prior and, beside it, with the right "
           "(Fashion-MNIST) prior. The 100 bundled faces are too few to train a prior of their own."
           if wrong_set == "fashion_mnist" else
           "No prior of faces exists here: the 100 bundled faces are too few to train one.")
st.button(f"Attack 8 {WRONG_SETS[wrong_set]} with the MNIST prior", key="prior.wrong.go", on_click=common.attempt,
          args=(start, WRONG, wrong_base, wrong_setup, wrong_base.attack.time_limit, False, "MNIST prior (wrong)",
                *others), disabled=wrong_setup is None, icon=":material/help:")
wrong: Optional[Run] = st.session_state.get(WRONG)


def show_wrong() -> None:
    draw.jobs_side_by_side(wrong.jobs[0].setup, wrong.jobs)


if wrong is not None:
    live(wrong.jobs, show_wrong, key="prior.wrong.live", together=True)
    if all(job.done for job in wrong.jobs):
        st.markdown("The wrong prior can only draw digits, so it turns every private image into a digit-like blob "
                    "that happens to send a similar gradient." + (" The right prior, on the same leak, brings back "
                                                                  "clothes." if len(wrong.jobs) > 1 else ""))

common.try_this(
    "Run at 16 images, then race it against Inverting Gradients: same leak, same seconds. Which one gives digits?",
    "Set 32 images on the wider ConvNet, 60 s and one restart, and race the VAE against diffusion: are the diffusion "
    "prior's sharper digits the victims' (PSNR, nearer their victim) or the prior's favourites? Then race at 15 s: "
    "too few rounds, and the VAE wins.",
    "Set the batch to 4 and race again: with few images the pixel attack wins, because the prior can only draw "
    "what its VAE can draw.",
    "Set *Trust in the gradient* to *hardly*: every image drifts to a typical digit, and fewer are closer to their "
    "victim than to a training image.",
    "Pick the *Fashion-MNIST* prior for MNIST digits: the attacker believes in clothes.",
    "Raise *Restarts* to 4 and look at the spread: the attacker is surest about the strokes every digit shares.",
    "Switch the victim to the *MLP* at 32 images: its fully connected first layer confines the batch to a slice the "
    "gradient gives away, and the digits come back exactly. Then back to the LeNet: same batch, about 15 dB.",
)
common.page_next("defences", "Defences: what stops these attacks, and at what price")
