"""Federated training you can watch: the lab's Flower App, on a virtual clock, round by round.

    for record in simulate(config): ...            # RoundRecord per round (accuracy, clock, epsilon, view)
    history = run_history(config)                   # the whole run
    setup = round_setup(config, server_round=5)     # round 5's server view as a Setup any attack takes

The App follows Flower's own layout: `task` (data, local training, test; no Flower), `client_app`,
`server_app` and `strategy`; `grid` runs it in one process on the `clock`; `accounting` composes the
privacy spent; `views` turns what the server saw into a `Leak`.
"""

from .history import CSV_COLUMNS, History, RoundRecord
from .simulate import FederationError, run_history, simulate
from .strategy import ServerView

__all__ = ["simulate", "run_history", "History", "RoundRecord", "CSV_COLUMNS", "ServerView", "FederationError"]
