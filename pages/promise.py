"""What FL promises: FedSGD and FedAvg side by side; what leaves a client, what the server sees."""

import dataclasses
import math

import pandas as pd
import streamlit as st

from pages import common, draw

common.header(
    "promise",
    "what a phone sends in federated learning under its two classic protocols, and what the server "
    "ends up with once it averages many phones. Move the sliders: the charts follow at once.",
)
cfg = common.config()

left, right = st.columns(2)
with left.container(border=True):
    st.markdown("**FedSGD**: each phone sends one gradient")
    st.latex(r"g_k = \frac{1}{n_k} \sum_{i \in \text{phone } k} \nabla_W\, \ell\big(F(x_i, W), y_i\big)")
    st.caption("The phone runs its images through the model once and sends how the weights should change.")
with right.container(border=True):
    st.markdown("**FedAvg**: each phone trains a little, then sends the change")
    st.latex(r"\Delta_k = W - W_k^{(E)}, \qquad W_k^{(e+1)} = W_k^{(e)} - \eta\, g_k^{(e)}")
    st.caption("The phone takes E steps of training (each a gradient step on its own images, learning rate "
               "eta) and sends how far its weights moved.")
st.latex(r"\text{The server averages: } \bar g = \sum_k \tfrac{n_k}{n}\, g_k \quad\text{or}\quad "
         r"\bar\Delta = \sum_k \tfrac{n_k}{n}\, \Delta_k")

c1, c2, c3, c4 = st.columns(4)
with c1:
    common.setting(st.slider, "Clients (phones)", "data.clients", 1, 8)
with c2:
    common.setting(st.slider, "Images per phone", "data.batch_size", 1, 16)
with c3:
    common.setting(st.slider, "FedAvg local steps E", "leak.local_steps", 1, 10)
with c4:
    common.setting(st.select_slider, "FedAvg learning rate", "leak.local_lr", options=[0.01, 0.05, 0.1, 0.2, 0.5])
cfg = common.config()

sgd = common.attempt(common.setup_for, dataclasses.replace(cfg, leak=dataclasses.replace(cfg.leak, protocol="fedsgd", round=0)),
                     common.uploads())
avg = common.attempt(common.setup_for, dataclasses.replace(cfg, leak=dataclasses.replace(cfg.leak, protocol="fedavg", round=0)),
                     common.uploads())
if sgd is None or avg is None:
    st.stop()

pixels = math.prod(sgd.leak.image_shape)
m = st.columns(4)
m[0].metric("Images on each phone", f"{cfg.data.batch_size}", help="never sent")
m[1].metric("Pixels on each phone", f"{cfg.data.batch_size * pixels:,}", help="never sent")
m[2].metric("Numbers each phone sends", f"{sgd.leak.observed:,}")
m[3].metric("Images behind the server's average", f"{sgd.leak.num_images}")

st.markdown("#### What the server sees, per layer")
rows = [{"layer": name, "protocol": label, "norm": value}
        for label, s in (("FedSGD: mean gradient", sgd), ("FedAvg: mean weight change", avg))
        for name, value in s.leak.layer_norms().items()]
draw.grouped_bars(pd.DataFrame(rows), "layer", "norm", "protocol", "norm of the averaged update", log=True)
st.caption(f"With E = 1 and one full batch, FedAvg's change is exactly the learning rate times FedSGD's gradient; "
           f"more local steps mix the images in more steps, but the change is still computed from them.")


st.markdown("#### What leaves each phone, and the average the server keeps (FedSGD)")
shown = sgd.clients[:4]
cols = st.columns(len(shown) + 1)
for k, (col, batch) in enumerate(zip(cols, shown)):
    with col:
        st.caption(f"Phone {k + 1}: {len(batch)} image{'s' if len(batch) > 1 else ''}")
        draw.strip(batch.images, common.class_names(sgd, batch.labels), size=42, limit=8)
with cols[-1]:
    st.caption("The server")
    n = sgd.leak.num_images
    st.markdown(f"one average of **{sgd.leak.observed:,}** numbers from **{n}** image{'s' if n > 1 else ''}")
messages = common.attempt(common.client_messages, sgd)
if messages:
    rows = [{"layer": name, "who": who, "norm": value}
            for who, norms in messages.items() for name, value in norms.items()]
    draw.grouped_bars(pd.DataFrame(rows), "layer", "norm", "who", "norm of the update", log=True)
    st.caption("Each phone's gradient, and their average: smaller, because the phones' images pull in "
               "different directions, but still made of every one of their images.")

a, b = st.columns(2)
a.info("**The promise:** *your data never leaves your device.* True: not one pixel is sent.", icon=":material/lock:")
b.warning("**What follows:** every number the phone sends is computed from its images. The next pages read "
          "the labels straight off this update, then rebuild the images themselves.", icon=":material/lock_open:")

common.try_this(
    "Set **Clients** to 4 and **Images per phone** to 8: 32 images, and the server still gets one update of the "
    "same size.",
    "Set both back to 1: the server now holds the gradient of a single photo.",
    "Raise **FedAvg local steps**: the weight change grows, but it is still made of the same images.",
    "Note the *Numbers each phone sends*: thousands of numbers, for a 28x28 image of 784 pixels.",
)
common.page_next("leak", "Pick a batch and see what its update gives away")
