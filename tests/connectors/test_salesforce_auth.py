"""Logging in to Salesforce with a password or the JWT bearer flow: the real simple-salesforce
against the fake org, its logins at login.salesforce.com routed to the fake by the session
the connector is given (tests/connectors/login_routing.py)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connectors.errors import AuthError, StreamFailed
from connectors.retry import RetryPolicy
from connectors.salesforce import SalesforceConnector
from models.clock import utc_now
from models.database import open_warehouse
from models.errors import ConfigError
from models.settings import SalesforceSettings, Settings
from sandbox.company import SCALES
from sandbox.runner import Sandbox
from sync.engine import SyncEngine
from tests.connectors.login_routing import ToFake, session_to
from tests.sync.test_salesforce_sync import ANCHOR, NEXT_PAGE, Sleeps, assert_warehouse_equals_company, settings_for

SOAP_LOGIN = "/services/Soap/u/59.0"
NOT_A_KEY = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
TOKEN = "/services/oauth2/token"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One generated company for the module; each test starts its own servers over it."""
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture
def box(workdir: Path) -> Iterator[Sandbox]:
    with Sandbox(workdir, scale=SCALES["small"], seed=7, anchor=ANCHOR) as sandbox:
        yield sandbox


def other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


# -- credentials -------------------------------------------------------------------------------
# Each builds the [salesforce] settings of one auth mode from the sandbox's throw-away login.


def password(box: Sandbox, _tmp: Path, **changes: str) -> SalesforceSettings:
    login = box.salesforce_login
    values = {"username": login.username, "password": login.password, "security_token": login.security_token}
    values |= changes
    return SalesforceSettings(
        enabled=True,
        username=values["username"],
        password=SecretStr(values["password"]),
        security_token=SecretStr(values["security_token"]),
        ca_bundle=box.ca_pem,
        timeout_s=5,
    )


def jwt_inline(box: Sandbox, _tmp: Path, **changes: str) -> SalesforceSettings:
    login = box.salesforce_login
    values = {"username": login.username, "client_id": login.client_id, "key": login.private_key_pem, "domain": "login"}
    values |= changes
    return SalesforceSettings(
        enabled=True,
        username=values["username"],
        client_id=values["client_id"],
        private_key=SecretStr(values["key"]),
        domain=values["domain"],
        ca_bundle=box.ca_pem,
        timeout_s=5,
    )


def jwt_file(box: Sandbox, tmp: Path, **changes: str) -> SalesforceSettings:
    settings = jwt_inline(box, tmp, **changes)
    key_file = tmp / "salesforce.key"
    key_file.write_text(settings.private_key.get_secret_value())  # type: ignore[union-attr]
    return settings.model_copy(update={"private_key": None, "private_key_path": key_file})


MODES: dict[str, tuple[Callable[..., SalesforceSettings], str]] = {
    "password": (password, SOAP_LOGIN),
    "jwt, inline key": (jwt_inline, TOKEN),
    "jwt, key file": (jwt_file, TOKEN),
}


def connect(box: Sandbox, sf: SalesforceSettings, sleeps: Sleeps | None = None) -> tuple[SalesforceConnector, ToFake]:
    session, routing = session_to(box.salesforce.base_url)
    policy = RetryPolicy(max_retries=3, sleep=sleeps if sleeps is not None else Sleeps())
    return SalesforceConnector(sf, policy, reporting_currency="USD", session=session), routing


def logins(routing: ToFake) -> list[str]:
    return [url.split(".salesforce.com", 1)[1] for url in routing.rerouted]


def settings_with(box: Sandbox, sf: SalesforceSettings) -> Settings:
    settings = settings_for(box)
    settings.salesforce = sf
    return settings


