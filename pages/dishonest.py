"""A dishonest server: a model made to leak (imprint, trap weights), through secure aggregation, and what a phone can check."""

import pandas as pd
import streamlit as st

from engine.config import Config, from_json, to_json, with_overrides
from engine.models import create_model
from engine.server import (
    CHECKS, client_verdicts, dishonest_round, expected_exact, front_parameters, layer_sizes, row_pictures,
    row_thresholds,
)
from pages import common, draw

BINS = (64, 128, 256, 512, 1024, 2048, 4096)
SCALES = (0.9, 1.0, 1.1, 1.2, 1.3, 1.5, 1.7, 2.0)
SIGMAS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)
DEFAULTS = {"dis.server": "imprint", "dis.bins": 1024, "dis.scale": 1.5, "dis.vet": False, "dis.disguise": False,
            "dis.sigma": 0.0, "dis.seed": 4}  # widget key -> default (batch 4: a few collisions to see)
SECURE = "dis_secure_shown"  # session key: the secure round was asked for
SMALL = 42  # pixels per image in the 64-image grids
WORDS = {"architecture": "an extra or oversized layer", "identical_rows": "many rows the same measurement",
         "sorted_biases": "biases in order, like quantiles", "rarely_active": "units that almost never fire on my images"}

common.header(
    "dishonest",
    "what happens when the server writes the model the phones train: one step, no optimisation, and about 60 of "
    "64 private images come back **exactly**, even through secure aggregation. Then what a phone can check, how a "
    "server that knows the checks slips past them, and the one defence that does not need to spot the trick.",
)
for key, default in DEFAULTS.items():
    st.session_state.setdefault(key, default)


def round_config(server: str, bins: int, scale: float, clients: int = 1, secure: bool = False,
                 disguise: bool = False, sigma: float = 0.0) -> Config:
    """The experiment of one round with a dishonest server, as `python -m engine run` would take it."""
    return with_overrides(Config(), [f"seed={st.session_state['dis.seed']}",
        f"leak.server={server}", f"attack.name={server}", f"leak.bins={bins}", f"leak.trap_scale={scale}",
        f"data.clients={clients}", f"data.batch_size={64 // clients}", f"leak.disguise={str(disguise).lower()}",
        f"defence.secure_aggregation={str(secure).lower()}", f"defence.dp.noise_multiplier={sigma}",
    ])


@st.cache_resource(max_entries=12, show_spinner=False)
def run_round(config_json: str):
    """The round, attacked and scored (engine.server.dishonest_round), once per setting."""
    return dishonest_round(from_json(config_json))


@st.cache_resource(max_entries=12, show_spinner=False)
def verdicts(config_json: str):
    return client_verdicts(run_round(config_json).setup)


def attempt_round(cfg: Config):
    with st.spinner("Leaking one round and reading it off..."):
        return common.attempt(run_round, to_json(cfg))


def show_round(shown, label: str) -> None:
    """The score, then the 64 private images over what the server read off, 16 a row."""
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Exact images (above 60 dB)", f"{shown.exact_count} of {len(shown.exact)}")
    c2.metric("Theory B(1 - 1/k)^(B-1)", "-" if shown.expected is None else f"{shown.expected:.1f}")
    c3.metric("Rows that held an image", shown.rows_used)
    c4.metric("Parameters the server added", f"{front_parameters(shown.setup.model):,}")
    caption = ["✓" if e else ("✗" if s else "–") for e, s in zip(shown.exact, shown.shared)]
    result = shown.result
    st.caption(f"{label}. Top of each pair: the private images; below: what the server read off the update. "
               "**✓** exact: the very image; **✗** a collision: it fell in a bin (or row) with another image, so "
               "both came back as one mixture (or a grey square where nothing was left); **–** alone, but its "
               "signal was too weak to keep every digit.")
    for start in range(0, len(caption), 16):
        draw.strip(result.originals[start : start + 16], size=SMALL, limit=16)
        draw.strip(result.reconstruction[start : start + 16], caption[start : start + 16], size=SMALL, limit=16)


# --- 1. the model the server ships --------------------------------------------------------------------
st.subheader("1. The model the server ships", anchor=False)
st.markdown("In federated learning the **server** decides the model every phone trains. An honest server sends "
            "the promised network. A dishonest one puts a layer in front of it, built so that the update gives "
            "the images away: ")
