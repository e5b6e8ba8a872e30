"""Settings: file + environment, and the place named when something is wrong."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from models.errors import ConfigError
from models.settings import DEFAULT_CONFIG, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("SALESPULSE_"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_committed_defaults_load_and_match_the_model() -> None:
    settings = load_settings(DEFAULT_CONFIG)
    assert settings.database.url.endswith("/salespulse.db")
    assert settings.sync.lookback_s == 300
    assert settings.company.reporting_currency == "USD"
    assert settings.salesforce.enabled is False
    assert settings.rules.paths == [DEFAULT_CONFIG.parent / "rules.d"]
    assert settings.rules.max_data_age == 60


def test_environment_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[sync]\nbatch_size = 10\n[slack]\ndefault_channel = "#a"\n')
    monkeypatch.setenv("SALESPULSE_SYNC__BATCH_SIZE", "25")
    monkeypatch.setenv("SALESPULSE_SALESFORCE__ENABLED", "true")
    monkeypatch.setenv("SALESPULSE_RULES__PATHS", "a.toml, /abs/b.toml")
    monkeypatch.setenv("SALESPULSE_COMPANY__FX_RATES__eur", "1.08")
    settings = load_settings(path)
    assert settings.sync.batch_size == 25
    assert settings.slack.default_channel == "#a"
    assert settings.salesforce.enabled is True
    assert settings.rules.paths == [tmp_path / "a.toml", Path("/abs/b.toml")]
    assert settings.company.fx_rates == {"EUR": Decimal("1.08")}


def test_relative_paths_are_relative_to_the_settings_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "sqlite:///data/w.db"\n[quotas]\npath = "q.csv"\n')
    settings = load_settings(path)
    assert settings.database.url == f"sqlite:///{tmp_path}/data/w.db"
    assert settings.quotas.path == tmp_path / "q.csv"


def test_config_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[sync]\ninterval_minutes = 7\n")
    monkeypatch.setenv("SALESPULSE_CONFIG", str(path))
    assert load_settings().sync.interval_minutes == 7


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("[sync]\n\nbatch_size = 0\n", "settings.toml:3: sync.batch_size", "greater than or equal to 1"),
        ('[company]\ntimezone = "Mars/Olympus"\n', "settings.toml:2: company.timezone", "IANA time zone"),
        ('[company]\nreporting_currency = "usd"\n', "company.reporting_currency", "ISO 4217"),
        ("[company.fx_rates]\nEUR = -1\n", "company.fx_rates", "positive number"),
        ('[company.lead_capacity]\n"ana@x.com" = -0.5\n', "company.lead_capacity", "capacity of 'ana@x.com'"),
        ('[company.lead_capacity]\n"ana@x.com" = "half"\n', "company.lead_capacity", "valid number"),
        ('[database]\nurl = "not a url"\n', "settings.toml:2: database.url", "SQLAlchemy URL"),
        ('[salesforce]\napi_version = "v59"\n', "salesforce.api_version", "like '59.0'"),
        ('[salesforce]\ndomain = "https://test.salesforce.com"\n', "salesforce.domain", "'login', 'test'"),
        ('[salesforce]\ndomain = "acme.my.salesforce.com"\n', "salesforce.domain", "without https://"),
        ("[sync]\nbatchsize = 5\n", "sync.batchsize", "unknown key"),
        ("[syncs]\nx = 1\n", "syncs", "unknown key"),
        ('[log]\nlevel = "LOUD"\n', "log.level", "'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("[sync\nx=1", "settings.toml", "not valid TOML"),
    ],
)
def test_bad_file_value_names_file_key_and_expectation(tmp_path: Path, text: str, where: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert where in message
    assert expected in message
    assert str(tmp_path) in message


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("SALESPULSE_SYNC__LOOKBACK_S", "-5", "greater than or equal to 0"),
        ("SALESPULSE_HUBSPOT__ENABLED", "maybe", "valid boolean"),
        ("SALESPULSE_DATABSE__URL", "sqlite://", "unknown setting"),
        ("SALESPULSE_DATABASE_URL", "sqlite://", "unknown setting"),
    ],
)
def test_bad_environment_value_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, ""))
    assert f"environment variable {name}" in str(info.value)
    assert expected in str(info.value)


def test_secret_in_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = write(tmp_path, '[slack]\ntoken = "xoxb-SECRET-in-file"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "SALESPULSE_SLACK__TOKEN" in str(info.value)
    assert "settings.toml:2" in str(info.value)
    assert "xoxb-SECRET-in-file" not in str(info.value)


def test_secrets_are_masked_in_repr_and_collected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESPULSE_HUBSPOT__ACCESS_TOKEN", "pat-na1-TOPSECRET")
    monkeypatch.setenv("SALESPULSE_DATABASE__URL", "postgresql+psycopg://u:DBPASSWORD@h/db")
    settings = load_settings(write(tmp_path, ""))
    assert "pat-na1-TOPSECRET" not in repr(settings)
    assert set(settings.secret_values()) == {"pat-na1-TOPSECRET", "DBPASSWORD"}
    assert "DBPASSWORD" not in settings.database.display_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cannot open postgresql+psycopg://u:S3CRETPW@h:5432/db", "cannot open postgresql+psycopg://u:***@h:5432/db"),
        ("url='postgresql://u:pa@ss:word@h/db' failed", "url='postgresql://u:***@h/db' failed"),
        ("Invalid header value b'Bearer pat-TOKEN\\n'", "Invalid header value b'Bearer ***'"),
        ("token pat-TOKEN\n end", "token *** end"),
        ("mail ana@example.com at https://example.com/a", "mail ana@example.com at https://example.com/a"),
    ],
)
def test_redactor_masks_secrets_as_repr_shows_them_and_every_url_password(text: str, expected: str) -> None:
    from models.logs import RedactSecrets

    got = RedactSecrets(["pat-TOKEN\n"]).redact(text)
    assert got == expected
    assert "S3CRETPW" not in got
    assert "TOKEN" not in got


def test_environment_secrets_are_found_without_valid_settings() -> None:
    from models.settings import environment_secrets

    environ = {
        "SALESPULSE_SLACK__TOKEN": "xoxb-1",
        "SALESPULSE_HUBSPOT__ACCESS_TOKEN__NESTED": "pat-2",
        "SALESPULSE_DATABASE__URL": "postgresql://user:pw@3@h:notaport/x",
        "SALESPULSE_SLACK__DEFAULT_CHANNEL": "#not-a-secret",
        "HOME": "/root",
    }
    assert sorted(environment_secrets(environ)) == ["pat-2", "pw@3", "xoxb-1"]
