"""Reuse of compiled filters: one StreamFilter object per distinct filter text (PROTOCOL §6, "identical
filters on one channel are evaluated once per message").

Two layers:
- every filter still referenced (by a subscription) is found again through a weak map, so identity holds
  for as long as anyone uses the filter, however many other filters were compiled since;
- the most recently compiled filters are also kept alive by a bounded LRU, so a client that resubscribes
  (reconnect storms) does not pay the ~0.3 ms parse + compile again.

The LRU is bounded by entries *and* by total filter text, because the memory a compiled filter holds grows
with its text: about 6 KB for a typical 100-character filter, and at most ~100 bytes per character measured
(a 4 KB filter of hundreds of columns or of one very long path holds ~400 KB, mostly CPython bytecode and
its location table).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar


class _HasText(Protocol):
    text: str


T = TypeVar("T", bound=_HasText)


class FilterCache(Generic[T]):
    """LRU of at most ``max_entries`` values and ``max_chars`` characters of text, plus a weak map of all
    live values. The defaults hold 1024 typical filters (~6 MB) and never more than ~13 MB of compiled code
    (128K characters at the worst ~100 bytes per character)."""

    def __init__(self, max_entries: int = 1024, max_chars: int = 128 * 1024) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._recent: OrderedDict[Hashable, T] = OrderedDict()
        self._chars = 0
        self._live: weakref.WeakValueDictionary[Hashable, T] = weakref.WeakValueDictionary()
        self._lock = threading.Lock()  # OrderedDict reordering is not atomic under real threads

    def get(self, key: Hashable) -> T | None:
        with self._lock:
            value = self._recent.get(key)
            if value is None:
                value = self._live.get(key)
            if value is not None:
                self._remember(key, value)
            return value

    def add(self, key: Hashable, value: T) -> T:
        """Store ``value`` and return what callers must use: an equal filter compiled concurrently wins."""
        with self._lock:
            value = self._live.setdefault(key, value)
            self._remember(key, value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._recent.clear()
            self._chars = 0
            self._live.clear()

    def __len__(self) -> int:
        return len(self._recent)

    def _remember(self, key: Hashable, value: T) -> None:
        if key in self._recent:
            self._recent.move_to_end(key)
            return
        self._recent[key] = value
        self._chars += len(value.text)
        while len(self._recent) > self.max_entries or self._chars > self.max_chars:
            _, evicted = self._recent.popitem(last=False)
            self._chars -= len(evicted.text)
