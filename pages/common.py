"""What every page shares: the page list, the session's experiment (a `Config`), its leak, the URL.

Not a page. The session holds one experiment: the `Config` every page reads and the batch page
edits. It is mirrored into the URL query string (dotted keys, only those that differ from the
default), so the current address is always a link that reopens the page with its settings:

    /dlg?data.batch_size=4&seed=3
"""

from __future__ import annotations

import gc
import json
import runpy
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import streamlit as st
import torch

from engine.config import Config, ConfigError, to_dict, with_overrides
from engine.data import ImageSet, UploadError, load_dataset, to_model_input
from engine.data.imageset import CLASS_NAMES
from engine.experiment import Setup, model_input_shape, prepare
from engine.leakage import leak_update

T = TypeVar("T")
APP = Path(__file__).resolve().parents[1] / "app.py"

CONFIG, SETUP, UPLOADS, URL_ERRORS = "config", "setup", "uploads", "url_errors"  # session keys
WIDGET = "w:"  # prefix of the session keys of widgets bound to config keys
ENGINE_ERRORS = (ConfigError, UploadError, ValueError)  # ConfigError and UploadError are ValueErrors too


_through_app = threading.local()  # .depth > 0 while app.py runs a page in this script thread


@contextmanager
def through_app() -> Iterator[None]:
    """app.py runs the current page inside this, so a page knows that app.py laid it out."""
    _through_app.depth = getattr(_through_app, "depth", 0) + 1
    try:
        yield
    finally:
        _through_app.depth -= 1


def _run_through_app() -> None:
    """Run app.py (layout, lecture bar, then this page) when the page was started without it.

    Streamlit takes a folder named pages/ next to app.py for the old 'one page per file' layout:
    until the first st.navigation call of the process (under AppTest: of each run), it runs the
    page file alone (no layout, no lecture bar, helper modules listed as pages). No option turns
    that off (client.showSidebarNavigation only hides the list), and the project keeps the name
    pages/. So every page calls this first: when app.py is not running it, it runs app.py, whose
    st.navigation switches Streamlit to app.py's page list (for the process), and which runs this
    page in turn; then stops. Only public calls: had a Streamlit never switch, each run would still
    go through app.py, one extra pass of the page's first lines slower."""
    if getattr(_through_app, "depth", 0):
        return
    runpy.run_path(str(APP), run_name="__main__")
    st.stop()


# -----------------------------------------------------------------------------
# the pages


@dataclass(frozen=True)
class PageInfo:
    key: str  # also the URL path
    path: str
    title: str
    icon: str
    blurb: str  # what the learner sees there, one line


PAGES = (
    PageInfo("home", "pages/home.py", "Home", ":material/home:", "The story, and a lecture mode that walks it."),
    PageInfo("promise", "pages/promise.py", "What FL promises", ":material/handshake:",
             "FedSGD and FedAvg side by side: what leaves a client, what the server sees."),
    PageInfo("leak", "pages/leak.py", "Pick a batch and leak it", ":material/water_drop:",
             "Choose images and clients, leak their averaged update, read the labels straight off it."),
    PageInfo("federation", "pages/federation.py", "A real FL run", ":material/hub:",
             "Many phones over many rounds on Flower: slow phones, dropouts, privacy spent; attack any round."),
    PageInfo("poisoned", "pages/poisoned.py", "Poisoned clients", ":material/coronavirus:",
             "A few phones send crafted updates or a backdoor; robust aggregators answer, and none wins every attack."),
    PageInfo("dlg", "pages/dlg.py", "DLG in four stages", ":material/search:",
             "Watch random noise turn into the private images, one stage at a time."),
    PageInfo("stronger", "pages/stronger.py", "Stronger attacks", ":material/bolt:",
             "Labels from the gradient, DLG against Inverting Gradients, bigger batches."),
    PageInfo("prior", "pages/prior.py", "The image prior", ":material/auto_awesome:",
             "Batches of 16-32: a VAE of digits searches 16 numbers per image instead of 784 pixels; a diffusion "
             "model redraws the strokes."),
    PageInfo("defences", "pages/defences.py", "Defences and their price", ":material/shield:",
             "Noise with its privacy budget, compression, secure aggregation: what stops the attack, at what price."),
    PageInfo("dishonest", "pages/dishonest.py", "A dishonest server", ":material/gpp_bad:",
             "A server that writes the model: 60 of 64 images exactly in one step, through secure aggregation; "
             "what a phone can check."),
    PageInfo("experiment", "pages/experiment.py", "Your experiment", ":material/science:",
             "Download or load config.json, download results, share a link to any page."),
)
PAGE = {p.key: p for p in PAGES}
SET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "lfw_faces": "face", "cifar10": "CIFAR-10"}
MODEL_NAMES = {"lenet": "LeNet", "convnet": "ConvNet", "mlp": "MLP", "resnet": "ResNet"}


