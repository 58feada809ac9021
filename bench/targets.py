"""Every server ``python -m bench`` can start, by name, and which scenarios each can express."""

from __future__ import annotations

from pathlib import Path

from .nchan import NCHAN_KINDS, NCHAN_UNSUPPORTED, NchanServer
from .scenarios import Scenario
from .servers import ROOT, LocalServer

# gunicorn1/gunicorn2: our broker under gunicorn (gunicorn.conf.py) with 1 or 2 CobraWorker processes.
SERVER_KINDS = ("ours", "reference", *NCHAN_KINDS, "gunicorn1", "gunicorn2")


def make_server(
    kind: str,
    workdir: Path,
    broker_cpus: list[int] | None,
    load_cpus: list[int] | None,
    *,
    source: Path = ROOT,
    extra_env: dict[str, str] | None = None,
) -> LocalServer | NchanServer:
    """A not yet started server of ``kind`` (see SERVER_KINDS); use it as a context manager."""
    if kind in NCHAN_KINDS:
        return NchanServer(kind, workdir, broker_cpus, load_cpus)
    if kind not in SERVER_KINDS:
        raise SystemExit(f"unknown server {kind!r}; one of {', '.join(SERVER_KINDS)}")
    return LocalServer(kind, workdir, broker_cpus, load_cpus, source=source, extra_env=dict(extra_env or {}))


def unsupported(kind: str, scenario: Scenario) -> str | None:
    """Why server ``kind`` cannot run ``scenario`` (the row is recorded as not run), or None."""
    if kind in NCHAN_KINDS and scenario.name in NCHAN_UNSUPPORTED:
        return f"{kind} cannot express scenario {scenario.name!r} (StreamSQL filters are ours only)"
    return None
