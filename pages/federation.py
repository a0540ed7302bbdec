"""A real FL run: many phones, many rounds, on Flower; slow phones, dropouts, privacy spent, and any round attacked."""

from dataclasses import replace

import pandas as pd
import streamlit as st

from engine.config import FederationConfig, with_overrides
from pages import common, draw
from pages.fl_runner import FederationJob, recorded
from pages.runner import live

JOB = "fl_job"  # session key
MODELS = {"convnet": "ConvNet (learns in a few rounds)", "mlp": "MLP", "lenet": "LeNet (DLG's, slow to train)"}
SKEW = {"iid": "IID (every phone a bit of everything)", "10.0": "Dirichlet 10 (mild)", "1.0": "Dirichlet 1",
        "0.5": "Dirichlet 0.5", "0.1": "Dirichlet 0.1 (most phones see 1-2 digits)"}

common.header(
    "federation",
    "a federated training run on Flower, round by round: which phones the server sampled, which were too slow "
    "or dropped out, how the model improves, how many bytes moved, how much privacy each round spent; then the "
    "server inverts any round it likes.",
)
st.markdown(
    "The other pages leak **one** round of a fresh model. A real deployment runs hundreds: each round the server "
    "samples some phones, sends them the model, and waits until a **deadline**; each phone trains on its own "
    "images for a few local epochs and sends back its new weights (FedAvg). Phones differ: some have slow chips or "
    "thin uplinks, some vanish mid-round. The run below is Flower's own FedAvg strategy and ClientApp, on a "
    "virtual clock that gives every phone a latency, a bandwidth and a speed."
)



def choices(dotted: str, options: list) -> list:
    """A select-slider's options, with the config's own value among them (a deep link may set any)."""
    value = common.config()
    for part in dotted.split("."):
        value = getattr(value, part)
    return sorted(set(options) | {value})


# --- 1. the federation ----------------------------------------------------------------------------
st.subheader("1. The federation", anchor=False)
fed = common.config().federation
if fed.attack != "none" or fed.strategy not in ("fedavg", "fedprox"):
    st.info(f"This federation still carries the *Poisoned clients* page's settings: attack '{fed.attack}' by "
            f"{fed.attackers:.0%} of the phones, aggregated by '{fed.strategy}'.", icon=":material/coronavirus:")
if fed != FederationConfig() and st.button("Back to the default federation", icon=":material/restart_alt:",
                                           key="fl.defaults", help="100 honest phones, FedAvg, 20 rounds: the "
                                           "recorded run shows at once."):
    common.set_config(replace(common.config(), federation=FederationConfig()))
    st.rerun()
c1, c2, c3, c4 = st.columns(4)
common.setting(c1.select_slider, "Phones", "federation.clients", choices("federation.clients", [20, 50, 100, 200, 400]),
               help="Clients, each holding its share of the 4,000 bundled train digits.")
common.setting(c2.select_slider, "Share sampled per round", "federation.fraction",
               choices("federation.fraction", [0.05, 0.1, 0.2, 0.5, 1.0]),
               format_func=lambda f: f"{f:.0%}")
common.setting(c3.slider, "Rounds", "federation.rounds", 2, 40)
common.setting(c4.select_slider, "Local epochs", "federation.local_epochs",
               choices("federation.local_epochs", [1, 2, 5, 10]))
d1, d2, d3, d4 = st.columns(4)
common.setting(d1.slider, "Dropout: chance a phone vanishes", "federation.dropout", 0.0, 0.9, step=0.05)
common.setting(d2.select_slider, "Deadline per round (s)", "federation.deadline",
               choices("federation.deadline", [0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0]))
common.setting(d3.select_slider, "Typical upload (Mbit/s)", "federation.bandwidth.up.median",
               choices("federation.bandwidth.up.median", [0.5, 1.0, 2.0, 5.0, 20.0, 100.0]))
cfg = common.config()
skew = "iid" if cfg.data.split == "iid" else f"{cfg.data.alpha:.1f}" if cfg.data.split == "dirichlet" else "shards"
spreads = {**SKEW, skew: SKEW.get(skew, f"Dirichlet {cfg.data.alpha:g}" if cfg.data.split == "dirichlet" else "label shards")}  # a deep link's own setting too
labels = list(spreads.values())
shown = d4.selectbox("How the digits are spread", labels, index=list(spreads).index(skew), key="fl.skew")
choice = list(spreads)[labels.index(shown)]
if choice != skew:
    common.update(**({"data.split": "iid"} if choice == "iid" else {"data.split": "dirichlet", "data.alpha": float(choice)}))
