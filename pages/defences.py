"""Defences and their price: DP noise with its epsilon, compression, secure aggregation, and what each costs."""

from dataclasses import replace

import pandas as pd
import streamlit as st

from engine.config import DefenceConfig, with_overrides
from engine.defences import defence_metrics, with_update
from engine.defence_explain import RECORDED_NOISE, layer_changes, secure_walkthrough, update_cosine
from engine.experiment import make_attack
from pages import common, draw
from pages.runner import Job, live, make_job

DP_JOBS, SA_JOBS, SA_WALK, DEFENDED = "def_jobs", "def_sa_jobs", "def_sa_walk", "def_setup"  # session keys
SIGMAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
CLIPS = (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)
METHODS = {"none": "none", "top_k": "top-k (send the largest)", "prune": "prune (zero the smallest)",
           "quantise": "quantise to few bits", "sign": "signs only"}

common.header(
    "defences",
    "what stops the attack and what it costs: noise with its privacy budget epsilon, compression with its "
    "saving, and secure aggregation, which hides each phone's update but not their sum.",
)
setup = common.need_setup()
cfg = common.config()
base = replace(cfg, defence=DefenceConfig())  # the session's leak, undefended
st.info(f"**Under attack:** {common.describe(setup)}. Change it on *Pick a batch and leak it*.",
        icon=":material/target:")

# --- 1. the knobs: noise and compression -------------------------------------------------------------
st.subheader("1. One knob, instant effect: noise", anchor=False)
st.markdown("Differential privacy **clips** each update to a norm C, then **adds Gaussian noise** of standard "
            "deviation sigma x C. The accountant turns sigma into **epsilon**: the smaller epsilon, the less "
            "any one image can change what the server sees.")
KNOBS = {"def.sigma": 0.0, "def.clip": 1.0, "def.level": "example", "def.method": "none", "def.fraction": 0.1,
         "def.bits": 4}  # widget key -> default
for knob, default in KNOBS.items():
    st.session_state.setdefault(knob, default)


def defended_config():
    """The session's leak config with the defence the knobs choose (None after an error, shown)."""
    k = st.session_state
    settings = [f"defence.dp.noise_multiplier={k['def.sigma']}", f"defence.dp.clip={k['def.clip']}",
                f"defence.dp.level={k['def.level']}", f"defence.compression.method={k['def.method']}",
                f"defence.compression.fraction={k['def.fraction']}", f"defence.compression.bits={k['def.bits']}"]
    return common.attempt(with_overrides, base, settings)


def defended_setup(defended_cfg):
    """The session's leak under the chosen defence, made once per change."""
    key = (defended_cfg, id(common.uploads()))
    cached = st.session_state.get(DEFENDED)
    if cached is None or cached[0] != key:
        made = common.attempt(common.setup_for, defended_cfg, common.uploads())
        if made is None:
            return None
        st.session_state[DEFENDED] = cached = (key, made)
    return cached[1]


def defence_words(c) -> str:
    """A config's defence in a few words."""
    dp, method = c.defence.dp, c.defence.compression.method
    parts = [f"noise sigma {dp.noise_multiplier:g} per {'image' if dp.level == 'example' else 'phone'}, "
             f"clip C = {dp.clip:g}" if dp.noise_multiplier > 0 else "no noise"]
    if method != "none":
        parts.append(METHODS[method])
    return "; ".join(parts)


