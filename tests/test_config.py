"""Config: JSON round trip, unknown keys, wrong types, overrides and range checks."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from engine.config import (
    AttackConfig,
    Config,
    ConfigError,
    DataConfig,
    LeakConfig,
    ModelConfig,
    from_dict,
    from_json,
    load_config,
    to_dict,
    to_json,
    with_overrides,
)

MODIFIED = Config(
    seed=7,
    device="cpu",
    threads=2,
    data=DataConfig(
        dataset="cifar10", batch_size=4, clients=3, split="dirichlet", alpha=0.1, indices=(3, 1, 4), root="/tmp/x"
    ),
    model=ModelConfig(name="resnet", width=16, train_steps=10),
    leak=LeakConfig(protocol="fedavg", local_steps=5, local_batch_size=2),
    attack=AttackConfig(
        name="ig", iterations=50, labels="joint", lr=0.1, distance="cosine", tv=1e-4, time_limit=2.5
    ),
)


# -----------------------------------------------------------------------------
# round trip


@pytest.mark.parametrize("cfg", [Config(), MODIFIED], ids=["default", "modified"])
def test_json_round_trip(cfg: Config) -> None:
    text = to_json(cfg)
    assert from_json(text) == cfg
    assert json.loads(text) == json.loads(to_json(from_json(text)))


def test_to_json_is_indented_and_lists_tuples() -> None:
    text = to_json(MODIFIED)
    assert '\n  "seed": 7' in text
    assert json.loads(text)["data"]["indices"] == [3, 1, 4]


def test_missing_keys_take_defaults() -> None:
    assert from_json("{}") == Config()
    assert from_json('{"data": {"batch_size": 8}}') == Config(data=DataConfig(batch_size=8))


def test_load_config_reads_file_and_names_it_in_errors(tmp_path) -> None:
    good = tmp_path / "run.json"
    good.write_text(to_json(MODIFIED))
    assert load_config(good) == MODIFIED
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": {"batch": 2}}')
    with pytest.raises(ConfigError, match="bad.json.*data.batch"):
        load_config(bad)


def test_invalid_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        from_json("{seed: 1")


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, '{"a": ' * 5000 + "1" + "}" * 5000,
                                  '{"data": {"indices": ' + "[" * 100_000 + "]" * 100_000 + "}}"])
def test_json_nested_thousands_deep_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        from_json(text)
    with pytest.raises(ConfigError, match="nested too deeply"):
        with_overrides(Config(), ["data.indices=" + text])


def test_errors_show_a_huge_or_deep_value_in_one_short_line() -> None:
    deep = "[" * 900 + "]" * 900  # within the decoder's reach: from_dict meets it
    for text in ('{"data": ' + deep + "}", '{"data": {"indices": [' + deep + "]}}",
                 '{"data": {"dataset": "' + "x" * 100_000 + '"}}', '{"data": {"indices": [' + "-1," * 10**5 + "1]}}"):
        with pytest.raises(ConfigError) as caught:
            from_json(text)
        assert len(str(caught.value)) < 300 and "\n" not in str(caught.value), str(caught.value)[:300]


def test_an_int_past_the_largest_float_is_rejected_for_a_float_key() -> None:
    with pytest.raises(ConfigError, match="data.alpha: expected float"):
        from_json('{"data": {"alpha": 1' + "0" * 400 + "}}")
    assert from_json('{"data": {"alpha": 1' + "0" * 300 + "}}").data.alpha == 1e300  # a float, though huge


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().seed = 3  # type: ignore[misc]


# -----------------------------------------------------------------------------
# unknown keys and wrong types


def test_unknown_top_level_key_lists_known_keys() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Config, {"sead": 1})
    message = str(err.value)
    assert "'sead'" in message
    for key in ("seed", "device", "threads", "data", "model", "leak", "attack"):
        assert key in message


def test_unknown_nested_key_names_dotted_key_and_section_keys() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Config, {"attack": {"iters": 10}})
    message = str(err.value)
    assert "'attack.iters'" in message
    assert "iterations" in message and "restarts" in message and "seed" not in message


@pytest.mark.parametrize(
    "data, key, expected",
    [
        ({"seed": "1"}, "seed", "int"),
        ({"data": {"batch_size": 2.5}}, "data.batch_size", "int"),
        ({"data": {"download": 1}}, "data.download", "bool"),
        ({"threads": True}, "threads", "int"),
        ({"model": {"train_lr": "fast"}}, "model.train_lr", "float"),
        ({"attack": {"lr": "x"}}, "attack.lr", "float or null"),
        ({"data": {"root": 3}}, "data.root", "str or null"),
        ({"data": {"indices": [1, "2"]}}, "data.indices[1]", "int"),
        ({"data": {"indices": 3}}, "data.indices", "a list of int or null"),
        ({"data": 3}, "data", "an object (section)"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value(data: dict, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Config, data)
    message = str(err.value)
    assert message.startswith(key + ":")
    assert f"expected {expected}, got" in message


def test_literal_rejects_unknown_choice_and_lists_choices() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(Config, {"data": {"dataset": "x"}})
    message = str(err.value)
    assert "data.dataset" in message and "'x'" in message
    for choice in ("mnist", "fashion_mnist", "lfw_faces", "cifar10"):
        assert f"'{choice}'" in message


def test_int_accepted_for_float_and_stored_as_float() -> None:
    cfg = from_dict(Config, {"data": {"alpha": 2}, "attack": {"lr": 1}})
    assert cfg.data.alpha == 2.0 and isinstance(cfg.data.alpha, float)
    assert isinstance(cfg.attack.lr, float)


def test_json_list_becomes_tuple() -> None:
    cfg = from_dict(Config, {"data": {"classes": [0, 1]}})
    assert cfg.data.classes == (0, 1)


def test_non_finite_float_rejected() -> None:
    with pytest.raises(ConfigError, match="data.alpha"):
        from_json('{"data": {"alpha": NaN}}')


# -----------------------------------------------------------------------------
# overrides


def test_overrides_parse_numbers_bools_lists_null_and_strings() -> None:
    cfg = with_overrides(
        MODIFIED,
        ["data.batch_size=8", "data.alpha=0.25", "data.download=true", "data.indices=[1, 2]", "data.root=null",
         "attack.name=dlg", "attack.distance=l2", "seed=3"],
    )
    assert cfg.data.batch_size == 8
    assert cfg.data.alpha == 0.25
    assert cfg.data.download is True
    assert cfg.data.indices == (1, 2)
    assert cfg.data.root is None
    assert cfg.attack.name == "dlg" and cfg.attack.distance == "l2"
    assert cfg.seed == 3
    assert cfg.model == MODIFIED.model  # untouched sections stay as they were


def test_overrides_leave_the_original_unchanged() -> None:
    cfg = Config()
    with_overrides(cfg, ["seed=5"])
    assert cfg == Config()


@pytest.mark.parametrize(
    "override, key", [("data.batch_sise=2", "data.batch_sise"), ("dta.batch_size=2", "dta"), ("sed=1", "sed")]
)
def test_override_unknown_key_rejected(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        with_overrides(Config(), [override])


@pytest.mark.parametrize("override", ["data.batch_size", "=3", "data..x=1", "seed.x=1"])
def test_malformed_override_rejected(override: str) -> None:
    with pytest.raises(ConfigError):
        with_overrides(Config(), [override])


def test_override_wrong_type_rejected() -> None:
    with pytest.raises(ConfigError, match="data.download: expected bool"):
        with_overrides(Config(), ["data.download=1"])


# -----------------------------------------------------------------------------
# range validation


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("data.clients=0", "data.clients"),
        ("data.alpha=0", "data.alpha"),
        ("data.shards_per_client=0", "data.shards_per_client"),
        ("data.indices=[]", "data.indices"),
        ("data.classes=[-1]", "data.classes"),
        ("model.width=-1", "model.width"),
        ("model.train_lr=0", "model.train_lr"),
        ("leak.local_steps=0", "leak.local_steps"),
        ("leak.local_lr=-0.1", "leak.local_lr"),
        ("attack.iterations=0", "attack.iterations"),
        ("attack.restarts=0", "attack.restarts"),
        ("attack.lr=0", "attack.lr"),
        ("attack.lr=1e308", "attack.lr"),  # torch's Adam cannot hold it
        ("attack.sigma_g=1e308", "attack.sigma_g"),  # sigma_g^2 overflows
        ("model.train_lr=1e308", "model.train_lr"),  # torch's SGD cannot hold it
        ("leak.local_lr=1e308", "leak.local_lr"),
        ("attack.tv=-1", "attack.tv"),
        ("attack.time_limit=-1", "attack.time_limit"),
        ("threads=0", "threads"),
        ("seed=-1", "seed"),
    ],
)
def test_range_validation_names_dotted_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key} must be"):
        with_overrides(Config(), [override])


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batch_size=1025", "data.batch_size"),
        ("data.clients=1025", "data.clients"),
        ("data.indices=[0, 2147483648]", "data.indices"),
        ("model.width=257", "model.width"),
        ("model.train_steps=2001", "model.train_steps"),
        ("leak.local_steps=100000", "leak.local_steps"),  # once minutes of silence, now one line
        ("attack.iterations=1000001", "attack.iterations"),
        ("attack.restarts=101", "attack.restarts"),
        ("seed=4294967296", "seed"),
        ("threads=257", "threads"),
    ],
)
def test_work_that_cannot_finish_in_reasonable_time_is_bounded_with_a_reason(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"^{key} must be .*at most|^{key} must be .*below|^{key} must be null or"):
        with_overrides(Config(), [override])


def test_the_largest_allowed_values_still_load() -> None:
    cfg = with_overrides(Config(), ["leak.local_steps=100", "model.name=mlp", "model.width=4096",
                                    "model.train_steps=2000", "attack.iterations=1000000", "seed=4294967295"])
    assert (cfg.leak.local_steps, cfg.model.width, cfg.attack.iterations) == (100, 4096, 1_000_000)


def test_range_validation_on_direct_construction() -> None:
    with pytest.raises(ConfigError, match="batch_size must be >= 1, got 0"):
        DataConfig(batch_size=0)
    with pytest.raises(ValueError):  # ConfigError is a ValueError
        AttackConfig(iterations=0)


# -----------------------------------------------------------------------------
# the machinery is generic: a future section needs no loader changes


@dataclass(frozen=True)
class _PriorConfig:
    name: Literal["none", "gan"] = "none"
    weight: float = 1.0
    layers: tuple[int, ...] = (1, 2)


@dataclass(frozen=True)
class _FutureConfig:
    seed: int = 0
    prior: Optional[_PriorConfig] = None
    defence: _PriorConfig = field(default_factory=_PriorConfig)


def test_future_sections_load_without_loader_changes() -> None:
    cfg = from_dict(_FutureConfig, {"prior": {"name": "gan", "layers": [3]}})
    assert cfg.prior == _PriorConfig(name="gan", layers=(3,))
    assert from_dict(_FutureConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    assert with_overrides(_FutureConfig(), ["prior.weight=2"]).prior == _PriorConfig(weight=2.0)
    with pytest.raises(ConfigError, match="'defence.wieght'.*name, weight, layers"):
        from_dict(_FutureConfig, {"defence": {"wieght": 1}})


def test_an_override_that_reads_as_json_but_names_a_choice_is_taken_as_the_string() -> None:
    cfg = with_overrides(Config(), ["attack.labels=true", "data.download=true"])
    assert cfg.attack.labels == "true" and cfg.data.download is True


@pytest.mark.parametrize("overrides, words", [
    (["attack.init=class_mean", "attack.labels=joint"], "class_mean"),
    (["attack.init=class_mean", "attack.auxiliary=0"], "class_mean"),
    (["attack.name=vae_prior", "attack.init=grey"], "pixel attacks"),
    (["attack.auxiliary=-1"], "auxiliary"),
    (["attack.init=sideways"], "attack.init"),
])
def test_attacker_knowledge_settings_are_checked(overrides: list[str], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        with_overrides(Config(), overrides)
