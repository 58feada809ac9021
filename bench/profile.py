"""Sample the server under load with py-spy and say where its CPU goes.

During a scenario's measured window two samplers attach to the server process without pausing it
(``--nonblocking``): one writes the flame graph (SVG, for people), the other the collapsed stacks (``raw``),
which ``summarise`` turns into the top functions by self time and by inclusive time. Idle samples (the
gevent hub waiting in epoll) are left out by py-spy, so percentages are of the time the server was on CPU.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .report import markdown_table

FRAME_RE = re.compile(r"^(?P<function>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise RuntimeError("py-spy is not installed (pip install -r requirements-dev.txt)")
    return found


class Profiler:
    """Flame graph + collapsed stacks of ``pid`` for ``duration`` seconds, written next to ``prefix``."""

    def __init__(self, prefix: Path, rate: int = 250) -> None:
        self.prefix = prefix
        self.rate = rate
        self.processes: list[subprocess.Popen] = []

    @property
    def svg(self) -> Path:
        return self.prefix.with_suffix(".svg")

    @property
    def raw(self) -> Path:
        return self.prefix.with_suffix(".collapsed.txt")

    def start(self, pid: int, duration: float) -> None:
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        for fmt, out in (("flamegraph", self.svg), ("raw", self.raw)):
            command = [py_spy(), "record", "--pid", str(pid), "--duration", str(max(1, int(duration)))]
            command += ["--rate", str(self.rate), "--nonblocking", "--format", fmt, "--output", str(out)]
            self.processes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            )

    def wait(self) -> None:
        for process in self.processes:
            try:
                _, err = process.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                err = "timed out"
            if process.returncode != 0:
                print(f"py-spy failed ({process.returncode}): {err.strip()[-500:]}", file=sys.stderr)


def _frame_name(frame: str) -> str:
    """``function (package/module.py:line)`` → ``package/module.py:function`` (lines merged)."""
    match = FRAME_RE.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['file']}:{match['function']}"


def summarise(raw: Path, top: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Top functions by self and by inclusive share of the samples in a py-spy ``raw`` file."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";")]
        # py-spy starts each stack with the thread name; keep only Python frames.
        frames = [f for f in frames if ".py:" in f] or frames
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return {"self": [], "inclusive": [], "samples": []}
    return {
        "self": [(name, round(100 * n / total, 1)) for name, n in own.most_common(top)],
        "inclusive": [(name, round(100 * n / total, 1)) for name, n in inclusive.most_common(top * 2)],
        "samples": [("total", float(total))],
    }


def summary_table(summary: dict[str, list[tuple[str, float]]]) -> str:
    rows = [[name, f"{pct:.1f}%"] for name, pct in summary["self"]]
    self_table = markdown_table(["function (self time)", "share"], rows)
    rows = [[name, f"{pct:.1f}%"] for name, pct in summary["inclusive"]]
    inclusive_table = markdown_table(["function (inclusive)", "share"], rows)
    return self_table + "\n\n" + inclusive_table
