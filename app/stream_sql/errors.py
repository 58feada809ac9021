"""The one exception of the StreamSQL package."""


class FilterError(ValueError):
    """A filter the broker refuses (PROTOCOL §6, "Anything else → the subscribe error").

    ``position`` is the 0-based character offset of the problem, so the subscribe error's ``reason`` can point
    at it; ``str(e)`` is a human reason that already includes the position, e.g.
    ``"unexpected token 'FRM' at position 9 (expected FROM)"``. Subclassing ValueError lets callers that do
    not know about StreamSQL still catch it as "bad input".
    """

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.position = position