@st.fragment
def knobs() -> None:
    """The knobs and their instant effect; moving one reruns only this part of the page."""
    k1, k2, k3 = st.columns([2, 1.4, 1.4])
    k1.select_slider("Noise multiplier sigma (0 = off)", SIGMAS, key="def.sigma",
                     format_func=lambda s: "off" if s == 0 else f"{s:g}")
    k2.select_slider("Clip norm C", CLIPS, key="def.clip", format_func=lambda c: f"{c:g}")
    level = k3.radio("Noise per", ["example", "client"], key="def.level", horizontal=True,
                     format_func={"example": "image (DP-SGD)", "client": "phone (DP-FedAvg)"}.get)
    c1, c2, c3 = st.columns([1.5, 1.4, 1.4])
    method = c1.selectbox("Compression", list(METHODS), key="def.method", format_func=METHODS.get)
    c2.slider("Share of entries kept (top-k) or zeroed (prune)", 0.05, 0.95, step=0.05, key="def.fraction",
              disabled=method not in ("top_k", "prune"))
    c3.slider("Bits per entry (quantise)", 1, 8, key="def.bits", disabled=method != "quantise")
    defended_cfg = defended_config()
    defended = defended_setup(defended_cfg) if defended_cfg is not None else None
    if defended is None:
        return
    numbers = common.attempt(defence_metrics, defended_cfg, setup.leak.update, len(setup.dataset)) or {}
    m1, m2, m3, m4 = st.columns(4)
    eps = numbers.get("epsilon")
    m1.metric("Privacy budget epsilon", "∞" if eps is None else f"{eps:.3g}",
              delta="no noise, no guarantee" if eps is None else None, delta_color="off", delta_arrow="off",
              help="Opacus's RDP accountant for this one round, at the delta below. Smaller is more private; "
                   "above about 10 the guarantee says little; without noise there is no bound at all (infinite).")
    m2.metric("delta", f"{defended_cfg.defence.dp.delta:g}")
    ratio = numbers.get("compression_ratio")
    m3.metric("Compression ratio", "1x (none)" if ratio is None else f"{ratio:.1f}x",
              help="Bits of the plain update over the bits sent, measured on this update.")
    m4.metric("Still points the same way", f"{update_cosine(setup.leak.update, defended.leak.update):.0%}",
              help="Cosine between the clean and the defended update: 100% = same direction, near 0% = drowned.")
    st.caption(f"Epsilon counts {'one image' if level == 'example' else 'one phone'} joining or leaving the "
               "round: " + ("its batch is a sample of its share of the bundled images, one step."
                            if level == "example" else "every phone takes part (q = 1), one round."))
    changes = layer_changes(setup.leak.update, defended.leak.update)
    frame = pd.DataFrame([{"layer": c.layer, "update": "clean update", "L2 norm": c.clean_norm} for c in changes]
                         + [{"layer": c.layer, "update": "defended", "L2 norm": c.defended_norm} for c in changes])
    draw.grouped_bars(frame, "layer", "L2 norm", "update", "L2 norm per layer (log)", log=True)
    st.caption("*Defended* is what the server sees. Clipping shrinks the bars; noise makes them grow again, but "
               "in random directions: look at *Still points the same way*. No attack has run yet.")


knobs()

# --- 2. attack the defended leak --------------------------------------------------------------------
st.subheader("2. Attack the defended leak", anchor=False)
a1, a2, _ = st.columns([1, 1, 2])
iterations = a1.number_input("DLG iterations", 10, 5000, min(cfg.attack.iterations, 300), step=50, key="def.iters")
limit = a2.slider("Time limit per attack (s)", 2, 60, 15, key="def.limit")


def start(key: str, jobs) -> None:
    stop(key)
    if jobs is not None:
        st.session_state[key] = jobs


def stop(key: str) -> None:
    for job in st.session_state.get(key, []):
        job.stop()


def attack_jobs() -> list[Job]:
    """DLG on the undefended and on the defended leak, side by side, same seed and budget."""
    defended_cfg = defended_config()
    defended = defended_setup(defended_cfg) if defended_cfg is not None else None
    if defended is None:
        return []
    attack = with_overrides(cfg, [f"attack.iterations={int(iterations)}", f"attack.time_limit={float(limit)}"])
    jobs = []
    for title, s in (("No defence", setup), ("With the defence", defended)):
        job = make_job(title, s, make_attack(attack).steps(s.leak, s.attacker_labels), int(iterations),
                       key=defended_cfg)
        job.ask("end")
        jobs.append(job)
    return jobs


