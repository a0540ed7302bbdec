"""The lab's Flower ServerApp: pick the strategy, start it, test the global model every round.

    run_server(grid, config, report)      # what every backend runs: in process, under Ray, on a SuperLink
    app                                   # the ServerApp object `flwr run` and the Ray simulation load

`report(server_round, loss, accuracy, outcome)` is called after Flower's central evaluation of each
round (round 0: the initial model, outcome None); the in-process runner turns it into a RoundRecord.
The deployed App waits for `federation.clients` SuperNodes, then writes one JSON line per round
(printed, and into `run_config["out"]/rounds.jsonl` when set).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable, Optional

from flwr.app import ArrayRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp

from ..config import Config
from .client_app import architecture, lab_config, to_arrays, to_params
from .grid import InProcessGrid
from .poison import attack_success
from .strategy import RoundOutcome, create_strategy
from .task import evaluate, federated_data, initial_params

__all__ = ["app", "run_server", "Report"]

Report = Callable[[int, float, float, Optional[RoundOutcome]], None]
NODE_WAIT_SECONDS = 120.0  # how long the deployed App waits for its SuperNodes to connect


def run_server(grid: Grid, config: Config, report: Optional[Report] = None) -> None:
    """Flower's round loop (`Strategy.start`) with the lab's strategy and a central test each round."""
    data = federated_data(config)
    model = architecture(config, data.num_classes)
    strategy = create_strategy(config, data.num_classes)

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        params = to_params(arrays)
        loss, accuracy = evaluate(model, params, data.test_images, data.test_labels)
        if server_round in strategy.outcomes:  # a backdoor's or label flip's success, None without one
            strategy.outcomes[server_round].attack_success = attack_success(
                model, params, data.test_images, data.test_labels, config)
        if report is not None:
            report(server_round, loss, accuracy, strategy.outcomes.get(server_round))
        return MetricRecord({"loss": loss, "accuracy": accuracy})

    initial = initial_params(config, model)
    if config.federation.fraction < 1 and not isinstance(grid, InProcessGrid):  # random node ids: ask each node
        strategy.partitions = partitions(grid, config.federation.clients)
    strategy.start(grid, to_arrays(initial), num_rounds=config.federation.rounds,
                   timeout=config.federation.deadline, evaluate_fn=evaluate_fn)


def partitions(grid: Grid, nodes: int, timeout: float = 600.0) -> dict[int, int]:
    """node id -> partition id, from one QUERY message to every node (the ClientApp's `partition_of`).
    The runtime registers its nodes as they start (Ray's may not be there yet when the server starts:
    an empty answer once sampled by random node id), so first wait until all `nodes` are, and ask
    again any node whose answer did not come."""
    began = time.monotonic()
    found: dict[int, int] = {}
    while time.monotonic() - began < timeout:
        ids = [node for node in grid.get_node_ids() if node not in found]
        if len(found) + len(ids) >= nodes:
            asks = [Message(RecordDict(), dst_node_id=node, message_type=MessageType.QUERY) for node in ids]
            found.update({m.metadata.src_node_id: int(m.content["metrics"]["partition-id"])
                          for m in grid.send_and_receive(asks, timeout=timeout) if not m.has_error()})
            if len(found) >= nodes:
                break
        time.sleep(0.2)
    return found


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """The deployed App: the lab's config from the run config, rounds as JSON lines into `out`."""
    config = lab_config(context.run_config)
    out = str(context.run_config.get("out", ""))

    def report(server_round: int, loss: float, accuracy: float, outcome: Optional[RoundOutcome]) -> None:
        line = {"round": server_round, "loss": loss, "accuracy": accuracy,
                "replied": [] if outcome is None else outcome.replied,
                "aborted": "" if outcome is None else outcome.aborted}
        print(json.dumps(line), flush=True)
        if out:
            Path(out).mkdir(parents=True, exist_ok=True)
            with open(Path(out) / "rounds.jsonl", "a") as fh:
                fh.write(json.dumps(line) + "\n")

    wait_for_nodes(grid, config.federation.clients)
    run_server(grid, config, report)


def wait_for_nodes(grid: Grid, count: int, timeout: float = NODE_WAIT_SECONDS, poll: float = 0.5) -> None:
    """Block until `count` SuperNodes are connected: the lab samples among the nodes it sees, so a
    first round started early would train fewer clients than the config says."""
    end = time.monotonic() + timeout
    while (seen := len(list(grid.get_node_ids()))) < count:
        if time.monotonic() > end:
            raise RuntimeError(
                f"only {seen} of federation.clients = {count} SuperNodes connected within {timeout:g} s: start "
                f"{count} SuperNodes (each with --node-config \"partition-id=K num-partitions={count}\"), or run "
                f"with --run-config \"federation.clients={max(seen, 1)}\""
            )
        time.sleep(poll)