e1, e2, e3 = st.columns(3)
common.setting(e1.select_slider, "DP noise sigma per image (0 = off)", "defence.dp.noise_multiplier",
               choices("defence.dp.noise_multiplier", [0.0, 0.1, 0.3, 1.0, 3.0]), format_func=lambda s: "off" if s == 0 else f"{s:g}")
common.setting(e2.toggle, "Secure aggregation", "defence.secure_aggregation",
               help="Bonawitz et al.'s protocol: the server learns only the sum of the round's updates.")
model = {label: name for name, label in MODELS.items()}[e3.selectbox("Model the phones train", list(MODELS.values()),
                                                                      key="fl.model")]
cfg = common.config()
run_cfg = common.attempt(with_overrides, cfg, [f"model.name={model}", "defence.dp.level=example", "leak.round=0"])
if run_cfg is None:
    st.stop()
if run_cfg.defence.dp.noise_multiplier > 0 and run_cfg.defence.dp.clip == 1.0:
    run_cfg = replace(run_cfg, defence=replace(run_cfg.defence, dp=replace(run_cfg.defence.dp, clip=10.0)))
    st.caption("DP-SGD clips each image's gradient to C = 10 here (C = 1 halves what the ConvNet learns).")

job: FederationJob = st.session_state.get(JOB)
if job is None or job.config != run_cfg:
    if job is not None:
        job.close()
    job = recorded(run_cfg)
    st.session_state[JOB] = job
b1, b2, _ = st.columns([1, 1, 3])
if b1.button("Run this federation", type="primary", icon=":material/play_arrow:", key="fl.run",
             disabled=job is not None and job.running):
    job = st.session_state[JOB] = FederationJob.start(run_cfg)
if b2.button("Stop", icon=":material/stop:", disabled=job is None or not job.running):
    job.stop()
if job is None:
    st.info("Press **Run this federation**: the curves grow round by round (about 2 s a round of 10 phones here).")
    st.stop()


# --- 2. what happened -----------------------------------------------------------------------------
def results() -> None:
    """Everything drawn from the job's rounds so far."""
    if job.error:
        st.error(job.error, icon=":material/error:")
    history = job.history()
    if history is None or not history.records:
        st.caption("Round 1 is training ...")
        return
    records, last = history.records, history.records[-1]
    what = "recorded earlier (press Run to run it live)" if job.recorded else job_state()
    st.caption(f"{len(records)} of {job.config.federation.rounds} rounds, {what}.")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Test accuracy", f"{last.accuracy:.1%}", f"{last.accuracy - history.initial_accuracy:+.1%} since round 0")
    m2.metric("Virtual time", f"{last.virtual_seconds:.0f} s", help="The phones' clock, not this machine's.")
    m3.metric("Epsilon spent", "∞ (no DP)" if last.epsilon is None else f"{last.epsilon:.3g}",
              help=f"The worst phone's (epsilon, delta = {job.config.defence.dp.delta:g}) over the rounds it took "
                   "part in: Opacus's RDP accountant.")
    m4.metric("Uploaded", f"{sum(r.bytes_up for r in records) / 1e6:.1f} MB")
    rows = [{"round": 0, "virtual seconds": 0.0, "test accuracy": history.initial_accuracy}]
    rows += [{"round": r.round, "virtual seconds": r.virtual_seconds, "test accuracy": r.accuracy} for r in records]
    frame = pd.DataFrame(rows)
    g1, g2 = st.columns(2)
    with g1:
        draw.curve(frame, "round", "test accuracy", "test accuracy")
    with g2:
        draw.curve(frame, "virtual seconds", "test accuracy", "test accuracy")
    g3, g4 = st.columns(2)
    with g3:
        draw.bars({f"{r.round}": r.bytes_up / 1e6 for r in records}, "round", "MB uploaded", height=180)
    with g4:
        if last.epsilon is not None:
            draw.curve(pd.DataFrame([{"round": r.round, "epsilon": r.epsilon} for r in records]), "round", "epsilon",
                       "epsilon spent so far", height=180)
        else:
            st.caption("No DP noise: nothing bounds what a round may reveal (epsilon is infinite).")
    aborted = [r for r in records if r.aborted]
    if aborted:
        st.warning(f"{len(aborted)} round(s) applied no update: round {aborted[0].round}: {aborted[0].aborted}",
                   icon=":material/block:")


