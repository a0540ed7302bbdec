"""Your experiment: config.json in and out (the CLI's format), results out, a link to any page."""

import io
import json
import tempfile
import zipfile

import streamlit as st

from engine.config import from_json, to_json
from engine.experiment import make_attack
from engine.report import save_run
from pages import common
from pages.runner import Job, live, make_job

JOB = "experiment_job"

common.header(
    "experiment",
    "the whole experiment as one config.json (the file the command line reads), its results to download, "
    "and a link that reopens any page with exactly these settings.",
)
cfg = common.config()

# --- the config ------------------------------------------------------------------------------------
left, right = st.columns(2, gap="large")
with left:
    st.subheader("This experiment", anchor=False)
    st.code(to_json(cfg), language="json")
    st.download_button("Download config.json", to_json(cfg), "config.json", "application/json",
                       key="exp.download_config", icon=":material/download:", on_click="ignore")
    st.caption("Run it from a terminal: `python -m engine run config.json --out results/`")
    if common.uploads() is not None:
        st.warning("Your uploaded images are not part of config.json: the command line reads the bundled sets.")


def load(text: str, source: str) -> None:
    """Replace the experiment with a config from JSON text; a bad file leaves everything as it was."""
    try:
        new = from_json(text)
    except ValueError as err:  # ConfigError is a ValueError
        st.session_state["exp.message"] = ("error", f"{source} was not loaded: {err}")
        return
    common.set_config(new)
    st.session_state.pop(common.UPLOADS, None)
    st.session_state["exp.message"] = ("success", f"Loaded {source}. Every page now uses it.")


def load_file() -> None:
    file = st.session_state.get("exp.upload")
    if file is None:
        return
    raw = file.getvalue()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        st.session_state["exp.message"] = ("error", f"{file.name} was not loaded: it is not a text file "
                                           "(config.json is UTF-8 text).")
        return
    load(text, file.name)


def load_text() -> None:
    load(st.session_state.get("exp.paste", ""), "the pasted JSON")


with right:
    st.subheader("Load a config", anchor=False)
    st.file_uploader("config.json", type=None, key="exp.upload", on_change=load_file, max_upload_size=1)
    st.text_area("...or paste its JSON", key="exp.paste", height=120,
                 placeholder='{"data": {"batch_size": 2}, "attack": {"iterations": 500}}')
    st.button("Load the pasted JSON", on_click=load_text, key="exp.load_text")
    kind, message = st.session_state.pop("exp.message", (None, None))
    if kind == "error":
        st.error(message, icon=":material/error:")
    elif kind == "success":
        st.success(message, icon=":material/check_circle:")
    cfg = common.config()

# --- run and results -------------------------------------------------------------------------------
st.subheader("Results", anchor=False)
setup = common.need_setup()
st.markdown(f"**Under attack:** {common.describe(setup)}; attack **{cfg.attack.name}**, "
            f"{cfg.attack.iterations} iterations.")
job_key = (cfg, id(common.uploads()))


def run_it() -> None:
    old = st.session_state.get(JOB)
    if old is not None:
        old.close()
    attack = common.attempt(make_attack, cfg)
    if attack is not None:
        job = make_job(cfg.attack.name, setup, attack.steps(setup.leak, setup.attacker_labels),
                       cfg.attack.iterations, key=job_key)
        job.ask("end")
        st.session_state[JOB] = job


def stop() -> None:
    job = st.session_state.get(JOB)
    if job is not None:
        job.stop()


c1, c2, _ = st.columns([1, 1, 4])
c1.button("Run it", on_click=run_it, type="primary", key="exp.run", icon=":material/play_arrow:")
c2.button("Stop", on_click=stop, key="exp.stop", icon=":material/stop:")

job: Job | None = st.session_state.get(JOB)
if job is None or job.key != job_key:  # take a finished run of the DLG page with the same settings
    other = st.session_state.get("dlg_job")
    job = other if other is not None and other.done and other.key[:2] == job_key else None


def run_files(job: Job) -> dict[str, bytes]:
    """config.json, metrics.json and reconstruction.png of a finished run, written by the engine's
    `save_run` exactly as the command line writes them (once per run)."""
    key = f"exp.files.{id(job.result)}"
    if key not in st.session_state:
        with tempfile.TemporaryDirectory() as folder:
            paths = save_run(folder, job.setup, job.result)
            st.session_state[key] = {path.name: path.read_bytes() for path in paths.values()}
    return st.session_state[key]


def show() -> None:
    if job is None:
        st.caption("Press **Run it**, or finish a run on the *DLG in four stages* page.")
        return
    frame = job.frames[-1] if job.frames else None
    st.progress(min(1.0, job.iteration / max(1, job.budget)),
                text=f"iteration {job.iteration} of {job.budget}" + (f", PSNR {frame.psnr:.1f} dB" if frame else ""))
    if job.error:
        st.error(job.error)
    if job.result is None:
        return
    files = run_files(job)
    metrics = json.loads(files["metrics.json"])
    m = st.columns(4)
    m[0].metric("PSNR", "-" if metrics["psnr"] is None else f"{metrics['psnr']:.1f} dB")
    m[1].metric("SSIM", "-" if metrics["ssim"] is None else f"{metrics['ssim']:.2f}")
    m[2].metric("Labels right", "-" if metrics["label_accuracy"] is None else f"{metrics['label_accuracy']:.0%}")
    m[3].metric("Attack time", f"{job.compute_s:.1f} s")
    png = files["reconstruction.png"]
    st.image(png, caption="Top: the private images. Bottom: what the attacker rebuilt.")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    d = st.columns(3)
    d[0].download_button("metrics.json", files["metrics.json"], "metrics.json", "application/json",
                         key="exp.dl_metrics", on_click="ignore")
    d[1].download_button("reconstruction.png", png, "reconstruction.png", "image/png", key="exp.dl_png",
                         on_click="ignore")
    d[2].download_button("All results (zip)", archive.getvalue(), "results.zip", "application/zip",
                         key="exp.dl_zip", type="primary", on_click="ignore")


live([job] if job is not None else [], show, key="exp.live")

# --- share -----------------------------------------------------------------------------------------
st.subheader("Share a link", anchor=False)
st.markdown("Each link opens its page with this experiment's settings: paste one in a slide or a chat.")
base = (st.context.url or "").rstrip("/")
if base.endswith("/experiment"):
    base = base[: -len("/experiment")]
query = common.share_query(cfg)
for info in common.PAGES[1:]:
    path = f"{base}/{info.key}" + (f"?{query}" if query else "")
    a, b = st.columns([1, 3])
    a.page_link(info.path, label=info.title, icon=info.icon, query_params=common.encode(cfg))
    b.code(path, language=None)

common.try_this(
    "Change the batch size on *Pick a batch*, come back: the config and the links have followed.",
    "Paste `{\"data\": {\"batch_size\": 2}, \"attack\": {\"iterations\": 500}}` above and press *Load*.",
    "Open one of the links in a private window: the page comes back with the same settings.",
)
