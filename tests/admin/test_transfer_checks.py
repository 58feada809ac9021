"""The panel's import refuses what ``import-config`` refuses: it calls the same parse function."""

from __future__ import annotations

import html

import pytest

from tests.integration.test_cli_import_checks import CASES


@pytest.mark.parametrize("dry_run", [False, True], ids=["import", "dry run"])
@pytest.mark.parametrize("case", CASES)
def test_the_panels_import_refuses_the_same(panel, store, case, dry_run):
    text, reason = CASES[case]
    before = store.version()
    response = panel.post("/config/import", {"text": text, **({"dry_run": "y"} if dry_run else {})})
    assert response.status_code == 400
    assert reason in html.unescape(response.get_data(as_text=True))
    assert store.version() == before
