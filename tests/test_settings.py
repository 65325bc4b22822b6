"""Settings: pydantic-settings reads OMNI_* and .env; with nothing to read, the defaults
come without it."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

from omni.settings import DEFAULTS, ENV_FILE, ENV_NAMES, Settings, load_settings
from omni.settings_env import EnvSettings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No settings in the environment, and a working directory without .env."""
    for name in list(os.environ):
        if name.lower() in ENV_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_env_names_are_every_variable_pydantic_settings_reads() -> None:
    prefix = EnvSettings.model_config.get("env_prefix", "")
    names = set()
    for name, field in EnvSettings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice).lower() for choice in alias.choices}
        else:
            assert alias is None
            names.add(f"{prefix}{name}".lower())
    assert names == ENV_NAMES
    assert EnvSettings.model_config.get("env_file") == ENV_FILE


def test_both_have_the_same_fields_and_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert [f.name for f in dataclasses.fields(Settings)] == list(EnvSettings.model_fields)
    assert Settings(**EnvSettings().model_dump()) == DEFAULTS


def test_nothing_to_read_gives_the_defaults(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMNI_ACTOR", "someone")  # an OMNI_ variable that is no setting
    assert load_settings() == DEFAULTS


def test_the_environment_is_read_case_insensitively(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMNI_DEBUG", "yes")
    clean_env.setenv("omni_json", "1")
    clean_env.setenv("OMNI_INVENTORY", "/srv/inventory")
    clean_env.setenv("OMNI_LOCK_LEASE_SECONDS", "5")
    assert load_settings() == Settings(inventory=Path("/srv/inventory"), json_output=True,
                                       debug=True, lock_lease_seconds=5.0)


def test_json_output_is_read_too(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("JSON_OUTPUT", "true")
    assert load_settings().json_output is True


def test_a_dotenv_file_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OMNI_COLOR=false\nOTHER=1\n")
    assert load_settings() == dataclasses.replace(DEFAULTS, color=False)


def test_a_bad_value_is_pydantics_validation_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("OMNI_LOCK_LEASE_SECONDS", "0.5")
    with pytest.raises(ValidationError, match="lock_lease_seconds"):
        load_settings()


def test_no_color_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    assert Settings(color=True).use_color is False
    monkeypatch.delenv("NO_COLOR")
    assert Settings(color=True).use_color is True
    assert Settings().use_color is None
