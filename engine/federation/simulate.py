"""Run the lab's Flower App and report it round by round, as a generator the caller can stop.

    for record in simulate(config):                  # a RoundRecord after every server round
        print(record.round, record.accuracy, record.epsilon)
    history = run_history(config)                    # all of it

The App is the same on every backend (`federation.backend`): `server_app.run_server` drives
Flower's own `Strategy.start`. Flower's loop is not a generator, so it runs in a worker thread that
hands over after each round's evaluation and waits until the caller asks for the next one; closing
the generator (a Stop button, Ctrl-C) ends the worker at that point, keeping the rounds done.

- "inprocess": `InProcessGrid`, with the virtual clock (dropouts, stragglers, bytes, seconds);
- "ray": Flower's Simulation Runtime (`flwr[simulation]`, optional), the same ServerApp and
  ClientApp on Ray actors; no clock, so the timing columns are NaN;
- "deployment": a SuperLink and SuperNodes started by the user and `flwr run` (see the README);
  not driven from here.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import queue
import threading
from typing import Callable, Iterator, Optional

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.supercore.task_identity import TaskIdentity

from ..config import Config
from ..device import set_threads
from .accounting import PrivacyLedger
from .client_app import app as client_app
from .grid import InProcessGrid
from .history import History, RoundRecord
from .server_app import Report, run_server
from .strategy import RoundOutcome
from .task import federated_data

__all__ = ["simulate", "run_history", "FederationError"]

SUPERLINK_NODE_ID = 0


class FederationError(ValueError):
    """A run that cannot start: a backend that is not installed, a deadline no client meets."""


class _Stopped(Exception):
    """Raised inside the worker when the caller closed the generator."""


def simulate(config: Config, on_initial: Optional[Callable[[float, float], None]] = None) -> Iterator[RoundRecord]:
    """Yield a RoundRecord after each round; `on_initial(loss, accuracy)` gets the untrained model's test."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    logging.getLogger("flwr").setLevel(logging.ERROR)  # Flower logs every round; the lab reports them itself
    set_threads(config.threads)
    backend = config.federation.backend
    if config.defence.secure_aggregation and config.federation.sampled < 2:
        raise FederationError("secure aggregation needs at least 2 clients sampled a round: raise "
                              "federation.fraction or federation.clients")
    if backend == "inprocess":
        target = _inprocess(config)
    elif backend == "ray":
        target = _ray(config)
    else:
        raise FederationError(
            "backend 'deployment' runs on a SuperLink and SuperNodes you start: see the README "
            "(flower-superlink, flower-supernode, flwr run); `simulate` drives 'inprocess' and 'ray'"
        )
    yield from _handoff(target, config, on_initial)


def run_history(config: Config) -> History:
    """Run every round and return the History."""
    initial: list[float] = []
    records = tuple(simulate(config, lambda loss, acc: initial.extend([loss, acc])))
    return History(config, initial[1], initial[0], records)


# -- backends -------------------------------------------------------------------------------------


def _inprocess(config: Config) -> Callable[[Report], dict]:
    data = federated_data(config)  # errors (too many clients, no train part) before the thread starts
    grid = InProcessGrid(client_app, config)
    params = sum(p.numel() for p in _model_params(config, data.num_classes))
    grid.check_deadline(4 * params)

    def target(report: Report) -> dict:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, grid.run.run_id, SUPERLINK_NODE_ID
        run_server(grid, config, report)
        return {}

    target.grid = grid  # type: ignore[attr-defined]
    return target


def _ray(config: Config) -> Callable[[Report], dict]:
    """Flower's Simulation Runtime: `run_simulation` with one virtual SuperNode per client on Ray actors.

    Its SuperNodes get node_config {"partition-id": i, "num-partitions": clients} as the in-process grid
    gives them, so the lab's ClientApp trains the same shares; `run_simulation` takes no run config,
    so the lab's config reaches the ClientApp through `ray_client_app`. Ray has no virtual clock: no
    dropouts or stragglers, NaN seconds, and the server waits for every reply (no deadline)."""
    try:
        import ray  # noqa: F401
        from flwr.simulation import run_simulation
    except ImportError:
        raise FederationError(
            "backend 'ray' needs Flower's Simulation Runtime: pip install -r requirements-ray.txt"
        ) from None
    from dataclasses import replace

    from flwr.serverapp import ServerApp

    federated_data(config)  # errors (too many clients, no train part) before the thread starts
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # no GPU asked for: Ray's warning about it
    client = ray_client_app(config)
    no_deadline = replace(config, federation=replace(config.federation, deadline=RAY_TIMEOUT))

    def target(report: Report) -> dict:
        server = ServerApp()

        @server.main()
        def main(grid, context) -> None:  # the same run_server, with this run's reporting
            run_server(grid, no_deadline, report)

        run_simulation(server_app=server, client_app=client, num_supernodes=config.federation.clients,
                       backend_config=copy.deepcopy(RAY_BACKEND_CONFIG))
        return {}

    return target