st.markdown("- **Imprint** (Fowl et al. 2022): k rows that all measure the same thing (the image's mean brightness), "
            "each switched on above its own threshold, the thresholds at the brightness quantiles of public images. "
            "Two neighbouring rows differ by the images in one *bin*; an image alone in its bin comes back exactly.\n"
            "- **Trap weights** (Boenisch et al. 2023): random rows, half their weights negative and scaled by s, so "
            "that few images switch each row on; a row that exactly one image switched on gives it back.")
k1, k2, k3, k4 = st.columns([1, 1.4, 1.4, 0.8])
server = k1.radio("The server's layer", ("imprint", "trap"), key="dis.server",
                  format_func={"imprint": "imprint", "trap": "trap weights"}.get)
bins = k2.select_slider("Rows (bins) k", BINS, key="dis.bins")
scale = k3.select_slider("Trap scale s", SCALES, key="dis.scale", disabled=server != "trap")
k4.number_input("Batch", 0, 99, key="dis.seed", help="Which 64 test digits the phones hold (the seed).")
cfg = common.attempt(round_config, server, bins, scale)
if cfg is None:
    st.stop()
shown = attempt_round(cfg)
if shown is None:
    st.stop()
honest = create_model(cfg.model.name, seed=cfg.seed)
left, right = st.columns(2)
with left:
    st.markdown(f"**Promised: {common.MODEL_NAMES[cfg.model.name]}**, {sum(p.numel() for p in honest.parameters()):,} "
                "parameters")
    st.dataframe(pd.DataFrame(layer_sizes(honest), columns=["parameter", "shape", "numbers"]), hide_index=True,
                 height=180)
    st.caption("Its first layer's filters (mid grey 0, light positive, dark negative): all different.")
    pictures, rows = row_pictures(honest, 8)
    draw.strip(pictures, [f"filter {i}" for i in rows], size=56, limit=8)
with right:
    st.markdown(f"**Shipped: {server} layer + {common.MODEL_NAMES[cfg.model.name]}**, "
                f"{sum(p.numel() for p in shown.setup.model.parameters()):,} parameters")
    st.dataframe(pd.DataFrame(layer_sizes(shown.setup.model), columns=["parameter", "shape", "numbers"]),
                 hide_index=True, height=180)
    st.caption("Its first layer's rows as pictures: " + ("every row the same flat measurement (mean brightness), "
               "switched on above its own threshold t." if server == "imprint"
               else "random, half negative: each row a trap few images fall into."))
    pictures, rows = row_pictures(shown.setup.model, 8)
    edges = row_thresholds(shown.setup.model, rows)
    draw.strip(pictures, [f"row {i}" + ("" if edges is None or i == 0 else f": t {edges[j]:.3f}")
                          for j, i in enumerate(rows)], size=56, limit=8)

# --- 2. one phone, one step ----------------------------------------------------------------------------
st.subheader("2. One phone, 64 images, one step", anchor=False)
st.markdown("The phone trains one step on 64 of its images and sends the gradient, as FedSGD asks. The server "
            "divides: row gradient by bias gradient (bin by bin for the imprint). No optimisation, no guessing.")
show_round(shown, f"One phone of 64 MNIST digits, {server} layer of {bins} rows")
if server == "imprint":
    theory = pd.DataFrame([{"bins k": k, "exact images": expected_exact(64, k), "series": "theory, B = 64"}
                           for k in BINS + (8192,)])
    point = pd.DataFrame([{"bins k": bins, "exact images": shown.exact_count, "series": "this run"}])
    st.markdown("**The theory.** An image is exact when no other of the B images falls in its bin: probability "
                "(1 - 1/k)^(B - 1) with k equally likely bins, so B (1 - 1/k)^(B - 1) are expected. More bins, "
                "fewer collisions, and a bigger layer.")
    draw.curve(pd.concat([theory, point]), "bins k", "exact images", "exact images of 64", color="series",
               ordinal=True)

# --- 3. eight phones behind secure aggregation -----------------------------------------------------------
st.subheader("3. Eight phones behind secure aggregation", anchor=False)
st.markdown("Secure aggregation hands the server only the **sum** of the phones' updates, never one phone's. "
            "That stops nothing here: the bins do not care whose image fell in them. One layer of 2048 bins "
            "serves all 8 phones of 8 images.")
if st.button("Run the round: 8 phones x 8 images, secure aggregation", key="dis.secure.go", type="primary",
             icon=":material/lock:"):
    st.session_state[SECURE] = True
