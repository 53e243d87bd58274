"""Settings: env with the AIMASS_ prefix, nested sections, YAML files, unknown keys refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aimass.errors import AimassError, ErrorCode
from aimass.settings import Batching, Settings, load_settings


def test_defaults_are_embedded_and_local(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.database_url() == f"sqlite:///{tmp_path / 'registry.db'}"
    assert settings.artifact_url() == str(tmp_path / "artifacts")
    assert settings.server.host == "127.0.0.1"


def test_environment_sets_nested_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_REGISTRY__DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("AIMASS_SERVER__PORT", "9001")
    settings = load_settings()
    assert settings.database_url() == "postgresql+psycopg://u@h/db"
    assert settings.server.port == 9001


def test_urls_that_may_hold_passwords_are_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMASS_REGISTRY__DATABASE_URL", "postgresql+psycopg://u:hunter2@h/db")
    monkeypatch.setenv("AIMASS_GATEWAY__REDIS_URL", "redis://:hunter3@h:6379/0")
    settings = load_settings()
    for shown in (repr(settings), str(settings), settings.model_dump_json()):
        assert "hunter2" not in shown and "hunter3" not in shown
    assert "hunter2" in settings.database_url()
    assert "hunter3" in settings.gateway.redis_url.get_secret_value()


def test_file_then_environment_then_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "aimass.yaml"
    config.write_text(
        "server:\n  port: 7000\n  host: 127.0.0.2\nregistry:\n  allow_pickle: false\n"
    )
    monkeypatch.setenv("AIMASS_SERVER__PORT", "7001")
    settings = load_settings(config, home=tmp_path)
    assert settings.server.port == 7001  # env beats the file
    assert settings.server.host == "127.0.0.2"  # the file's other keys survive the merge
    assert settings.registry.allow_pickle is False
    assert settings.home == tmp_path


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    config = tmp_path / "aimass.yaml"
    config.write_text("server:\n  prot: 1\n")
    with pytest.raises(AimassError, match=r"unknown setting server\.prot \(AIMASS_SERVER__PROT\)"):
        load_settings(config)


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        (
            {"AIMASS_SERVING__MAX_BATCH_SIZE": "abc"},
            {},
            "invalid setting serving.max_batch_size (AIMASS_SERVING__MAX_BATCH_SIZE) = 'abc': ",
        ),
        ({}, {"server": {"port": 70000}}, "server.port (AIMASS_SERVER__PORT) = 70000: "),
        ({}, {"server": {"port": -1}}, "server.port (AIMASS_SERVER__PORT) = -1: "),
        ({}, {"server": {"workers": 0}}, "server.workers (AIMASS_SERVER__WORKERS) = 0: "),
    ],
)
def test_a_bad_value_is_invalid_input_naming_the_setting_and_the_value(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], overrides: Any, message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(AimassError) as caught:
        load_settings(**overrides)
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert message in caught.value.message


def test_a_bad_secret_is_named_but_never_shown(tmp_path: Path) -> None:
    config = tmp_path / "aimass.yaml"
    config.write_text("registry:\n  database_url: [hunter2]\n")
    with pytest.raises(AimassError) as caught:
        load_settings(config)
    assert "registry.database_url (AIMASS_REGISTRY__DATABASE_URL) = (hidden)" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("server: [1\n", "is not readable YAML: expected ',' or ']', but got '<stream end>'"),
        ("- 1\n", "expected a mapping of settings at the top level"),
    ],
)
def test_a_config_file_that_is_not_a_yaml_mapping_is_invalid_input(
    tmp_path: Path, text: str, message: str
) -> None:
    config = tmp_path / "aimass.yaml"
    config.write_text(text)
    with pytest.raises(AimassError) as caught:
        load_settings(config)
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert message in caught.value.message and str(config) in caught.value.message


def test_batching_overrides_a_model_then_a_version_over_the_defaults(tmp_path: Path) -> None:
    config = tmp_path / "aimass.yaml"
    config.write_text(
        "serving:\n"
        "  max_batch_size: 16\n"
        "  fill_fraction: 0.2\n"
        "  per_model:\n"
        "    minilm: {max_batch_size: 64, fill_fraction: 0.5}\n"
        "    'minilm:3': {max_delay_ms: 0}\n"
    )
    serving = load_settings(config).serving

    assert serving.batching("iris", 1) == Batching(16, 2.0, 0.2)
    assert serving.batching("minilm", 2) == Batching(64, 2.0, 0.5)
    assert serving.batching("minilm", 3) == Batching(64, 0.0, 0.5)
