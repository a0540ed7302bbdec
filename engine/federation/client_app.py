"""The lab's Flower ClientApp: unpack the global weights, train locally, pack the reply.

    reply = app(message, context)      # what a SuperNode (or the in-process grid) runs for each client

The client's partition and the lab's configuration come from its context, as Flower hands them to
any ClientApp: `node_config["partition-id"]` (which share of the train sample this node holds)
and `run_config["lab-config"]` (the experiment's JSON; "{}" means the defaults), with every
other run-config key ("federation.rounds", as `flwr run --run-config` sets it) applied on top. The
training itself is `task.local_update`; a client the config makes an attacker poisons its data or its message
(`poison`): nothing else here knows about attacks, clocks or the app.
"""

from __future__ import annotations

import json
from functools import lru_cache

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from ..config import Config, from_json, with_overrides
from ..models import create_model
from .poison import poison_data, poison_message
from .task import federated_data, local_update, round_generator

__all__ = ["app", "lab_config", "architecture", "to_params", "to_arrays", "partition_of"]

app = ClientApp()


RESERVED_KEYS = ("lab-config", "out")  # run-config keys that are not the lab's own settings


@lru_cache(maxsize=8)
def _parse(text: str, overrides: tuple[str, ...]) -> Config:
    return with_overrides(from_json(text), overrides)


def lab_config(run_config: dict) -> Config:
    """The lab's Config carried in a Flower run config: the JSON text under "lab-config" ("{}": the
    defaults), then every other key but "out" as an override of that name. Flower flattens the App's
    `[tool.flwr.app.config.federation]` table into "federation.clients", ..., so
    `flwr run . <federation> --run-config "federation.rounds=3"` reaches the lab as `--set` would."""
    overrides = tuple(  # a text value as typed ("fedprox", "[1, 5]"); numbers and bools as JSON
        f"{key}={value if isinstance(value, str) else json.dumps(value)}"
        for key, value in sorted(run_config.items()) if key not in RESERVED_KEYS
    )
    return _parse(str(run_config.get("lab-config", "{}")), overrides)


@lru_cache(maxsize=8)
def _architecture(name: str, width: int, dataset: str, classes: int, seed: int) -> nn.Module:
    from ..experiment import model_input_shape

    channels, size = model_input_shape(dataset)
    return create_model(name, channels, size, classes, width, seed)


def architecture(config: Config, classes: int = 10) -> nn.Module:
    """The victim network the run trains (its initial weights drawn from the config's seed)."""
    return _architecture(config.model.name, config.model.width, config.data.dataset, classes, config.seed)


def to_params(arrays: ArrayRecord) -> dict[str, torch.Tensor]:
    """Flower arrays -> {name: tensor}."""
    return {name: t.float() for name, t in arrays.to_torch_state_dict().items()}


def to_arrays(params: dict[str, torch.Tensor]) -> ArrayRecord:
    """{name: tensor} -> Flower arrays."""
    return ArrayRecord({name: t.detach().cpu().contiguous() for name, t in params.items()})


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training on this node's share; the reply carries the new weights and the share's size."""
    config = lab_config(context.run_config)
    client = int(context.node_config["partition-id"])
    server_round = int(msg.content["config"]["server-round"])
    mu = float(msg.content["config"].get("proximal-mu", 0.0))
    data = federated_data(config)
    model = architecture(config, data.num_classes)
    params = to_params(msg.content["arrays"])
    batch = data.client_batch(client, server_round, config.seed)
    generator = round_generator(config.seed, server_round, client)
    images, labels = poison_data(config, client, batch.images, batch.labels, server_round)  # attackers only
    delta = local_update(model, params, images, labels, config, generator, mu)
    delta = poison_message(config, client, delta, generator, server_round)  # attackers only
    weights = {name: params[name] - delta[name] for name in params}  # w_E = w_t - Delta_k
    metrics = MetricRecord({"num-examples": len(batch), "partition-id": client})
    return Message(content=RecordDict({"arrays": to_arrays(weights), "metrics": metrics}), reply_to=msg)


@app.query()
def partition_of(msg: Message, context: Context) -> Message:
    """Which share this node holds: the server asks once where node ids are random (Ray, SuperNodes),
    so that its seeded sample picks the same partitions as the in-process grid's ids 1..K."""
    metrics = MetricRecord({"partition-id": int(context.node_config["partition-id"])})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

