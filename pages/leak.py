"""Pick a batch and leak it: images, clients and protocol in; the server's view and its labels out."""

from collections import Counter

import pandas as pd
import streamlit as st

from engine.data import DATASETS, UploadError, image_from_bytes
from engine.data.imageset import CLASS_NAMES
from engine.experiment import model_input_shape
from engine.labels import estimate_counts, last_layer, recover_labels
from engine.metrics import label_accuracy
from pages import common, draw

NAMES = {"mnist": "MNIST digits", "fashion_mnist": "Fashion-MNIST clothes", "lfw_faces": "Faces (LFW)",
         "cifar10": "CIFAR-10 (needs a local copy)"}
SPLITS = {"iid": "IID (shuffled evenly)", "dirichlet": "Dirichlet (skewed classes)", "shards": "Label shards"}
MAX_UPLOADS = 8

common.header(
    "leak",
    "the images some clients hold, the one update the server receives from them, and the labels that "
    "can be read straight off that update, before any attack.",
)
cfg = common.config()


def classes_shown(chosen):
    return [] if chosen is None else [CLASS_NAMES[cfg.data.dataset][c] for c in chosen]


def classes_read(names):
    table = CLASS_NAMES[common.config().data.dataset]
    return tuple(sorted(table.index(n) for n in names)) or None


def take_uploads(files) -> None:
    """Decode the uploaded files; a bad one is named with the engine's message, the good ones kept."""
    channels, size = model_input_shape(cfg.data.dataset)
    names = CLASS_NAMES[cfg.data.dataset]
    images, labels, token = [], [], []
    for i, file in enumerate(files[:MAX_UPLOADS]):
        try:
            image = image_from_bytes(file.getvalue(), channels, size)
        except UploadError as err:
            st.error(f"**{file.name}**: {err}", icon=":material/broken_image:")
            continue
        label = st.selectbox(f"Label of {file.name}", names, key=f"leak.upload.label.{file.file_id}")
        images.append(image)
        labels.append(names.index(label))
        token.append((file.file_id, label))
    if len(files) > MAX_UPLOADS:
        st.warning(f"Only the first {MAX_UPLOADS} images are used.")
    if not images:
        return
    held = st.session_state.get("uploads_token")
    if held != (cfg.data.dataset, tuple(token)):
        st.session_state["uploads_token"] = (cfg.data.dataset, tuple(token))
        st.session_state[common.UPLOADS] = common.uploaded_set(cfg.data.dataset, images, labels)


# --- the choices -------------------------------------------------------------------------------
controls, view = st.columns([1, 2.2], gap="large")
with controls:
    with st.container(border=True):
        st.markdown("**1. The images**")
        common.setting(st.selectbox, "Data set", "data.dataset", options=[d for d in DATASETS if d != "cifar10"]
                       + (["cifar10"] if cfg.data.dataset == "cifar10" else []), format_func=NAMES.get)
        source = st.radio("Images from", ["bundled", "upload"], horizontal=True, key="leak.source",
                          index=1 if common.uploads() is not None else 0,
                          format_func={"bundled": "the data set", "upload": "my own files"}.get)
        if source == "upload":
            files = st.file_uploader("Your images (PNG or JPEG, up to 8)", accept_multiple_files=True,
                                     key="leak.files", max_upload_size=20)
            if files:
                take_uploads(files)
            elif common.uploads() is not None:
                st.caption(f"Using the {len(common.uploads())} images you uploaded earlier.")
            else:
                st.info("Upload one or more PNG or JPEG images: they become the private batch.")
        else:
            st.session_state.pop(common.UPLOADS, None)
            st.session_state.pop("uploads_token", None)
            common.setting(st.slider, "Batch size (images per client)", "data.batch_size", 1, 16)
            common.setting(st.multiselect, "Only these classes (empty = all)", "data.classes",
                           options=list(CLASS_NAMES[cfg.data.dataset]), show=classes_shown, read=classes_read,
                           variant=cfg.data.dataset)
            common.setting(st.checkbox, "No label twice in a batch", "data.unique_labels")
            common.setting(st.number_input, "Seed (which images, which model weights)", "seed",
                           min_value=0, max_value=100_000)
    if source == "bundled":
        with st.container(border=True):
            st.markdown("**2. The clients**")
            common.setting(st.slider, "Clients (phones) the server averages", "data.clients", 1, 8)
            if cfg.data.clients > 1:
                common.setting(st.radio, "How the data is spread over them", "data.split", options=list(SPLITS),
                               format_func=SPLITS.get)
                if cfg.data.split == "dirichlet":
                    common.setting(st.select_slider, "Dirichlet alpha (small = each client sees few classes)",
                                   "data.alpha", options=[0.05, 0.1, 0.3, 0.5, 1.0, 3.0, 10.0, 100.0])
                if cfg.data.split == "shards":
                    common.setting(st.slider, "Shards per client", "data.shards_per_client", 1, 5)
    with st.container(border=True):
        st.markdown("**3. The model and the protocol**")
        common.setting(st.selectbox, "Model", "model.name", options=["lenet", "convnet", "mlp", "resnet"],
                       format_func={"lenet": "LeNet (sigmoid, as in DLG)", "convnet": "ConvNet (ReLU)",
                                    "mlp": "MLP", "resnet": "small ResNet"}.get)
        common.setting(st.select_slider, "Training steps before the round (0 = fresh weights)",
                       "model.train_steps", options=[0, 20, 50, 100, 200])
        common.setting(st.radio, "Protocol", "leak.protocol", options=["fedsgd", "fedavg"], horizontal=True,
                       format_func={"fedsgd": "FedSGD: one gradient", "fedavg": "FedAvg: local training"}.get)
        if cfg.leak.protocol == "fedavg":
            common.setting(st.slider, "Local steps E", "leak.local_steps", 1, 10)
            common.setting(st.select_slider, "Local learning rate", "leak.local_lr",
                           options=[0.01, 0.05, 0.1, 0.2, 0.5])

