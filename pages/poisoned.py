"""Poisoned clients: a few phones send updates built to break or bend the model; robust aggregators answer."""

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from engine.config import with_overrides
from engine.federation.compare import RunOutcome, compare, trigger_images
from pages import common, draw
from pages.poisoned_run import SIZE, key_of, page_overrides, size_differs

RECORDING = Path(__file__).resolve().parents[1] / "assets" / "precomputed" / "poisoned.json"
ATTACKS = {"none": "nobody attacks", "sign_flip": "sign flip (sends -10 x its update)", "gaussian": "Gaussian noise",
           "alie": "A little is enough (ALIE)", "ipm": "inner-product manipulation (IPM)",
           "label_flip": "label flip (7 -> 1)", "backdoor": "backdoor (a white square -> 1)"}
STRATEGIES = {"fedavg": "FedAvg (plain mean)", "median": "median", "trimmed_mean": "trimmed mean",
              "krum": "Krum", "multikrum": "MultiKrum", "bulyan": "Bulyan", "norm_clip": "norm clipping",
              "centered_clip": "centered clipping", "fltrust": "FLTrust"}
RUNS = "poisoned.runs"  # session key: {config key: {label: RunOutcome}}


def shade(value, low: float, high: float) -> str:
    """A cell's background: red at `low`, green at `high` (no colour for a missing value)."""
    if value is None or value != value:
        return ""
    t = min(max((value - low) / ((high - low) or 1.0), 0.0), 1.0)
    return f"background-color: rgba({int(220 * (1 - t))}, {int(170 * t + 40)}, 60, 0.45)"


@st.cache_data(show_spinner=False)
def recording() -> dict:
    return json.loads(RECORDING.read_text()) if RECORDING.exists() else {"runs": {}, "table": {}}


common.header(
    "poisoned",
    "15 phones train a digit classifier; 20% of them are attackers. The clean, the attacked and the defended run "
    "side by side on the same seed, which phones each aggregator kept, and a backdoor that hides in a white square.",
)
st.markdown(
    "Gradient inversion is a curious *server* reading the phones' updates. The reverse threat: a few *phones* "
    "send updates crafted to break the model (**model poisoning**) or to teach it a secret rule (**data poisoning**, "
    "a **backdoor**). The server cannot look at their data; all it can do is aggregate more carefully than a mean."
)

if size_differs(common.config()):  # the aggregators' rules (Krum n > 2f + 2 ...) are checked on this size
    common.update(**SIZE)
# --- 1. the attack and the defence ----------------------------------------------------------------------
st.subheader("1. Attackers and aggregator", anchor=False)
c1, c2, c3 = st.columns(3)
common.setting(c1.selectbox, "What the attackers do", "federation.attack", list(ATTACKS), format_func=ATTACKS.get)
common.setting(c2.select_slider, "Share of phones that attack", "federation.attackers", [0.1, 0.2, 0.3, 0.4],
               format_func=lambda f: f"{f:.0%}")
common.setting(c3.selectbox, "How the server aggregates", "federation.strategy", list(STRATEGIES),
               format_func=STRATEGIES.get)
d1, d2 = st.columns(2)
common.setting(d1.toggle, "Non-IID: Dirichlet 0.1 (most phones see 1-2 digits)", "data.split",
               show=lambda s: s == "dirichlet", read=lambda on: "dirichlet" if on else "iid")
common.setting(d2.toggle, "Secure aggregation", "defence.secure_aggregation",
               help="The server learns only the sum of the updates, so it cannot tell whom to drop: robust "
                    "aggregation is refused with it. Research combines them with extra machinery: robust rules "
                    "computed on secret shares by two non-colluding servers, or clients that prove in zero "
                    "knowledge that their update's norm is bounded.")
cfg = common.config()
run_cfg = common.attempt(with_overrides, cfg, page_overrides(cfg))
if run_cfg is None:
    st.stop()
f = run_cfg.federation
if f.strategy == "fedavg" and f.attack != "none":
    st.caption("The defended run below uses FedAvg too: pick an aggregator to see one answer the attack.")

