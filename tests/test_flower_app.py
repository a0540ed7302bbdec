"""The App folder `flower/` that `flwr run` takes: its components load, its run config is the lab's config.

Cheap checks that run everywhere; the run on a real SuperLink is tests/test_federation_deployment.py.
"""

from __future__ import annotations

import importlib
import json
import sys
import tomllib
from pathlib import Path

import pytest
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp

import engine.federation.client_app as lab_client
import engine.federation.server_app as lab_server
from engine.config import ConfigError, to_json, with_overrides
from engine.federation.client_app import lab_config

APP = Path(__file__).resolve().parents[1] / "flower"
FLWR = tomllib.loads((APP / "pyproject.toml").read_text())["tool"]["flwr"]


def _flat(node: dict, prefix: str = "") -> dict:
    """Flower's flattening of [tool.flwr.app.config]: nested tables become dotted keys."""
    out: dict = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def test_the_components_are_the_engines_own_apps(monkeypatch):
    monkeypatch.syspath_prepend(str(APP))
    components = FLWR["app"]["components"]
    loaded = {}
    for role, ref in components.items():
        module, attr = ref.split(":")
        loaded[role] = getattr(importlib.import_module(module), attr)
    assert loaded["serverapp"] is lab_server.app and isinstance(loaded["serverapp"], ServerApp)
    assert loaded["clientapp"] is lab_client.app and isinstance(loaded["clientapp"], ClientApp)
    for name in [m for m in sys.modules if m == "lab_fl" or m.startswith("lab_fl.")]:
        monkeypatch.delitem(sys.modules, name)


def test_every_run_config_key_is_a_lab_setting_and_wins_over_lab_config():
    run_config = _flat(FLWR["app"]["config"])
    config = lab_config(run_config)  # a key the lab does not know would raise ConfigError here
    f = config.federation
    assert (f.clients, f.rounds, f.fraction, config.model.name) == (2, 2, 1.0, "convnet")
    # `flwr run ... --run-config "federation.rounds=3 federation.strategy='fedprox'"`, on top of a whole config
    base = to_json(with_overrides(config, ["federation.rounds=9", "federation.lr=0.05", "seed=7"]))
    changed = lab_config({**run_config, "lab-config": base, "federation.rounds": 3, "federation.strategy": "fedprox"})
    assert (changed.federation.rounds, changed.federation.strategy) == (3, "fedprox")  # the run config wins
    assert changed.federation.lr == run_config["federation.lr"] and changed.seed == run_config["seed"]
    assert lab_config({"lab-config": base}).federation.lr == 0.05  # what it does not list comes from lab-config
    assert lab_config({"federation.keep_views": "[1, 2]", "out": "/tmp/x"}).federation.keep_views == (1, 2)


def test_a_run_config_the_lab_cannot_take_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown key 'federation.round'"):
        lab_config({"federation.round": 3})
    with pytest.raises(ConfigError, match="fraction"):
        lab_config({"federation.clients": 2, "federation.fraction": 0.1})
    with pytest.raises(ConfigError):
        lab_config({"lab-config": json.dumps({"federation": {"rounds": 0}})})