RAY_TIMEOUT = 1e6  # seconds: under Ray the server waits for every reply (the deadline is the in-process clock's)
RAY_BACKEND_CONFIG = {  # one CPU per ClientApp actor (as many actors as cores), the workers' logs kept out of the run's
    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    "init_args": {"log_to_driver": False, "configure_logging": False},
}


def ray_client_app(config: Config, app: Optional[ClientApp] = None) -> ClientApp:
    """`app` (the lab's ClientApp by default) with the lab's config in each node's run config, and the
    config's torch threads on each Ray actor: what `flwr run` would put in `run_config["lab-config"]`."""
    from ..config import to_json

    text, threads, inner = to_json(config), config.threads, app or client_app
    wrapped = ClientApp()

    @wrapped.train()
    def train(msg: Message, context: Context) -> Message:
        set_threads(threads)
        run_config = {**context.run_config, "lab-config": text}  # Flower forbids changing the node's own
        return inner(msg, Context(context.run_id, context.node_id, context.node_config, context.state, run_config,
                                  context.series_id))

    @wrapped.query()
    def query(msg: Message, context: Context) -> Message:  # which partition the node holds
        return inner(msg, context)

    return wrapped


def _model_params(config: Config, classes: int):
    from .client_app import architecture

    return list(architecture(config, classes).parameters())


# -- the hand-over --------------------------------------------------------------------------------


def _handoff(target: Callable[[Report], dict], config: Config,
             on_initial: Optional[Callable[[float, float], None]]) -> Iterator[RoundRecord]:
    """Run `target` in a worker thread, one round at a time, yielding each round's record."""
    grid: Optional[InProcessGrid] = getattr(target, "grid", None)
    ledger = PrivacyLedger(config, [len(s) for s in federated_data(config).shares])
    handed: queue.Queue = queue.Queue()
    resume, stop = threading.Semaphore(0), threading.Event()
    clock = [0.0]

    def report(server_round: int, loss: float, accuracy: float, outcome: Optional[RoundOutcome]) -> None:
        if stop.is_set():
            raise _Stopped
        if server_round == 0:
            if on_initial is not None:
                on_initial(loss, accuracy)
            return
        outcome = outcome or RoundOutcome()
        ledger.record_round(outcome.replied)
        handed.put(("round", _record(server_round, loss, accuracy, outcome, grid, ledger, clock, config)))
        resume.acquire()
        if stop.is_set():
            raise _Stopped

    def work() -> None:
        try:
            target(report)
            handed.put(("end", None))
        except _Stopped:
            handed.put(("end", None))
        except BaseException as err:  # handed to the caller's thread, raised there
            handed.put(("error", err))

    worker = threading.Thread(target=work, name="flower-server", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = handed.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item
            resume.release()
    finally:
        if worker.is_alive():
            stop.set()
            resume.release()
            worker.join()


def _record(server_round: int, loss: float, accuracy: float, outcome: RoundOutcome, grid: Optional[InProcessGrid],
            ledger: PrivacyLedger, clock: list[float], config: Config) -> RoundRecord:
    """Join what the server (outcome, test) and the grid (clock) know of one round."""
    timings = tuple(grid.timings.get(server_round, ())) if grid is not None else ()
    if grid is not None:
        seconds = grid.round_seconds.get(server_round, 0.0)
        clock[0] += seconds
    else:
        seconds, clock[0] = math.nan, math.nan
    status = [t.status for t in timings]
    arrived = [t for t in timings if t.status == "replied"]
    return RoundRecord(
        round=server_round, virtual_seconds=clock[0], round_seconds=seconds,
        sampled=len(outcome.sampled) or len(timings), replied=len(outcome.replied),
        dropped=status.count("dropped"), straggled=status.count("straggler"),
        bytes_up=sum(t.bytes_up for t in arrived), bytes_down=sum(t.bytes_down for t in timings),
        accuracy=accuracy, loss=loss, epsilon=ledger.epsilon(), aborted=outcome.aborted,
        attack_success=outcome.attack_success, honest_cosine=outcome.honest_cosine, clients=tuple(outcome.replied),
        kept=tuple(sorted(outcome.kept.items())), timings=timings, view=outcome.view,
    )
