"""One settings object: defaults, environment variables, flags."""

from __future__ import annotations

import argparse

import pytest

from app.settings import Settings, add_settings_arguments, describe_settings, settings_from_args


def test_defaults():
    settings = Settings.from_env({})
    assert settings.port == 8765
    assert settings.max_message_size == 1 << 20
    assert settings.redis_url == ""


def test_environment_overrides_defaults():
    settings = Settings.from_env({"COBRA_PORT": "9000", "REDIS_URL": "redis://x", "COBRA_DEFLATE": "no"})
    assert (settings.port, settings.redis_url, settings.deflate) == (9000, "redis://x", False)


def test_flags_override_environment():
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    args = parser.parse_args(["--port", "9100", "--no-deflate"])
    settings = settings_from_args(args, {"COBRA_PORT": "9000"})
    assert settings.port == 9100 and settings.deflate is False


@pytest.mark.parametrize(("name", "value"), [("COBRA_PORT", "eighty"), ("COBRA_DEFLATE", "maybe")])
def test_bad_values_fail_with_the_variable_name(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_every_setting_is_described_with_flag_and_env():
    rows = describe_settings()
    assert rows[[r[0] for r in rows].index("--redis-url")][:2] == ("--redis-url", "REDIS_URL")
    assert all(flag.startswith("--") and env and help_text for flag, env, _default, help_text in rows)


def test_readme_configuration_table_is_current():
    from pathlib import Path

    from app.settings import settings_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    start = readme.index("<!-- settings-table -->") + len("<!-- settings-table -->")
    end = readme.index("<!-- /settings-table -->")
    assert readme[start:end].strip() == settings_table(), "run `python -m app settings` and update README.md"
