"""The Gradient Inversion Lab's Flower App, as `flwr run` loads it (see ../pyproject.toml).

The App is `engine.federation`'s own ServerApp and ClientApp; these modules only name them, so the
deployed run trains, aggregates and tests exactly as `python -m engine simulate` does. The SuperNodes
and the SuperLink need the lab's repository on PYTHONPATH (the apps import `engine`).
"""
