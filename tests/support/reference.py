"""The reference Cobra client (``cobras`` 2.9.137 from PyPI), unchanged, in its own venv.

bench/reference/setup.sh installs it on first use (Python 3.11, websockets 10.4, the ``format_close`` shim)
and prints the venv; later runs reuse it. Shared by every test that runs the real ``cobra`` command line.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

from tests.support.processes import ROOT

SETUP = ROOT / "bench" / "reference" / "setup.sh"


def unavailable(why: str) -> NoReturn:
    """Skip on a developer's machine without network; fail in CI, where a silent skip would hide that our
    only independent-client test did not run."""
    if os.environ.get("CI", "").lower() in {"true", "1"}:
        pytest.fail(f"CI=true and {why}", pytrace=False)
    pytest.skip(why)


def install_reference_cli() -> Path:
    """The ``cobra`` executable of the reference venv (installed on first use), or a skip/fail."""
    try:
        result = subprocess.run([str(SETUP)], capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        unavailable("installing the reference cobras client took more than 15 minutes")
    if result.returncode != 0:
        unavailable(f"the reference cobras client could not be installed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.strip()) / "bin" / "cobra"


def reference_env(apps_yaml: Path) -> dict[str, str]:
    """The environment the ``cobra`` command runs in: our variables out, its apps.yaml in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRA_")}
    env.update(COBRA_APPS_CONFIG=str(apps_yaml), PYTHONUNBUFFERED="1")
    return env
