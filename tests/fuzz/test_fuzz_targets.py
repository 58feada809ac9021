"""The coverage-guided fuzz targets run (briefly) in CI, so they keep working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TARGETS = Path(__file__).with_name("fuzz_targets.py")


@pytest.mark.parametrize("target", ["stream_sql", "pdu", "frames"])
def test_fuzz_target_runs_without_a_crash(target, tmp_path):
    options = [f"-dict={TARGETS.with_name('stream_sql.dict')}"] if target == "stream_sql" else []
    result = subprocess.run(
        [
            sys.executable,
            str(TARGETS),
            target,
            "-atheris_runs=5000",
            f"-artifact_prefix={tmp_path}/",
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
