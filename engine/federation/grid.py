"""A Flower `Grid` in one process: it hands each message straight to the ClientApp, on a virtual clock.

    grid = InProcessGrid(client_app, config)          # one node per client, node ids 1..K
    strategy.start(grid, arrays, num_rounds=20)       # Flower's loop, unchanged
    grid.timings[r]                                   # when each sampled client's phases ended in round r

Flower's Simulation Runtime runs every ClientApp call through Ray actors; for the lab's few hundred
small clients a direct call is 20x faster and needs no Ray. What Flower does not model, this grid
adds (see `clock`): per-client latency, bandwidth and speed, dropouts and the round's deadline.
A dropped client is never called; a client that would miss the deadline is not called either
(its reply, the same arrays it was sent, could not have counted); everyone else trains for real,
and the reply's own size, `ArrayRecord.count_bytes()`, goes on the clock.
"""

from __future__ import annotations

from typing import Iterable, Optional

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from ..config import Config, to_json
from .clock import ClientTiming, client_timing, draw_profiles, dropout_draws, fastest_round_trip
from .task import federated_data

__all__ = ["InProcessGrid", "SECURE_BYTES_PER_PEER"]

SECURE_BYTES_PER_PEER = 130  # keys and Shamir shares a client sends per other client (bench/defences.py)
SECURE_ROUND_TRIPS = 3  # advertise keys, share keys, unmask: on top of the plain download and upload


class InProcessGrid(Grid):
    """Calls `client_app` for each message, in order, and keeps the virtual clock."""

    def __init__(self, client_app: ClientApp, config: Config, run_id: int = 1) -> None:
        self.client_app, self.config = client_app, config
        self._run = Run.create_empty(run_id)
        f = config.federation
        data = federated_data(config)
        self.sizes = [len(s) for s in data.shares]
        self.profiles = draw_profiles(f, config.seed)
        run_config = {"lab-config": to_json(config)}
        self.contexts = {
            k + 1: Context(run_id, k + 1, {"partition-id": k, "num-partitions": f.clients}, RecordDict(), run_config)
            for k in range(f.clients)
        }
        self.timings: dict[int, list[ClientTiming]] = {}
        self.round_seconds: dict[int, float] = {}
        self._inbox: dict[str, Message] = {}
        self._count = 0

    # -- Grid's interface -----------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: Optional[float] = None) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message on the clock; the replies that make the deadline wait in the inbox."""
        messages = list(messages)
        if not messages:
            return []
        server_round = int(messages[0].content["config"]["server-round"])
        f = self.config.federation
        nodes = [m.metadata.dst_node_id for m in messages]
        dropped = dropout_draws(f, self.config.seed, server_round, [n - 1 for n in nodes])
        secure = self.config.defence.secure_aggregation
        extra_up = SECURE_BYTES_PER_PEER * (len(messages) - 1) if secure else 0
        ids, timings = [], []
        for message in messages:
            client = message.metadata.dst_node_id - 1
            self._count += 1
            message.metadata.__dict__["_message_id"] = f"{server_round}-{self._count}"
            down = message.content["arrays"].count_bytes()
            timing = self._timing(client, down, down + extra_up, client in dropped, secure)
            if timing.status == "replied":  # train for real; the reply's own size goes on the clock
                reply = self.client_app(message, self.contexts[client + 1])
                up = reply.content["arrays"].count_bytes() + extra_up
                timing = self._timing(client, down, up, False, secure)
                if timing.status == "replied":
                    self._inbox[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
            timings.append(timing)
        self.timings[server_round] = timings
        missing = any(t.status != "replied" for t in timings)
        last = max((t.upload for t in timings if t.status == "replied"), default=f.deadline)
        self.round_seconds[server_round] = f.deadline if missing else last
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._inbox.pop(i) for i in message_ids if i in self._inbox]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: Optional[float] = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))

    # -- the clock ------------------------------------------------------------------------------
    def _timing(self, client: int, down: int, up: int, dropped: bool, secure: bool) -> ClientTiming:
        epochs = self.config.federation.local_epochs
        return client_timing(
            client, self.profiles[client], self.sizes[client], epochs, down, up, self.config.federation.deadline,
            dropped, SECURE_ROUND_TRIPS if secure else 0,
        )

    def check_deadline(self, bytes_model: int) -> None:
        """Reject, before any work, a deadline that no client could ever meet."""
        f = self.config.federation
        best = fastest_round_trip(self.profiles, self.sizes, f.local_epochs, bytes_model)
        if best > f.deadline:
            raise ValueError(
                f"no client can reply within the deadline of {f.deadline:g} s: the fastest needs {best:.3g} s "
                f"(download, {f.local_epochs} epochs, upload); raise federation.deadline"
            )