key = key_of(run_cfg)
runs: dict = st.session_state.setdefault(RUNS, {})
if key not in runs and key in recording()["runs"]:
    runs[key] = {label: RunOutcome.from_dict(d) for label, d in recording()["runs"][key].items()}
b1, b2 = st.columns([1, 3])
if b1.button("Run clean, attacked, defended", type="primary", icon=":material/play_arrow:"):
    done: dict = {}
    with st.status("Three runs of 4 rounds (a few seconds each) ...") as status:
        for label, outcome in common.attempt(lambda: list(compare(run_cfg))) or []:
            done[label] = outcome
        status.update(label="Done" if len(done) == 3 else "Stopped", state="complete")
    if len(done) == 3:
        runs[key] = done
if key not in runs:
    st.info("Press **Run clean, attacked, defended**: three small federated runs on the same seed.")
    st.stop()
result: dict[str, RunOutcome] = runs[key]
if key in recording()["runs"]:
    b2.caption("Recorded earlier with these exact settings (the button reruns it live).")

# --- 2. the curves ---------------------------------------------------------------------------------------
st.subheader("2. Test accuracy, round by round", anchor=False)
names = {"clean": "clean (FedAvg, no attacker)", "attacked": f"attacked (FedAvg, {ATTACKS[f.attack]})",
         "defended": f"defended ({STRATEGIES[f.strategy]})"}
m = st.columns(3)
for col, (label, outcome) in zip(m, result.items()):
    col.metric(names[label], f"{outcome.accuracy[-1]:.1%}",
               None if label == "clean" else f"{outcome.accuracy[-1] - result['clean'].accuracy[-1]:+.1%} vs clean")
frame = pd.DataFrame([{"round": r, "test accuracy": a, "run": names[label]}
                      for label, o in result.items() for r, a in enumerate(o.accuracy)])
draw.curve(frame, "round", "test accuracy", "test accuracy", color="run", rule=0.1, ordinal=True)
st.caption("Dashed: chance (1 in 10).")
if f.attack in ("backdoor", "label_flip"):
    what = ("triggered test digits the model calls 1" if f.attack == "backdoor"
            else "test 7s the model calls 1")
    if f.attack == "backdoor":
        st.caption("Here the server starts from a model it pretrained on its own public digits (3 epochs: round 0 "
                   "of the curve), as model replacement assumes a model that has learnt. The backdoor's phones train "
                   "honestly in round 1; from round 2 half of their images carry the white square and the label 1, "
                   "and they scale their update by n / f = 5 so that it survives the averaging. The clean accuracy "
                   "hardly moves, so nobody watching it would notice. Norm clipping cuts every update back to the "
                   "round's median norm, and the boost with it.")
    rows = [{"round": r + 1, "attack success": s, "run": names[label]} for label, o in result.items()
            if label != "clean" for r, s in enumerate(o.attack_success) if s is not None]
    if rows:
        draw.curve(pd.DataFrame(rows), "round", "attack success", "attack success", color="run", ordinal=True)
        st.caption(f"Attack success: the share of {what}.")
bent = {names[label]: [None if c is None else float(c) for c in o.honest_cosine]
        for label, o in result.items() if label != "clean" and any(c is not None for c in o.honest_cosine)}
if bent:
    st.markdown("**Did each round's step follow the honest phones?**")
    table = pd.DataFrame(bent, index=[f"round {r + 1}" for r in range(len(next(iter(bent.values()))))]).T
    st.dataframe(table.style.format("{:+.2f}", na_rep="-").map(lambda v: shade(v, -1.0, 1.0)))
    st.caption("Cosine of each round's step with the step the honest phones alone would have given: +1 = the "
               "attackers moved nothing, 0 = a right angle, -1 = backwards. Only the lab can measure this: the "
               "server does not know who is honest.")

# --- 3. who the aggregator kept ---------------------------------------------------------------------------
defended = result["defended"]
st.subheader("3. Which phones the aggregator kept", anchor=False)
if not any(defended.kept):
    st.caption("FedAvg keeps everyone at full weight: that is why one attacker is enough to move it.")