# --- what the clients hold, and what the server sees -----------------------------------------------
def show_leak(setup) -> None:
    """The clients' images, the server's view of their update, and the labels in it."""
    cfg, leak = setup.config, setup.leak
    st.markdown("#### What the clients hold (never sent)")
    st.caption(common.describe(setup) + ".")
    per_row = 1 if len(setup.clients) == 1 else min(4, len(setup.clients))
    size = draw.PIXELS if len(setup.labels) <= 8 else 42
    for start in range(0, len(setup.clients), per_row):
        cols = st.columns(per_row)
        for k, (col, batch) in enumerate(zip(cols, setup.clients[start:start + per_row]), start):
            with col:
                if len(setup.clients) > 1:
                    st.caption(f"Client {k + 1}")
                draw.strip(batch.images, common.class_names(setup, batch.labels), size=size)
    if len(setup.clients) > 1 and common.uploads() is None:
        counts = common.attempt(lambda s: s.share_histograms().numpy(), setup)
        if counts is not None:
            st.markdown("**Which classes each client holds** (all its data; the batch above is drawn from it)")
            draw.histogram(counts, setup.dataset.classes)

    st.markdown("#### What the server sees")
    st.markdown(f"`{leak!r}`")
    m = st.columns(3)
    m[0].metric("Numbers the server sees", f"{leak.observed:,}")
    m[1].metric("Unknowns (pixels and labels)", f"{leak.unknowns:,}")
    ratio = leak.observed / leak.unknowns
    m[2].metric("Equations per unknown", f"{ratio:.1f}")
    st.caption("More equations than unknowns: in principle the images are pinned down by the update. "
               if ratio >= 1 else
               "Fewer equations than unknowns: many images fit the update, so the attack needs luck or a prior. ")

    c1, c2 = st.columns(2)
    with c1:
        st.markdown("**Size of the update, per layer**")
        draw.bars(leak.layer_norms(), "layer (weights and biases)", "norm of the update", log=True)
    with c2:
        weight, bias = last_layer(leak)
        names = list(setup.dataset.classes)
        st.markdown("**The last layer, as a heat map** (one row per class)")
        draw.heatmap(weight.cpu().numpy(), names, "feature", "class")
    if len(setup.labels) == 1:
        st.caption("One image: the row of its class is the only **blue** (negative) one: minus the features of "
                   "the image. The label can be read off at a glance (iDLG).")
    else:
        st.caption("Several images: each row mixes *minus* the features of that class's images with *plus* a bit of "
                   "every image's, so the colours alone can mislead. The counting method below does better: it "
                   "uses the bias gradient and the model's average output.")

    st.markdown("#### The labels it gives away")
    truth = [names[int(y)] for y in setup.labels]
    recovered = common.attempt(recover_labels, leak)
    if recovered is not None:
        guess = [names[int(y)] for y in recovered]
        accuracy = label_accuracy(recovered.tolist(), setup.labels.tolist())
        c1, c2 = st.columns([1, 1.4])
        with c1:
            st.markdown(f"True labels (sorted): **{', '.join(sorted(truth))}**")
            st.markdown(f"Read off the gradient: **{', '.join(sorted(guess))}**")
            st.metric("Labels recovered", f"{accuracy:.0%}")
            how = ("the row with the negative sum (iDLG)" if len(truth) == 1 else
                   "counting classes from the last layer's bias gradient")
            st.caption(f"Method: {how}. No images were guessed to get these. An attacker who also holds some "
                       "labelled public images does better still; the attacks use that unless you switch it off on "
                       "*Stronger attacks*.")
        with c2:
            estimate = estimate_counts(leak).tolist()
            counts = Counter(int(y) for y in setup.labels)
            rows = [{"class": n, "count": v, "which": w} for i, n in enumerate(names)
                    for v, w in ((estimate[i], "estimated from the gradient"), (counts.get(i, 0), "true"))]
            draw.grouped_bars(pd.DataFrame(rows), "class", "count", "which", "images of the class")


with view:
    if source == "upload" and common.uploads() is None:
        st.info("No image of yours yet: upload a PNG or JPEG on the left (or switch back to *the data set*).",
                icon=":material/upload:")
    else:
        with st.spinner("Leaking..."):
            made = common.setup()
        if made is None:
            st.info("Change a setting on the left: this combination cannot be drawn.")
        else:
            show_leak(made)

common.try_this(
    "Move **Batch size** from 1 to 8: the update keeps its size while the unknowns grow eightfold.",
    "Set **Clients** to 4 with the *Dirichlet* split and alpha 0.05: each phone holds one or two classes.",
    "Upload a photo of your own handwriting (PNG or JPEG): it is leaked just like a digit of the data set.",
    "Switch to **FedAvg** with 5 local steps: the labels still show in the last layer.",
)
common.page_next("dlg", "Now rebuild these images from the update")