if st.session_state.get(SECURE):
    secure_cfg = round_config("imprint", 2048, scale, clients=8, secure=True)
    secured = attempt_round(secure_cfg)
    if secured is not None:
        show_round(secured, "8 phones x 8 digits, summed by secure aggregation (Bonawitz et al. 2017), 2048 bins")
        st.success(f"**{secured.exact_count} of 64** private images came back exactly from a sum the server could "
                   "not take apart.", icon=":material/lock_open:")

# --- 4. what a phone can check ---------------------------------------------------------------------------
st.subheader("4. What a phone can check", anchor=False)
st.markdown("Before it trains, a phone can hold the model to the architecture it was promised and look at the "
            "weights: " + "; ".join(f"*{WORDS[c]}*" for c in CHECKS) + ".")
vet = st.toggle("Phones vet the model before training", key="dis.vet")
if vet:
    v = common.attempt(verdicts, to_json(cfg))
    if v is not None:
        rows = []
        for check in CHECKS:
            found = [f for f in v[0].findings if f.check == check]
            rows.append({"check": WORDS[check], "verdict": "flagged" if found else "passed",
                         "what the phone saw": "; ".join(f"{f.where}: {f.detail}" for f in found) or "-"})
        st.dataframe(pd.DataFrame(rows), hide_index=True)
        if v[0].refused:
            st.error("**The phone refuses the model.** It sends nothing this round: nothing leaks.",
                     icon=":material/block:")
        else:
            st.success("The phone accepts the model and trains.", icon=":material/check:")
    st.markdown("**An adaptive server** knows these checks. It scales each row differently, shuffles them, "
                "hides noise in the pixels every public image leaves black (so each row still measures the "
                "brightness), and adds always-on decoy units. It announces its input layer, so the "
                "architecture matches the promise.")
    if st.toggle("The server disguises its imprint", key="dis.disguise", disabled=server != "imprint"):
        hidden_cfg = common.attempt(round_config, "imprint", bins, scale, disguise=True)
        hidden = None if hidden_cfg is None else attempt_round(hidden_cfg)
        hv = None if hidden is None else common.attempt(verdicts, to_json(hidden_cfg))
        if hidden is not None and hv is not None:
            state = "refuses" if hv[0].refused else "accepts"
            failed = sorted({WORDS[f.check] for f in hv[0].findings})
            verdict = f"it flags {', '.join(failed)}" if failed else f"all {len(CHECKS)} checks pass"
            st.warning(f"The phone runs the same checks and **{state}** the model: {verdict}. The round goes "
                       f"ahead and **{hidden.exact_count} of 64** images come back exactly.",
                       icon=":material/visibility_off:")
            draw.strip(row_pictures(hidden.setup.model, 8)[0], size=56, limit=8)
            st.caption("The disguised rows: no two alike any more, yet each still measures the mean brightness of "
                       "a digit.")

# --- 5. local DP ----------------------------------------------------------------------------------------------
st.subheader("5. Noise the phone adds itself", anchor=False)
st.markdown("Checks only catch tricks someone thought of. **Local differential privacy** does not need to spot "
            "the trick: each phone clips every image's gradient and adds Gaussian noise (DP-SGD) before "
            "anything leaves it. The imprint's division then divides noise.")
sigma = st.select_slider("Noise multiplier sigma (clip C = 1)", SIGMAS, key="dis.sigma",
                         format_func=lambda s: "off" if s == 0 else f"{s:g}")
noisy_cfg = common.attempt(round_config, server, bins, scale, sigma=sigma)
noisy = None if noisy_cfg is None else attempt_round(noisy_cfg)
if noisy is not None:
    n1, n2 = st.columns(2)
    n1.metric("Exact images under noise", f"{noisy.exact_count} of 64")
    n2.metric("Mean PSNR", f"{noisy.result.evaluation.psnr:.1f} dB")
    draw.strip(noisy.result.reconstruction[:16], size=SMALL, limit=16)
    st.caption("The first 16 images the server read off, under this noise.")

common.try_this(
    "Set **k = 64** bins: as many bins as images. Count the collisions, then compare with the theory curve.",
    "Switch to **trap weights** and move the scale s: too low and every row fires for many images, too high and "
    "for none. Which s does best?",
    "Turn on **vetting**, then the **disguise**: the same checks, the opposite verdict.",
    "Move the **noise** one notch at a time: at which sigma is not one image exact any more?",
)
common.page_next("experiment", "run it from the command line: python -m engine run --set leak.server=imprint ...")
