"""Cobra-protocol pub/sub broker: gevent + gevent-websocket at the edge, Redis behind."""

__version__ = "0.1.0"