b1, b2, _ = st.columns([1.4, 0.8, 3.8])
b1.button("Run DLG on both", type="primary", key="def.go", icon=":material/play_arrow:",
          on_click=lambda: start(DP_JOBS, common.attempt(attack_jobs)))
b2.button("Stop", on_click=stop, args=(DP_JOBS,), key="def.stop", icon=":material/stop:")
jobs: list[Job] = st.session_state.get(DP_JOBS, [])


if jobs:
    st.caption(f"*With the defence* in this run: {defence_words(jobs[0].key)}. Moved a knob since? Press "
               "**Run DLG on both** again.")
    live(jobs, lambda: draw.jobs_side_by_side(setup, jobs), key="def.live", together=True)
    st.caption("PSNR above about 30 dB: the digit is back. Below about 12 dB: noise.")
else:
    st.caption("Press **Run DLG on both**: the same attack, on the same images, with and without the defence.")

# --- 3. secure aggregation --------------------------------------------------------------------------
st.subheader("3. Secure aggregation: hides each phone, not the sum", anchor=False)
st.markdown("With secure aggregation (Bonawitz et al. 2017) each phone adds random **masks** that cancel "
            "out in the sum. The server sees only masked vectors, yet their sum is exactly the plain sum. "
            "Below: the first 32 numbers of each message, one phone per row.")
if common.uploads() is not None:
    st.info("The walk-through needs several phones: switch back to a bundled data set on *Pick a batch*.")
else:
    p1, p2 = st.columns([2, 1])
    n = p1.slider("Phones", 3, 5, 3, key="def.sa_clients")
    drop = p2.checkbox(f"Phone {n} drops out after sharing its keys", key="def.sa_drop")
    sa_cfg = common.attempt(with_overrides, base, [f"data.clients={n}", "leak.round=0"])
    cached = st.session_state.get(SA_WALK)
    if sa_cfg is not None and (cached is None or cached[0] != (sa_cfg, drop)):
        sa_setup = common.attempt(common.setup_for, sa_cfg)
        walk = common.attempt(secure_walkthrough, sa_setup, drop_out=drop) if sa_setup is not None else None
        cached = ((sa_cfg, drop), sa_setup, walk) if walk is not None else None
        st.session_state[SA_WALK] = cached
    if cached is not None:
        _, sa_setup, walk = cached
        phones = [f"phone {u + 1}" for u in range(n)]
        h1, h2 = st.columns(2)
        with h1:
            st.markdown("**What each phone holds** (its update)")
            draw.heatmap(walk.plain, phones, "first 32 entries", "", height=40 * n)
        with h2:
            st.markdown("**What the server receives** (masked)")
            draw.heatmap(walk.masked, phones, "first 32 entries (share of the 32-bit ring)", "", height=40 * n)
        st.markdown("**The sum**: plain, and unmasked by the server from the masked vectors")
        draw.heatmap(walk.sums, ["plain sum", "secure sum"], "first 32 entries", "",
                     height=110)
        st.caption("Red is positive, blue negative. A phone's real update is small and smooth; its masked vector "
                   "spreads over the whole range like static, and tells the server nothing. The two sum rows are "
                   "the same colours: the masks cancelled.")
        if drop:
            st.caption(f"Phone {n} sent nothing, yet its masks were already in the others' vectors: the server "
                       f"rebuilt its mask key from the other phones' Shamir shares and removed them. The sum is "
                       f"of the {n - 1} phones that stayed.")
        s1, s2 = st.columns(2)
        s1.metric("Largest difference, secure vs plain sum", f"{walk.max_error:.1e}",
                  help=f"Fixed-point rounding: at most {n} half-steps of {walk.step:.1e}.")
        s2.metric("Bytes per phone vs plain FedAvg", f"{walk.bytes_per_client / walk.plain_bytes:.2f}x")

        def sum_jobs() -> list[Job]:
            leak = with_update(sa_setup.leak, walk.aggregate)
            attack = with_overrides(sa_cfg, [f"attack.iterations={max(int(iterations), 1000)}",
                                             f"attack.time_limit={float(limit)}"])
            job = make_job("DLG on the secure sum", sa_setup, make_attack(attack).steps(leak, sa_setup.attacker_labels),
                           max(int(iterations), 1000), key=sa_cfg)
            job.ask("end")
            return [job]

        b1, b2, _ = st.columns([1.4, 0.8, 3.8])
        b1.button("Attack the secure sum", type="primary", key="def.sa_go", icon=":material/play_arrow:",
                  on_click=lambda: start(SA_JOBS, common.attempt(sum_jobs)), disabled=drop,
                  help="Untick the dropout first: the attack takes the whole round." if drop else None)
        b2.button("Stop", on_click=stop, args=(SA_JOBS,), key="def.sa_stop", icon=":material/stop:")
        sa_jobs = [j for j in st.session_state.get(SA_JOBS, []) if j.key == sa_cfg]
        if sa_jobs and not drop:
            live(sa_jobs, lambda: draw.jobs_side_by_side(sa_setup, sa_jobs), key="def.sa_live")
        else:
            st.caption("Press **Attack the secure sum**: DLG works on what the server unmasked, and brings back "
                       "all the phones' images together. Secure aggregation hides individuals, not the aggregate.")