else:
    bad = set(defended.attackers)
    clients = sorted({c for k in defended.kept for c in k})
    grid = pd.DataFrame({f"round {r + 1}": [k.get(c) for c in clients] for r, k in enumerate(defended.kept)},
                        index=[f"phone {c}{' (attacker)' if c in bad else ''}" for c in clients])
    top = float(grid.max().max()) or 1.0  # a median's shares sum to 1 a round: colour against the largest
    st.dataframe(grid.style.format("{:.2f}", na_rep="-").map(lambda v: shade(v, 0.0, top)),
                 height=min(36 * len(grid) + 40, 600))
    st.caption("Weight each phone's update got (0 = dropped). Krum and MultiKrum: chosen or not; median, trimmed "
               "mean, Bulyan: share of coordinates where its value counted; clipping: its scale; FLTrust: its trust.")
if defended.trigger is not None or result["attacked"].trigger is not None:
    t = result["attacked"].trigger or defended.trigger
    st.markdown("**The backdoor, on one test digit (the attacked run's final model)**")
    draw.strip(trigger_images(run_cfg, t.index),
               [f"as is: says {t.clean_prediction} ({t.clean_confidence:.0%})",
                f"with the trigger: says {t.triggered_prediction} ({t.triggered_confidence:.0%})"])

# --- 4. no aggregator wins every column ---------------------------------------------------------------------
table = recording().get("table", {})
if table:
    st.subheader("4. Every aggregator against every attack", anchor=False)
    grid = pd.DataFrame(table["accuracy"]).rename(index=STRATEGIES)
    st.dataframe(grid.style.format("{:.0%}", na_rep="-").map(lambda v: shade(v, 0.1, float(grid.max().max()))))
    st.caption(f"Test accuracy after the run, recorded: {table['setting']}.")
    if "backdoor" in table.get("success", {}):
        said = ", ".join(f"{STRATEGIES.get(s, s)} {v:.0%}" for s, v in table["success"]["backdoor"].items())
        st.caption(f"The backdoor column's clean accuracy hides it; its success on triggered digits: {said}.")

st.markdown(
    "**What to notice.** A mean has no defence: 20% of phones sending -10x their update drag FedAvg to chance. "
    "MultiKrum drops the updates far from the crowd and recovers. But every robust rule assumes what an attack "
    "looks like: ALIE sends the honest mean shifted by less than one honest standard deviation, so the "
    "**median** takes the attackers' values as often as anyone's (see the grid) and no rule can drop them. Here "
    "that bends each round only a little (the cosine curve): ALIE was built against distributed SGD, where every "
    "one of thousands of gradient steps is shifted; phones that train a whole epoch agree closely, and a shift "
    "of a fraction of their spread costs a few points at most. IPM with a small epsilon sends identical "
    "updates that **Krum** finds the most central of all, and the model stops learning. A **backdoor** is "
    "quieter still: the clean accuracy hardly moves, so nobody watching it notices, while a white square turns "
    "almost any digit into a 1; norm clipping and FLTrust take away the boost it needs. With non-IID data the "
    "honest phones disagree, so robust rules drop honest phones too and cost accuracy with nobody attacking."
)
common.try_this(
    "Sign flip, 20%: FedAvg collapses; switch the aggregator to **MultiKrum** and rerun: the curve comes back.",
    "Now pick **ALIE** and the **median**: in the grid the attackers are kept as often as the honest phones, "
    "and the cosine curve shows how far they bend each round.",
    "**IPM** against **Krum**: Krum picks an attacker's update (see the grid) and the model stops learning.",
    "Turn on **Non-IID** with nobody attacking and Krum: count the honest phones it drops.",
    "**Backdoor** with FedAvg, then **norm clipping**: the trigger's success falls from 100% to about 2%; the "
    "clean accuracy hardly moved in either.",
    "Turn on **Secure aggregation** with a robust aggregator: the server can no longer see whom to drop.",
)
common.page_next("dlg", "how the server inverts one update")