def secrets_of(box: Sandbox, sf: SalesforceSettings) -> list[str]:
    """Every secret a message or log line must not show: the configured ones, the org's real
    ones, the session id and the body lines of each private key."""
    login = box.salesforce_login
    found = [login.password, login.security_token, box.tokens["salesforce"]]
    for value in (sf.password, sf.security_token, sf.private_key):
        if value is not None:
            found.append(value.get_secret_value())
    for pem in [login.private_key_pem] + ([sf.private_key.get_secret_value()] if sf.private_key else []):
        found += [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return found


def assert_no_secret(text: str, secrets: list[str]) -> None:
    leaked = [s[:4] + "…" for s in secrets if s in text]
    assert not leaked, f"secrets in the text: {leaked}"


# -- logging in and syncing ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_login_then_sync_equals_the_company(tmp_path: Path, box: Sandbox, mode: str) -> None:
    build, login_path = MODES[mode]
    sf = build(box, tmp_path)
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    connector, routing = connect(box, sf)
    try:
        # The instance (and the record links built on it) comes from the login's answer.
        assert connector.instance_url == box.salesforce.base_url
        results = SyncEngine(engine, settings_with(box, sf), utc_now).sync_source(connector)
    finally:
        connector.close()
    assert all(r.status == "ok" for r in results), [r.summary for r in results if r.status != "ok"]
    assert logins(routing) == [login_path]
    assert_warehouse_equals_company(engine, box)
    engine.dispose()


def test_jwt_login_to_a_sandbox_org_uses_test_salesforce_com(tmp_path: Path, box: Sandbox) -> None:
    box.salesforce.sandbox_org = True
    connector, routing = connect(box, jwt_inline(box, tmp_path, domain="test"))
    try:
        assert routing.rerouted == ["https://test.salesforce.com" + TOKEN]
        assert connector.client.describe_fields("Lead")
    finally:
        connector.close()


# -- refused logins ------------------------------------------------------------------------------

REFUSED = [
    ("password", {"password": "not-the-password"}, "INVALID_LOGIN", "SECURITY_TOKEN"),
    ("password", {"security_token": "NotTheToken0123456789abc"}, "INVALID_LOGIN", "SECURITY_TOKEN"),
    ("password", {"username": "nobody@example.com"}, "INVALID_LOGIN", "check the username"),
    ("jwt, inline key", {"key": other_key()}, "invalid_grant: invalid assertion", "certificate"),
    ("jwt, key file", {"key": other_key()}, "invalid_grant: invalid assertion", "certificate"),
    ("jwt, inline key", {"client_id": "3MVG9unknownApp"}, "invalid_client_id", "consumer key"),
    ("jwt, inline key", {"username": "nobody@example.com"}, "user hasn't approved this consumer", "pre-authorized"),
    ("jwt, inline key", {"domain": "test"}, "audience is invalid", "'test' for a sandbox org"),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # the SDK's advice on "user hasn't approved this consumer"
@pytest.mark.parametrize(("mode", "changes", "reason", "hint"), REFUSED)
def test_refused_login_is_an_auth_error_that_says_what_to_check_and_no_secret(
    tmp_path: Path, box: Sandbox, caplog: pytest.LogCaptureFixture, mode: str, changes: dict, reason: str, hint: str
) -> None:
    caplog.set_level(logging.DEBUG)
    sf = MODES[mode][0](box, tmp_path, **changes)
    with pytest.raises(AuthError) as refused:
        connect(box, sf)
    message = str(refused.value)
    assert reason in message
    assert hint in message
    assert "domain" in message
    assert_no_secret(message + caplog.text, secrets_of(box, sf))


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda box, tmp: jwt_inline(box, tmp, key=NOT_A_KEY), "salesforce.private_key"),
        (lambda box, tmp: jwt_file(box, tmp, key="not a key at all"), "salesforce.private_key_path"),
        (
            lambda box, tmp: jwt_inline(box, tmp).model_copy(
                update={"private_key": None, "private_key_path": tmp / "missing.key"}
            ),
            "salesforce.private_key_path",
        ),
    ],
    ids=["inline key not PEM RSA", "key file not PEM RSA", "key file missing"],
)
def test_unusable_private_key_is_a_config_error_naming_the_setting(
    tmp_path: Path, box: Sandbox, make: Callable, key: str
) -> None:
    sf = make(box, tmp_path)
    with pytest.raises(ConfigError) as bad:
        connect(box, sf)
    assert bad.value.key == key
    assert "bm90IGEga2V5" not in str(bad.value)
    assert "not a key at all" not in str(bad.value)


@pytest.mark.parametrize("mode", ["password", "jwt, inline key"])
def test_login_meeting_dropped_connections_is_retried(tmp_path: Path, box: Sandbox, mode: str) -> None:
    build, login_path = MODES[mode]
    box.salesforce.faults.arm("drop", path=login_path, times=2)
    sleeps = Sleeps()
    connector, routing = connect(box, build(box, tmp_path), sleeps)
    connector.close()
    assert len(sleeps) == 2
    assert logins(routing) == [login_path] * 3


def test_login_server_down_stops_with_a_clear_error(tmp_path: Path, box: Sandbox) -> None:
    box.salesforce.faults.arm("drop", path=SOAP_LOGIN, times=100)
    with pytest.raises(StreamFailed, match=r"Salesforce login still failing after 3 retries"):
        connect(box, password(box, tmp_path))


# -- sessions expiring ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "refusals", "expected_logins"),
    [
        # The SDK, holding credentials, logs in again by itself on INVALID_SESSION_ID.
        ("password", 1, 2),
        ("jwt, inline key", 1, 2),
        # After 4 refusals in a row the SDK gives up; the connector logs in once more and goes on.
        ("password", 4, 6),
    ],
)
def test_session_expiring_mid_paging_logs_in_again_and_the_sync_completes(
    tmp_path: Path, box: Sandbox, caplog: pytest.LogCaptureFixture, mode: str, refusals: int, expected_logins: int
) -> None:
    build, login_path = MODES[mode]
    sf = build(box, tmp_path)
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    box.salesforce.faults.arm("expired_session", path=NEXT_PAGE, times=refusals)
    connector, routing = connect(box, sf)
    try:
        results = SyncEngine(engine, settings_with(box, sf), utc_now).sync_source(connector)
    finally:
        connector.close()
    assert all(r.status == "ok" for r in results), [r.summary for r in results if r.status != "ok"]
    assert logins(routing) == [login_path] * expected_logins
    assert_warehouse_equals_company(engine, box)
    assert_no_secret(caplog.text, secrets_of(box, sf))
    engine.dispose()