# --- 4. privacy against utility ---------------------------------------------------------------------
st.subheader("4. The price: privacy against a model worth having", anchor=False)
rows = [{"sigma": "off" if s == 0 else f"{s:g}", "clip C": f"{c:g}", "DLG PSNR (dB)": p,
         "epsilon (one round)": "-" if e is None else f"{e:.3g}", "test accuracy": a,
         "epsilon (training)": "-" if t is None else f"{t:.3g}"} for s, c, p, e, a, t in RECORDED_NOISE]
curves = pd.DataFrame([{"sigma": s, "clip": f"C = {c:g}", "test accuracy": a, "DLG PSNR (dB)": p}
                       for s, c, p, e, a, t in RECORDED_NOISE])
t1, t2 = st.columns([1.6, 1])
with t1:
    st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={
        "test accuracy": st.column_config.ProgressColumn(format="percent", min_value=0.0, max_value=1.0)})
with t2:
    draw.curve(curves, "sigma", "DLG PSNR (dB)", "attack: PSNR (dB)", color="clip", ordinal=True, height=170,
               rule=30.0)
    draw.curve(curves, "sigma", "test accuracy", "model: test accuracy", color="clip", ordinal=True, height=170)
st.caption("Recorded by `python bench/defences.py` (README, *Defences*): DLG on the default digit, and a "
           "small FedAvg training (5 phones, 10 rounds) under the same defence. Run "
           "`python -m engine sweep --param defence.dp.noise_multiplier --values 0,1e-3,1e-2,1e-1 --utility` "
           "to measure it again.")
st.markdown("The attack fails long before epsilon means anything (epsilon in the thousands), and with C = 10 "
            "the model still learns up to sigma = 0.1. Noise strong enough for a small epsilon (sigma = 1) "
            "costs the model most of its accuracy in this small run.")

common.try_this(
    "Move sigma from *off* to *0.001* and watch *Still points the same way*, then press **Run DLG on both**.",
    "Set the noise *per phone* with 3 phones on *Pick a batch*: epsilon changes, and so does the damage.",
    "Choose *prune* and raise the zeroed share from 0.1 to 0.9: at what ratio does the digit stop coming back?",
    "Attack the secure sum with 5 phones: the server never saw one phone's update, yet it gets all five digits.",
)
common.page_next("experiment", "Save this experiment or share it")
