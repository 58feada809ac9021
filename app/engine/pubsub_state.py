"""Which channels a Pub/Sub connection should be subscribed to, and what to send to get there. No I/O.

The engine wants and unwants channels at any time; Redis confirms each SUBSCRIBE and UNSUBSCRIBE later,
in order, on the same connection. Between the two, a channel may be wanted again while its UNSUBSCRIBE is
on its way, or dropped while its SUBSCRIBE is; and a reconnect forgets everything Redis had confirmed.
:class:`PubSubState` keeps the four sets that reconcile this and answers three questions: what to send on
the next flush, whether a confirmed channel is now live, and what a fresh connection must subscribe.
The socket side (:class:`.pubsub.ShardSubscriber`) only sends what it is told and reports what it reads.
"""

from __future__ import annotations


class PubSubState:
    """The subscription reconciliation of one Pub/Sub connection."""

    __slots__ = ("confirmed", "pending_subscribe", "pending_unsubscribe", "unsubscribing", "wanted")

    def __init__(self) -> None:
        self.wanted: set[bytes] = set()  # what the engine asked for
        self.confirmed: set[bytes] = set()  # what Redis confirmed on this connection
        self.unsubscribing: set[bytes] = set()  # UNSUBSCRIBE sent, not confirmed yet
        self.pending_subscribe: set[bytes] = set()  # to send with the next flush
        self.pending_unsubscribe: set[bytes] = set()

    # ------------------------------------------------------------------ what the engine asks
    def want(self, channel: bytes) -> bool:
        """Add ``channel``; True when it is live on this connection already (nothing to send)."""
        if channel in self.wanted:
            return channel in self.confirmed and channel not in self.unsubscribing
        self.wanted.add(channel)
        self.pending_unsubscribe.discard(channel)
        if channel in self.unsubscribing:
            return False  # subscribed again once Redis confirms the UNSUBSCRIBE on its way
        if channel in self.confirmed:
            return True
        self.pending_subscribe.add(channel)
        return False

    def unwant(self, channel: bytes) -> bool:
        """Drop ``channel``; False when it was not wanted (nothing changes)."""
        if channel not in self.wanted:
            return False
        self.wanted.discard(channel)
        self.pending_subscribe.discard(channel)
        self.pending_unsubscribe.add(channel)
        return True

    @property
    def has_pending(self) -> bool:
        """Whether a flush has something to send."""
        return bool(self.pending_subscribe or self.pending_unsubscribe)

    def take_pending(self) -> tuple[list[bytes], list[bytes]]:
        """(channels to UNSUBSCRIBE, channels to SUBSCRIBE), in that order, for the flush about to send
        them; they count as sent from now on."""
        unsubscribe = list(self.pending_unsubscribe)
        subscribe = list(self.pending_subscribe)
        self.pending_unsubscribe.clear()
        self.pending_subscribe.clear()
        self.unsubscribing.update(unsubscribe)
        return unsubscribe, subscribe

    # ------------------------------------------------------------------ what Redis answers
    def subscribed(self, channel: bytes) -> bool:
        """A SUBSCRIBE confirmation. True: the channel is live. False: it was dropped while the SUBSCRIBE
        was on its way, and an UNSUBSCRIBE is pending or on its way."""
        self.confirmed.add(channel)
        if channel in self.wanted:
            return True
        if channel not in self.unsubscribing:  # else its UNSUBSCRIBE is on its way already
            self.pending_unsubscribe.add(channel)
        return False

    def unsubscribed(self, channel: bytes) -> None:
        """An UNSUBSCRIBE confirmation; a channel wanted again meanwhile is subscribed again."""
        self.confirmed.discard(channel)
        self.unsubscribing.discard(channel)
        if channel in self.wanted:
            self.pending_subscribe.add(channel)

    def connected(self) -> None:
        """A new connection: Redis knows nothing, so everything wanted is to be subscribed."""
        self.confirmed.clear()
        self.unsubscribing.clear()
        self.pending_unsubscribe.clear()
        self.pending_subscribe = set(self.wanted)
