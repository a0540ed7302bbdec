"""The lab's ClientApp (`engine.federation.client_app.app`): a SuperNode runs it for each message.

Each SuperNode says which share of the train sample it holds:
`flower-supernode ... --node-config "partition-id=0 num-partitions=2"`.
"""

from engine.federation.client_app import app

__all__ = ["app"]