def test_password_changed_mid_sync_fails_the_stream_with_the_login_refusal(
    tmp_path: Path, box: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sf = password(box, tmp_path)
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    connector, routing = connect(box, sf)
    box.salesforce.set_password(box.salesforce_login.username, "changed-by-an-admin")
    box.salesforce.faults.arm("expired_session", path=NEXT_PAGE, times=100)
    try:
        results = SyncEngine(engine, settings_with(box, sf), utc_now).sync_source(connector)
    finally:
        connector.close()
    failed = [r for r in results if r.status == "failed"]
    assert failed
    for result in failed:
        assert "Salesforce refused the login (INVALID_LOGIN" in result.error
        assert "SECURITY_TOKEN" in result.error
    assert_no_secret(" ".join(r.error or "" for r in results) + caplog.text, secrets_of(box, sf))
    # Per failed stream: the SDK's own attempt, then the connector's single one.
    assert logins(routing) == [SOAP_LOGIN] * (1 + 2 * len(failed))


def test_requests_other_than_logins_never_leave_loopback() -> None:
    session, _ = session_to("https://127.0.0.1:9")
    with pytest.raises(requests.ConnectionError, match=r"refuses a request to example\.com"):
        session.get("https://example.com/")


@pytest.mark.parametrize("mode", ["password", "jwt, inline key"])
def test_a_login_server_that_never_answers_times_out(tmp_path: Path, box: Sandbox, mode: str) -> None:
    """simple-salesforce posts logins without a timeout; the session's adapter gives them one."""
    with socket.socket() as black_hole:  # accepts connections (the kernel does) and never answers
        black_hole.bind(("127.0.0.1", 0))
        black_hole.listen(8)
        session, routing = session_to(f"https://127.0.0.1:{black_hole.getsockname()[1]}")
        sf = MODES[mode][0](box, tmp_path).model_copy(update={"timeout_s": 1.0})
        outcome: list[BaseException] = []

        def log_in() -> None:
            try:
                SalesforceConnector(
                    sf, RetryPolicy(max_retries=1, sleep=Sleeps()), reporting_currency="USD", session=session
                )
            except StreamFailed as exc:
                outcome.append(exc)

        started = time.monotonic()
        attempt = threading.Thread(target=log_in, daemon=True)
        attempt.start()
        attempt.join(timeout=10)
        elapsed = time.monotonic() - started
    assert not attempt.is_alive(), "the login still hangs after 10 s"
    assert len(routing.rerouted) == 2  # the first try and one retry, each cut after timeout_s
    assert elapsed < 5
    assert "Salesforce login still failing after 1 retries" in str(outcome[0])
    assert "Timeout" in str(outcome[0])


# -- errors: what is retried, and messages that say how to fix ----------------------------------

QUERY = "/services/data/v59.0/queryAll/"


@pytest.mark.parametrize(
    ("status", "says", "fix"),
    [
        (400, "Salesforce rejected the query", "field-level security"),
        (404, "Salesforce answered 404", "check salesforce.instance_url"),
        (418, "Salesforce answered 418", "report it with this message"),
    ],
)
def test_an_unexpected_salesforce_answer_says_how_to_fix_it(
    tmp_path: Path, box: Sandbox, status: int, says: str, fix: str
) -> None:
    connector, _ = connect(box, password(box, tmp_path))
    box.salesforce.faults.arm("server_error", status=status, path=QUERY)
    try:
        with pytest.raises(StreamFailed) as caught:
            connector.client.count("SELECT COUNT() FROM Opportunity", "count")
    finally:
        connector.close()
    assert says in caught.value.message
    assert fix in caught.value.message


def test_a_truncated_answer_is_retried_and_keeps_the_parser_message(tmp_path: Path, box: Sandbox) -> None:
    sleeps = Sleeps()
    connector, _ = connect(box, password(box, tmp_path), sleeps)
    box.salesforce.faults.arm("truncate", path=QUERY, times=10)
    try:
        with pytest.raises(StreamFailed) as caught:
            connector.client.count("SELECT COUNT() FROM Opportunity", "count")
    finally:
        connector.close()
    assert len(sleeps) == 3  # retried as a transient error
    assert "unreadable answer (not JSON: " in caught.value.message
    assert "line 1 column" in caught.value.message  # the parser's own words, not only its class name


def test_a_bug_is_not_mistaken_for_an_unreadable_answer(tmp_path: Path, box: Sandbox) -> None:
    sleeps = Sleeps()
    connector, _ = connect(box, password(box, tmp_path), sleeps)
    try:
        with pytest.raises(ValueError, match="invalid literal for int"):
            connector.client.call(lambda: int("a bug"), "a call with a bug")
    finally:
        connector.close()
    assert len(sleeps) == 0  # not retried
