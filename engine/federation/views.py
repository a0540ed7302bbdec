"""Attack any round: what the server saw in round r of a federated run, as a `Leak` the attacks take.

    setup = round_setup(config)       # config.leak.round = r, config.leak.client = k (or -1: the aggregate)
    step = make_attack(config).run(setup.leak)    # scored against client k's true images by `finish`

An honest-but-curious server keeps, for any round it likes, the weights w_t it sent and what came
back. One client's reply is a FedAvg message of n_k images after s_k = ceil(E n_k / B) local steps,

    Delta_k = w_t - w_{s_k}^k                                        # Eq. (1), what client k sent

and the aggregate is the weighted mean of those that arrived, sum_k (n_k / n) Delta_k, a FedAvg leak
of K clients (Eq. 2 of `engine.leakage`). Both become the `Leak` that `prepare` would build for the
same images, weights and schedule, so every attack of the lab runs on them unchanged and is scored
against the very images the client trained on, in the order it walked them. The run is replayed
up to round r (same seed, same history), keeping only that round's view.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import lru_cache

import torch

from ..config import AttackConfig, Config, LeakConfig
from ..experiment import Setup, model_input_shape
from ..leakage import Leak
from .client_app import architecture
from .simulate import simulate
from .strategy import ServerView
from .task import federated_data, local_steps

__all__ = ["server_view", "view_leak", "round_setup"]


def server_view(config: Config, server_round: int) -> ServerView:
    """Replay the run up to `server_round` and return what the server saw in it (the last few replays
    are kept: the attack's own settings do not change the run)."""
    f = config.federation
    if not 1 <= server_round <= f.rounds:
        raise ValueError(f"leak.round must be from 1 to federation.rounds ({f.rounds}), got {server_round}")
    replay = replace(config, federation=replace(f, rounds=server_round, keep_views=(server_round,), backend="inprocess"),
                     leak=LeakConfig(), attack=AttackConfig())
    return _replay(replay, server_round)


@lru_cache(maxsize=4)
def _replay(replay: Config, server_round: int) -> ServerView:
    last = None
    for last in simulate(replay):
        pass
    if last is None or last.view is None:
        why = last.aborted if last is not None and last.aborted else "no reply arrived"
        raise ValueError(f"round {server_round} left the server nothing to attack: {why}")
    return last.view


def view_leak(view: ServerView, config: Config, client: int = -1) -> Leak:
    """Client `client`'s reply (a partition id), or with -1 the round's aggregate, as a FedAvg `Leak`."""
    f = config.federation
    channels, size = model_input_shape(config.data.dataset)
    model = copy.deepcopy(architecture(config, federated_data(config).num_classes))
    model.load_state_dict(view.params, strict=False)
    if client >= 0:
        replies = {r.client: r for r in view.replies}
        if client not in replies:
            if view.secure:
                raise ValueError("secure aggregation hid the replies: only the aggregate (leak.client=-1) is there")
            raise ValueError(f"client {client} sent nothing the server kept in round {view.server_round}; "
                             f"the replies came from clients {sorted(replies)}")
        sizes, update = (replies[client].num_examples,), replies[client].update
    else:
        sizes, update = view.sizes, view.aggregate
    steps = {local_steps(n, config) for n in sizes}
    batches = {min(f.batch_size, n) for n in sizes}
    if len(steps) > 1 or len(batches) > 1:
        raise ValueError(
            f"the round's clients ran different local schedules ({sorted(steps)} steps): an attack on the "
            f"aggregate needs one; attack one client's reply instead (leak.client = one of {list(view.clients)})"
        )
    fresh = {k: v.clone() for k, v in view.params.items()}  # the replayed view is cached: hand out copies
    return Leak("fedavg", model, fresh, (channels, size, size), {k: v.clone() for k, v in update.items()},
                tuple(sizes), steps.pop(), f.lr, batches.pop())


def round_setup(config: Config) -> Setup:
    """The `Setup` of round `config.leak.round`: the leak, and the true images of the clients in it."""
    server_round, client = config.leak.round, config.leak.client
    view = server_view(config, server_round)
    leak = view_leak(view, config, client)
    data = federated_data(config)
    who = (client,) if client >= 0 else view.clients
    batches = tuple(data.client_batch(k, server_round, config.seed) for k in who)
    device = torch.device("cpu")
    return Setup(config, data.train, batches, leak.model, leak, device)