# -----------------------------------------------------------------------------
# errors


def attempt(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Optional[T]:
    """`fn(*args, **kwargs)`, or None after showing the engine's message as an error (no traceback)."""
    try:
        return fn(*args, **kwargs)
    except ENGINE_ERRORS as err:
        st.error(f"{err}", icon=":material/error:")
    except (RuntimeError, FileNotFoundError) as err:  # torch or a missing asset: still no traceback
        st.error(f"That did not work: {err}", icon=":material/error:")
    return None


# -----------------------------------------------------------------------------
# config <-> URL


def _leaves(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{'data.batch_size': 4, ...} from a nested dict."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_leaves(value, name + "."))
        else:
            out[name] = value
    return out


def encode(config: Config) -> dict[str, str]:
    """Query parameters for the keys of `config` that differ from the default."""
    default = _leaves(to_dict(Config()))
    params = {}
    for key, value in _leaves(to_dict(config)).items():
        if value != default[key]:
            value = list(value) if isinstance(value, tuple) else value
            params[key] = value if isinstance(value, str) else json.dumps(value)
    return params


def decode(params: dict[str, str]) -> tuple[Config, list[str]]:
    """A config from query parameters; each key that is not a setting, or not valid, is skipped
    and reported in words."""
    config, errors = Config(), []
    known = _leaves(to_dict(Config()))
    for key, raw in params.items():
        if key not in known:
            continue  # not a setting (e.g. lecture=2)
        try:
            config = with_overrides(config, [f"{key}={raw}"])
        except ConfigError as err:
            errors.append(f"The link's setting {key}={raw} was ignored ({err}); the default is used.")
    return config, errors


def share_query(config: Config, **extra: str) -> str:
    """The query string (without '?') that reopens a page with `config`."""
    from urllib.parse import urlencode

    return urlencode({**encode(config), **extra})


def _write_url(config: Config) -> None:
    """Mirror the config into the address bar (only the setting keys change)."""
    wanted = encode(config)
    known = _leaves(to_dict(Config()))
    current = {k: v for k, v in st.query_params.to_dict().items() if k in known}
    if current != wanted:
        for key in current:
            if key not in wanted:
                del st.query_params[key]
        st.query_params.update(wanted)


def config() -> Config:
    """The session's experiment. The first run of a session takes it from the URL (a deep link);
    afterwards the session's own copy wins and is written back to the URL."""
    if CONFIG not in st.session_state:
        cfg, errors = decode(st.query_params.to_dict())
        st.session_state[CONFIG] = cfg
        st.session_state[URL_ERRORS] = errors
    _write_url(st.session_state[CONFIG])
    return st.session_state[CONFIG]


def set_config(cfg: Config, from_widgets: bool = False) -> None:
    """Replace the session's experiment; the leak is recomputed on next use. Unless the change
    came from the widgets themselves, they are re-read from the new config."""
    if st.session_state.get(CONFIG) != cfg:
        st.session_state[CONFIG] = cfg
        st.session_state.pop(SETUP, None)
    if not from_widgets:
        for key in [k for k in st.session_state if str(k).startswith(WIDGET)]:
            del st.session_state[key]
    _write_url(cfg)


def update(**changes: Any) -> None:
    """Set dotted keys of the config, e.g. update(**{"data.batch_size": 4}); errors shown, not raised."""
    overrides = [f"{key}={json.dumps(list(v) if isinstance(v, tuple) else v)}" for key, v in changes.items()]
    try:
        cfg = with_overrides(config(), overrides)
    except ConfigError as err:
        st.error(f"{err}", icon=":material/error:")
        return
    set_config(cfg, from_widgets=True)


def _identity(value: Any) -> Any:
    return value


def setting(widget: Callable[..., T], label: str, dotted: str, *args: Any,
            show: Callable[[Any], Any] = _identity, read: Callable[[Any], Any] = _identity, variant: str = "",
            **kwargs: Any) -> T:
    """A widget bound to config key `dotted`: it starts from the config and writes back on change.
    `show` turns the config's value into the widget's, `read` the widget's into the config's;
    a new `variant` makes a fresh widget (when its options change)."""
    key = WIDGET + dotted + variant
    if key not in st.session_state:
        value = config()
        for part in dotted.split("."):
            value = getattr(value, part)
        st.session_state[key] = show(value)

    def apply() -> None:
        update(**{dotted: read(st.session_state[key])})

    args, kwargs = _holding(widget, args, kwargs, st.session_state[key])
    return widget(label, *args, key=key, on_change=apply, **kwargs)


def _holding(widget: Callable[..., Any], args: tuple, kwargs: dict[str, Any], value: Any) -> tuple[tuple, dict]:
    """The widget's range widened to hold `value`: a loaded config may hold E = 50 where the slider ends at 10
    (Streamlit raises on a value outside its widget's range)."""
    kwargs = dict(kwargs)
    if widget is st.select_slider and "options" in kwargs and value not in kwargs["options"]:
        kwargs["options"] = sorted([*kwargs["options"], value])
    if widget in (st.slider, st.number_input) and type(value) in (int, float):
        bounds = [*args[:2], None, None][:2]
        for i, name in enumerate(("min_value", "max_value")):
            bounds[i] = kwargs.pop(name, bounds[i])
        lo, hi = bounds
        lo = lo if lo is None or value >= lo else value
        hi = hi if hi is None or value <= hi else value
        args = (lo, hi, *args[2:])
    return args, kwargs


def show_url_errors() -> None:
    """Say, once, which settings of an opened link were ignored."""
    for message in st.session_state.pop(URL_ERRORS, []):
        st.warning(message, icon=":material/link_off:")


# -----------------------------------------------------------------------------
# data and the leak


@st.cache_resource(show_spinner=False, max_entries=8)
def dataset(name: str, part: str = "test") -> ImageSet:
    """A bundled image set, loaded once for all sessions (read-only)."""
    return load_dataset(name, part)


def uploaded_set(name: str, images: list[torch.Tensor], labels: list[int]) -> ImageSet:
    """The user's decoded images (each (C, H, W), already the model's shape) as an image set named
    like the data set whose classes they take."""
    return ImageSet(name, torch.stack(images), torch.tensor(labels, dtype=torch.int64), CLASS_NAMES[name],
                    "your uploads")


def uploads() -> Optional[ImageSet]:
    """The user's own images, when the batch page switched to them."""
    return st.session_state.get(UPLOADS)


def setup_for(cfg: Config, images: Optional[ImageSet] = None) -> Setup:
    """Clients, model and leak for `cfg` (and uploaded images instead of the bundled set).

    Per session, never shared: the attack swaps weights into the model while it runs."""
    if images is not None:
        cfg = with_overrides(cfg, [f"data.indices={list(range(len(images)))}", f"data.batch_size={len(images)}",
                                   "data.clients=1", "data.classes=null", "data.unique_labels=false"])
        return prepare(cfg, dataset=images)
    if cfg.data.root is None and not cfg.data.download:
        return prepare(cfg, dataset=dataset(cfg.data.dataset))
    return prepare(cfg)


def setup() -> Optional[Setup]:
    """The session's leak for its current config, made once per change; None after an error."""
    cfg, images = config(), uploads()
    key = (cfg, id(images))
    cached = st.session_state.get(SETUP)
    if cached is not None and cached[0] == key:
        return cached[1]
    made = attempt(setup_for, cfg, images)
    if made is not None:
        st.session_state[SETUP] = (key, made)
    return made


def client_messages(s: Setup, limit: int = 4) -> dict[str, dict[str, float]]:
    """Per-layer norms of what each of the first `limit` clients sends, and of the server's average."""
    channels, size = model_input_shape(s.config.data.dataset)
    leak = s.leak  # its schedule: the config's, or a federated round's
    out = {}
    for k, batch in enumerate(s.clients[:limit]):
        images = to_model_input(batch.images, channels, size).to(s.device)
        own = leak_update(s.model, [(images, batch.labels.to(s.device))],
                          leak.protocol, leak.local_steps, leak.local_lr, leak.local_batch_size)
        out[f"phone {k + 1}"] = own.layer_norms()
    out["server's average"] = s.leak.layer_norms()
    return out


def describe(s: Setup) -> str:
    """The leak in one sentence a student can read."""
    cfg = s.config
    n = len(s.labels)
    plural = "s" if n > 1 else ""
    source = f"uploaded image{plural}" if uploads() is not None else f"{SET_NAMES[cfg.data.dataset]} image{plural}"
    names = s.dataset.classes
    labels = ", ".join(names[int(y)] for y in s.labels[:12]) + (" ..." if n > 12 else "")
    clients = f"{len(s.clients)} clients" if len(s.clients) > 1 else "one client"
    protocol = ("FedSGD (one gradient)" if s.leak.protocol == "fedsgd"
                else f"FedAvg ({s.leak.local_steps} local steps)")
    when = f" in round {cfg.leak.round} of the federated run" if cfg.leak.round > 0 else ""
    return (f"{n} {source} (label{plural} {labels}) held by {clients}, leaked through {protocol}{when} "
            f"to the {MODEL_NAMES[cfg.model.name]} model")


def class_names(s: Setup, labels: torch.Tensor) -> list[str]:
    """Class names of `labels` (hard (B,) or soft (B, K))."""
    hard = labels if labels.dim() == 1 else labels.argmax(dim=1)
    return [s.dataset.classes[int(y)] for y in hard]


# -----------------------------------------------------------------------------
# page furniture

_frozen_modules = [0]  # len(sys.modules) at the last gc.freeze()


def freeze_imports() -> None:
    """Hide what the imports made (torch, scipy, altair...: about 500,000 objects that live as long
    as the server) from the cyclic garbage collector. Streamlit runs a full gc.collect() after every
    script and fragment run; over those objects it took about 250 ms of CPU, GIL held, per rerun.
    Frozen, it takes a few ms. Runs again only when a page imported new modules (a few times per
    process), after a collection, so no garbage is frozen."""
    if len(sys.modules) != _frozen_modules[0]:
        gc.collect()
        gc.freeze()
        _frozen_modules[0] = len(sys.modules)



def header(page: str, sees: str) -> None:
    """Title and the line that says what the learner will see."""
    _run_through_app()
    freeze_imports()
    info = PAGE[page]
    st.title("Gradient Inversion Lab" if page == "home" else info.title)
    st.markdown(f"**What you will see:** {sees}")
    show_url_errors()


def try_this(*ideas: str) -> None:
    """The closing box every page has: experiments that change the outcome."""
    st.divider()
    st.subheader("Try this", anchor=False)
    st.markdown("\n".join(f"- {idea}" for idea in ideas))


def page_next(page: str, why: str) -> None:
    """A link onward, for the learner who reads top to bottom."""
    info = PAGE[page]
    st.page_link(info.path, label=f"Next: {why}", icon=":material/arrow_forward:")


def need_setup() -> Setup:
    """The leak, or a clear message and stop."""
    s = setup()
    if s is None:
        st.info("Fix the settings on **Pick a batch and leak it**, then come back.")
        st.page_link(PAGE["leak"].path, label="Pick a batch and leak it", icon=PAGE["leak"].icon)
        st.stop()
    return s
