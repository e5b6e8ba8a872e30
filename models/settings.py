"""Settings: ``settings.toml`` (or ``--config`` / ``SALESPULSE_CONFIG``) overlaid by
``SALESPULSE_<SECTION>__<KEY>`` environment variables.

Why the strictness: the daemon runs unattended for months, so a typo must stop it at
start with the place to fix (file or variable, key, what was expected), not be ignored.
Unknown keys in the file and unknown ``SALESPULSE_*`` variables are errors too. Secrets
(tokens, passwords, session ids, keys) are ``SecretStr``, come only from the
environment, and are never echoed in an error.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from models.errors import ConfigError
from models.logs import mask_url_passwords, mask_userinfo

ENV_PREFIX = "SALESPULSE_"
CONFIG_ENV = "SALESPULSE_CONFIG"
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "settings.toml"


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string (handy in environment variables)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


_URL_EXAMPLE = "sqlite:///salespulse.db or postgresql+psycopg://user@host:5432/salespulse"
# Secrets travel in HTTP headers and SOAP bodies: a control character there makes the SDK
# raise with the whole value in its message; whitespace around one is a copy-paste slip.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _check_secret(value: SecretStr | None, *, multiline: bool = False) -> SecretStr | None:
    text = value.get_secret_value() if value is not None else ""
    if not multiline and ("\n" in text or "\t" in text or _CONTROL.search(text)):
        raise ValueError("contains a line break or control character; set the variable to the bare value")
    if multiline and _CONTROL.search(text.replace("\r", "")):
        raise ValueError("contains a control character; set the variable to the PEM text")
    if not multiline and text != text.strip():
        raise ValueError("starts or ends with whitespace; set the variable to the bare value")
    return value


class DatabaseSettings(_Section):
    url: str = "sqlite:///salespulse.db"

    @field_validator("url")
    @classmethod
    def _parse(cls, value: str) -> str:
        try:
            url = make_url(value)
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
            raise ValueError(f"expected an SQLAlchemy URL such as {_URL_EXAMPLE}") from exc
        try:
            url.get_dialect().import_dbapi()
        except NoSuchModuleError as exc:
            raise ValueError(
                f"unknown database driver {url.drivername!r}; expected a URL such as {_URL_EXAMPLE}"
            ) from exc
        except ImportError as exc:
            raise ValueError(
                f"the Python driver for {url.drivername!r} is not installed; salespulse ships with "
                f"SQLite and psycopg (PostgreSQL): use a URL such as {_URL_EXAMPLE}"
            ) from exc
        return value

    @property
    def display_url(self) -> str:
        """The URL with any password masked, for logs and ``status``."""
        return make_url(self.url).render_as_string(hide_password=True)


class SalesforceSettings(_Section):
    enabled: bool = False
    instance_url: str | None = None
    api_version: str = "59.0"
    session_id: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    domain: str = "login"
    client_id: str | None = None
    private_key: SecretStr | None = None
    private_key_path: Path | None = None
    ca_bundle: Path | None = None
    timeout_s: float = Field(30.0, gt=0)
    # A full read of an object with at least this many rows goes through Bulk API 2.0; 0: never.
    bulk_threshold: int = Field(100_000, ge=0)

    _secrets = field_validator("session_id", "password", "security_token")(classmethod(lambda cls, v: _check_secret(v)))
    _key = field_validator("private_key")(classmethod(lambda cls, v: _check_secret(v, multiline=True)))

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2}\.0", value):
            raise ValueError("expected an API version like '59.0'")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        # The SDK logs in at https://{domain}.salesforce.com: a whole URL or host here would send it to a
        # host that does not exist, which looks like an outage instead of a typo.
        if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", value) or value.lower().endswith(".salesforce.com"):
            raise ValueError(
                "expected 'login', 'test' or a My Domain prefix such as 'acme.my', without https:// or .salesforce.com"
            )
        return value


class HubSpotSettings(_Section):
    enabled: bool = False
    base_url: str = "https://api.hubapi.com"
    access_token: SecretStr | None = None
    portal_id: str | None = None
    timeout_s: float = Field(30.0, gt=0)

    _secrets = field_validator("access_token")(classmethod(lambda cls, v: _check_secret(v)))


_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = r"(\d{4}-)?\d{2}-\d{2}"


class MuteWindow(_Section):
    """A recurring time when alerts are not sent (state still changes), in the company time zone.

    ``weekdays`` (``"sat"``, ``"sun"``...) and ``dates`` (``"2026-12-24"``, ``"12-24"`` every year,
    ranges ``"03-25..03-31"``) are alternatives: the window holds on any day either names.
    ``rules`` limits it to some rule ids (empty: every rule).
    """

    name: str
    weekdays: list[str] = Field(default_factory=list)
    dates: list[str] = Field(default_factory=list)
    rules: list[str] = Field(default_factory=list)

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str]) -> list[str]:
        days = [d.strip().lower()[:3] for d in value]
        for day in days:
            if day not in _WEEKDAYS:
                raise ValueError(f"weekday {day!r}: expected one of {', '.join(_WEEKDAYS)}")
        return days

    @field_validator("dates")
    @classmethod
    def _dates(cls, value: list[str]) -> list[str]:
        for item in value:
            ends = item.split("..")
            if len(ends) > 2 or not all(re.fullmatch(_DAY, e.strip()) for e in ends):
                raise ValueError(f"date {item!r}: expected YYYY-MM-DD or MM-DD, or a range A..B of those")
        return value


class SlackSettings(_Section):
    base_url: str = "https://slack.com/api/"
    token: SecretStr | None = None
    default_channel: str = "#sales-alerts"
    timeout_s: float = Field(30.0, gt=0)
    # Team name (as the CRM spells it) -> channel, for rules that name no channel.
    team_channels: dict[str, str] = Field(default_factory=dict)
    # Re-notify a still-firing alert after this many hours, for rules that set no repeat_interval.
    repeat_interval_h: float = Field(24.0, gt=0)
    # A team-level alert holds back the per-rep alerts of that team in the same rule family.
    inhibit_reps_by_team: bool = True
    mute_windows: list[MuteWindow] = Field(default_factory=list)
    # Seconds between two posts to one channel (Slack allows about one message per second).
    post_interval_s: float = Field(1.0, ge=0)
    # Back-off of a notification Slack could not take, across runs: base * 2^(attempts-1), capped.
    retry_base_s: float = Field(30.0, gt=0)
    retry_max_s: float = Field(3600.0, gt=0)
    # The digest's attainment-vs-pace chart (PNG, uploaded with files_upload_v2; scope files:write).
    digest_chart: bool = True
    # Share of team attainment in the digest's blended attainment (compensation plans often pay 75/25).
    digest_team_weight: float = Field(0.25, ge=0, le=1)

    _secrets = field_validator("token")(classmethod(lambda cls, v: _check_secret(v)))


class SyncSettings(_Section):
    interval_minutes: float = Field(15, gt=0)
    lookback_s: int = Field(300, ge=0)
    batch_size: int = Field(5_000, ge=1, le=100_000)
    workers: int = Field(2, ge=1, le=16)
    max_retries: int = Field(6, ge=0)
    backoff_base_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(120.0, gt=0)
    lock_timeout_s: int = Field(3600, ge=60)
    max_quarantine_share: float = Field(0.05, ge=0, le=1)
    degraded_min_records: int = Field(10, ge=1)


class RulesSettings(_Section):
    # Rule files, folders (their *.yaml / *.yml) and globs.
    paths: Annotated[list[Path], NoDecode] = Field(default_factory=lambda: [Path("rules.d")])
    # Minutes: the daemon does not judge data older than this (a stalled sync would look like silence).
    max_data_age: int = Field(60, ge=1)

    _split = field_validator("paths", mode="before")(classmethod(lambda cls, v: _split_list(v)))


class CompanySettings(_Section):
    timezone: str = "UTC"
    fiscal_year_start_month: int = Field(1, ge=1, le=12)
    reporting_currency: str = "USD"
    fx_rates: dict[str, Decimal] = Field(default_factory=dict)
    # Lead capacity by rep e-mail, name or id (1 = a full share of a team's new leads; 0 = takes none).
    # lead_distribution: a rule's `weights` win over the quota file's lead_capacity, which wins over these.
    lead_capacity: dict[str, float] = Field(default_factory=dict)

    @field_validator("lead_capacity")
    @classmethod
    def _capacities(cls, value: dict[str, float]) -> dict[str, float]:
        for rep, capacity in value.items():
            if not math.isfinite(capacity) or not 0 <= capacity <= 100:
                raise ValueError(f"capacity of {rep!r}: expected a number from 0 to 100 (1 = a full share of leads)")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("expected an IANA time zone such as 'Europe/Berlin'") from exc
        return value

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Z]{3}", value):
            raise ValueError("expected an ISO 4217 code such as 'USD'")
        return value

    @field_validator("fx_rates", mode="before")
    @classmethod
    def _upper_codes(cls, value: Any) -> Any:
        # Environment variable names are case-insensitive, so EUR may arrive as 'eur'.
        return {str(k).upper(): v for k, v in value.items()} if isinstance(value, dict) else value

    @field_validator("fx_rates")
    @classmethod
    def _rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            if not re.fullmatch(r"[A-Z]{3}", code):
                raise ValueError(f"currency {code!r}: expected an ISO 4217 code such as 'EUR'")
            if rate <= 0:
                raise ValueError(f"rate for {code}: expected a positive number of reporting currency per unit")
        return value


class QuotaSettings(_Section):
    path: Path | None = None


class ServiceSettings(_Section):
    """The daemon (``run``)."""

    http_port: int | None = Field(None, ge=1, le=65535)
    stop_timeout_s: float = Field(30.0, gt=0)
    lease_s: float = Field(20.0, ge=1)
    reload_poll_s: float = Field(5.0, gt=0)
    misfire_grace_s: int = Field(300, ge=1)
    outbox_interval_s: float = Field(30.0, gt=0)
    digest_schedule: str = "0 8 * * 1"
    health_max_sync_age_minutes: float | None = Field(None, gt=0)


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Settings(BaseSettings):
    """Everything salespulse can be told."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings)
    hubspot: HubSpotSettings = Field(default_factory=HubSpotSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    company: CompanySettings = Field(default_factory=CompanySettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    service: ServiceSettings = Field(default_factory=ServiceSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],  # noqa: ARG003
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first (wins), then the file's content passed in as init values.
        return (env_settings, init_settings)

    def secret_values(self) -> list[str]:
        """Every secret that is set, so log filters and tests can look for leaks."""
        found: list[str] = []
        for section in (self.salesforce, self.hubspot, self.slack):
            for value in section.__dict__.values():
                if isinstance(value, SecretStr) and value.get_secret_value():
                    found.append(value.get_secret_value())
        password = make_url(self.database.url).password
        if password:
            found.append(str(password))
        return found


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.default_factory  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}
SECRET_KEYS = {
    (section, key)
    for section, model in SECTIONS.items()
    for key, field in model.model_fields.items()
    if "SecretStr" in str(field.annotation)
}
PATH_KEYS = {("salesforce", "ca_bundle"), ("salesforce", "private_key_path"), ("quotas", "path")}


def environment_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secrets the environment holds, found without validating it: what an error about
    bad settings must mask, since there are no valid settings to ask."""
    found = []
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX) or not value:
            continue
        section, _, key = name.upper().removeprefix(ENV_PREFIX).lower().partition("__")
        if (section, key.split("__")[0]) in SECRET_KEYS:
            found.append(value)
        elif (section, key) == ("database", "url") and "@" in value:
            password = value.rpartition("://")[2].rpartition("@")[0].partition(":")[2]
            found.extend([password] if password else [])
    return found


def config_path_from(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    if explicit:
        return Path(explicit)
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV])
    return DEFAULT_CONFIG


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the file, overlay the environment (``os.environ``), validate; raise ConfigError naming the place."""
    environ = os.environ
    path = config_path_from(path, environ)
    data = _read_toml(path)
    _check_env_names(environ)
    for section, values in data.items():
        if isinstance(values, dict):
            for key in values:
                if (section, key) in SECRET_KEYS:
                    env = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
                    raise ConfigError(
                        f"secrets are not read from files; remove it and set the environment variable {env}",
                        source=str(path),
                        key=f"{section}.{key}",
                        line=_line_of(path, section, key),
                    )
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _config_error(exc, path, environ) from None
    _resolve_paths(settings, path.resolve().parent)
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("settings file not found", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from None


def _check_env_names(environ: Mapping[str, str]) -> None:
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper == CONFIG_ENV:
            continue
        rest = upper[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("__")
        model = SECTIONS.get(section)
        top_key = key.split("__")[0]
        if model is None or not key or top_key not in model.model_fields:
            raise ConfigError(
                "unknown setting; expected SALESPULSE_<SECTION>__<KEY> with a section and key from settings.toml",
                source=f"environment variable {name}",
            )


def _config_error(exc: ValidationError, path: Path, environ: Mapping[str, str]) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    section = loc[0] if loc else ""
    key = loc[1] if len(loc) > 1 else ""
    dotted = ".".join(loc)
    env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
    # The variable itself, or one that sets a part of it (SALESPULSE_SLACK__TOKEN__X).
    env_hit = next((n for n in environ if n.upper() == env_name or n.upper().startswith(f"{env_name}__")), None)
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key; see settings.toml for the keys this section takes"
    elif (section, key) not in SECRET_KEYS and "input" in first and not isinstance(first["input"], dict):
        shown = str(first["input"])
        shown = mask_userinfo(shown) if (section, key) == ("database", "url") else mask_url_passwords(shown)
        message = f"{message} (got {shown[:80]!r})"
    more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
    if env_hit:
        return ConfigError(message + more, source=f"environment variable {env_hit}", key=dotted)
    return ConfigError(message + more, source=str(path), key=dotted, line=_line_of(path, section, key))


def _line_of(path: Path, section: str, key: str) -> int | None:
    """Best-effort line number of ``key`` in ``[section]``; tomllib does not keep positions."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    current = None
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[([^\]]+)\]", stripped)
        if header:
            current = header.group(1).strip()
            continue
        if current == section and re.match(rf"{re.escape(key)}\s*=", stripped):
            return number
    return None


def _resolve_paths(settings: Settings, base: Path) -> None:
    """Relative paths in the file mean 'next to the settings file', wherever we run from."""
    for section, key in PATH_KEYS:
        model = getattr(settings, section)
        value = getattr(model, key)
        if value is not None and not value.is_absolute():
            setattr(model, key, base / value)
    settings.rules.paths = [p if p.is_absolute() else base / p for p in settings.rules.paths]
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        if not db.is_absolute():
            settings.database.url = url.set(database=str(base / db)).render_as_string(hide_password=False)
