"""The lab's ServerApp (`engine.federation.server_app.app`): the strategy, the rounds, the test.

It waits until `federation.clients` SuperNodes are connected, runs `federation.rounds` rounds and
prints one JSON line per round (and appends it to `<out>/rounds.jsonl` when the run config sets `out`).
"""

from engine.federation.server_app import app

__all__ = ["app"]
