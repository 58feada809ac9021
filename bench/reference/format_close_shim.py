"""Give websockets >= 10 back ``websockets.exceptions.format_close`` for the reference ``cobras`` client.

websockets 10 removed the function (``cobras/client/connection.py`` ``Connection.close`` still uses it). This
file is copied into the reference venv only (by ``bench/reference/setup.sh``) and imported from a ``.pth``
line, so it runs before the ``cobra`` CLI does. It mirrors the function websockets 9 had.
"""

from __future__ import annotations


def _install() -> None:
    try:
        import websockets.exceptions as exceptions
    except ImportError:  # the venv is half-built; setup.sh reports that itself
        return
    if hasattr(exceptions, "format_close"):
        return
    try:
        from websockets.frames import CLOSE_CODES
    except ImportError:
        CLOSE_CODES = {}

    def format_close(code: int, reason: str) -> str:
        """Human-readable close code + reason, as websockets 9's ``format_close`` printed them."""
        if 3000 <= code < 4000:
            explanation = "registered"
        elif 4000 <= code < 5000:
            explanation = "private use"
        else:
            explanation = CLOSE_CODES.get(code, "unknown")
        result = f"code = {code} ({explanation}), "
        return result + (f"reason = {reason}" if reason else "no reason")

    exceptions.format_close = format_close


_install()