def job_state() -> str:
    return "running" if job.running else "stopped" if job.stopped else "finished"


live([job], results, key="fl_live")

# --- 3. one round, phone by phone ---------------------------------------------------------------------
history = job.history()
if job.running or history is None or not history.records:
    st.stop()
st.subheader("2. One round, phone by phone", anchor=False)
records = history.records
pick = st.slider("Round", 1, len(records), min(5, len(records)), key="fl.round") if len(records) > 1 else 1
record = records[pick - 1]
rows = []
for t in sorted(record.timings, key=lambda t: t.upload):
    name = f"phone {t.client}"
    if t.status == "dropped":
        rows.append({"client": name, "phase": "dropped", "start": 0.0, "end": record.round_seconds, "status": t.status})
        continue
    for phase, start, end in (("download", 0.0, t.download), ("compute", t.download, t.compute),
                              ("upload", t.compute, t.upload)):
        rows.append({"client": name, "phase": phase, "start": start, "end": end, "status": t.status})
if rows:
    draw.timeline(pd.DataFrame(rows), job.config.federation.deadline)
st.caption(f"Round {record.round}: {record.sampled} phones sampled, {record.replied} replied in time, "
           f"{record.straggled} too slow (faded: their update missed the red deadline), {record.dropped} dropped "
           f"out (grey). The round took {record.round_seconds:.1f} virtual seconds.")
sampled = sum(r.sampled for r in records)
st.caption(f"Over the whole run: {sum(r.dropped for r in records)} of {sampled} sampled phones dropped out and "
           f"{sum(r.straggled for r in records)} missed the deadline.")

# --- 4. the server attacks a round -------------------------------------------------------------------------
st.subheader("3. The server attacks this round", anchor=False)
secure = job.config.defence.secure_aggregation
if not record.clients:
    st.info("No update arrived in this round: there is nothing to attack. Pick another round.")
    st.stop()
targets = {} if secure else {f"phone {k}'s update": k for k in record.clients}
targets[f"the aggregate of all {len(record.clients)} phones"] = -1
target = targets[st.selectbox("Invert", list(targets), key="fl.target")]
attack_cfg = with_overrides(job.config, [f"leak.round={record.round}", f"leak.client={target}",
                                         "attack.init=class_mean", "attack.time_limit=30"])
st.markdown(
    f"The server kept what it saw in round {record.round}: the weights it sent and "
    + ("only the **secure sum** of the updates (secure aggregation hid each phone's)." if secure
       else "every phone's new weights. Each phone's update is a FedAvg message: its images, after "
            f"{job.config.federation.local_epochs} local epochs of SGD.")
)
a1, a2 = st.columns(2)
for column, page, label in ((a1, "dlg", "Attack it with DLG"), (a2, "prior", "Attack it with the VAE prior")):
    if column.button(label, icon=":material/target:", key=f"fl.attack.{page}"):
        common.set_config(attack_cfg)
        st.switch_page(common.PAGE[page].path, query_params=common.encode(attack_cfg))
st.caption("Link to this round's leak: `" + common.share_query(attack_cfg) + "` (replaying the run up to that round "
           "takes a few seconds).")

st.markdown(
    "**What to notice.** *Non-IID* data (Dirichlet 0.1) slows the accuracy curve: each phone pulls towards its own "
    "digits. A *tight deadline* drops the slow phones every round, so the model only ever learns from the fast ones "
    "(and their data). *DP noise* costs accuracy and buys a finite epsilon that grows with every round a phone takes "
    "part in. *Secure aggregation* costs bytes (keys and shares for every other phone) and hides each phone's "
    "update, yet the server still holds the round's aggregate, and that is what it attacks."
)
common.try_this(
    "Drag *Dropout* to 0.3 and *Deadline* to 1 s, then **Run**: in the timeline the slow phones fade out, and the "
    "accuracy curve against virtual time changes.",
    "Pick *Dirichlet 0.1* and run again: same rounds, slower learning.",
    "Set 400 phones (10 digits each) and 1 local epoch, run, then attack a phone's update in round 1 and in round 10 "
    "on the DLG page: the same attack, a different model, a different leak.",
)
common.page_next("poisoned", "poisoned clients: the phones attack the model instead")
