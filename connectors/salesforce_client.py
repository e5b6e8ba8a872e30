"""Salesforce through simple-salesforce: login, timeouts, retries and error translation.

Auth (first complete wins): a session id with the instance URL; username, password and
security token; or the OAuth 2.0 JWT bearer flow (username, client id, private key). A
private CA is trusted through ``ca_bundle`` with ``trust_env`` off, so a
``REQUESTS_CA_BUNDLE`` in the environment cannot override it. Every SDK exception is
sorted by what the engine does about it (:mod:`connectors.errors`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jwt
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from connectors import retry
from connectors.errors import AuthError, StreamFailed, TransientError
from models.errors import ConfigError
from models.settings import SalesforceSettings

_DOMAIN_HINT = "and domain ('login' for production, 'test' for a sandbox org)"
PASSWORD_HINT = (
    "check the username, SALESPULSE_SALESFORCE__PASSWORD and SALESPULSE_SALESFORCE__SECURITY_TOKEN (a password "
    f"change or reset sends the user a new token) {_DOMAIN_HINT}"
)
JWT_HINT = (
    "check the username, client_id (the connected app's consumer key), that the private key belongs to the "
    f"certificate uploaded to the connected app, that the user is pre-authorized for the app {_DOMAIN_HINT}"
)


class QueryLocatorLost(StreamFailed):
    """The server-side cursor of a query is gone (expired, or consumed by a lost answer)."""


class SalesforceClient:
    """The SDK object plus the retry policy and timeout; re-creates itself on re-auth."""

    def __init__(
        self, settings: SalesforceSettings, policy: retry.RetryPolicy, session: requests.Session | None = None
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.session = session or requests.Session()
        self.session.trust_env = False
        self.session.verify = str(settings.ca_bundle) if settings.ca_bundle else True
        self._described: dict[str, dict[str, dict[str, Any]]] = {}
        self.sf = self._login_with_retries()

    def _login_with_retries(self) -> Salesforce:
        """A login that meets a network blip or a busy login server waits and tries again, like any request."""
        return retry.call(self._login, self.policy, what="Salesforce login")

    def _login(self) -> Salesforce:
        s = self.settings
        # Plain dicts: the SDK's default OrderedDict parsing costs ~20 % of a full sync.
        common = {"session": self.session, "version": s.api_version, "object_pairs_hook": dict}
        if s.session_id and s.instance_url:
            return Salesforce(instance_url=s.instance_url, session_id=s.session_id.get_secret_value(), **common)
        if s.username and s.password and s.security_token:
            password, token = s.password.get_secret_value(), s.security_token.get_secret_value()
            return _log_in(
                lambda: Salesforce(
                    username=s.username, password=password, security_token=token, domain=s.domain, **common
                ),
                PASSWORD_HINT,
            )
        if s.username and s.client_id and (s.private_key or s.private_key_path):
            key = (
                {"privatekey": s.private_key.get_secret_value()}
                if s.private_key
                else {"privatekey_file": str(s.private_key_path)}
            )
            try:
                return _log_in(
                    lambda: Salesforce(username=s.username, consumer_key=s.client_id, domain=s.domain, **key, **common),
                    JWT_HINT,
                )
            except jwt.InvalidKeyError:
                raise ConfigError(
                    "not a PEM RSA private key (the JWT bearer flow signs with RS256)",
                    source="settings",
                    key="salesforce.private_key" if s.private_key else "salesforce.private_key_path",
                ) from None
            except (FileNotFoundError, PermissionError) as exc:
                raise ConfigError(
                    f"cannot read the private key file {s.private_key_path}: {exc.strerror}",
                    source="settings",
                    key="salesforce.private_key_path",
                ) from None
        raise ConfigError(
            "no complete Salesforce credentials: set instance_url + SALESPULSE_SALESFORCE__SESSION_ID, or username + "
            "SALESPULSE_SALESFORCE__PASSWORD + SALESPULSE_SALESFORCE__SECURITY_TOKEN, or username + client_id + a "
            "private key",
            source="settings",
            key="salesforce",
        )

    def reauth(self) -> None:
        if self.settings.session_id and self.settings.instance_url:
            raise AuthError(
                "Salesforce session expired or invalid; a bare session id cannot be renewed: set a fresh "
                "SALESPULSE_SALESFORCE__SESSION_ID (or configure username/password or JWT so salespulse can log in)"
            )
        self.sf = self._login_with_retries()

    def pages(self, soql: str, what: str) -> Iterator[list[dict[str, Any]]]:
        """Every page of a queryAll, each fetched with retries."""
        result = self.call(lambda: self.sf.query(soql, include_deleted=True, timeout=self.settings.timeout_s), what)
        yield result["records"]
        while not result.get("done", True):
            next_url = result["nextRecordsUrl"]
            result = self.call(
                lambda url=next_url: self.sf.query_more(
                    url, identifier_is_url=True, include_deleted=True, timeout=self.settings.timeout_s
                ),
                what,
            )
            yield result["records"]

    def count(self, soql: str, what: str) -> int:
        """The number of rows a ``SELECT COUNT() ...`` finds, deleted ones included."""
        return self.call(lambda: self.sf.query(soql, include_deleted=True, timeout=self.settings.timeout_s), what)[
            "totalSize"
        ]

    def describe_fields(self, sobject: str) -> dict[str, dict[str, Any]] | None:
        """An object's fields by name (their describe entries), or None when the org does not have it."""
        if sobject not in self._described:
            try:
                described = self.call(
                    lambda: self.sf.restful(f"sobjects/{sobject}/describe/", timeout=self.settings.timeout_s),
                    f"{sobject} describe",
                )
            except StreamFailed:
                return None
            self._described[sobject] = {f["name"]: f for f in described.get("fields", [])}
        return self._described[sobject]

    def field_type(self, sobject: str, path: str) -> str:
        """The describe type of a selected field, following one relationship ('UserRole.Name')."""
        fields = self.describe_fields(sobject) or {}
        if "." not in path:
            return str(fields.get(path, {}).get("type", "string"))
        relationship, name = path.split(".", 1)
        via = next((f for f in fields.values() if f.get("relationshipName") == relationship), {})
        target = (via.get("referenceTo") or [""])[0]
        return self.field_type(target, name) if target else "string"

    def call(self, fn: Callable[[], Any], what: str) -> Any:
        """An SDK call with its errors sorted by what the engine does about them, retried per the policy."""
        return retry.call(lambda: _translate(fn, what), self.policy, what=what, reauth=self.reauth)


def _log_in(connect: Callable[[], Salesforce], hint: str) -> Salesforce:
    try:
        return connect()
    except SalesforceAuthenticationFailed as exc:
        raise _login_refused(exc, hint) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"Salesforce login: connection problem: {type(exc).__name__}") from None


def _login_refused(exc: SalesforceAuthenticationFailed, hint: str, **fields: object) -> AuthError | TransientError:
    # The SDK puts the HTTP status in place of the error code when the login server's answer
    # was not a SOAP fault or OAuth error (an HTML error page, a proxy's 503).
    if isinstance(exc.code, int) and exc.code >= 500:
        return TransientError(f"Salesforce login server answered {exc.code}", **fields)
    return AuthError(f"Salesforce refused the login ({exc.code}: {exc.auth_message[:200]}); {hint}", **fields)


def _translate(fn: Callable[[], Any], what: str) -> Any:
    """SDK and transport exceptions to ours, by what the engine should do."""
    try:
        return fn()
    except SalesforceAuthenticationFailed as exc:
        # With credentials, the SDK logs in again by itself on INVALID_SESSION_ID: that login was refused.
        raise _login_refused(exc, "check the Salesforce credentials", request=what) from None
    except SalesforceExpiredSession:
        raise AuthError("Salesforce session expired or invalid (INVALID_SESSION_ID)", request=what) from None
    except SalesforceRefusedRequest as exc:
        if "REQUEST_LIMIT_EXCEEDED" in str(exc.content):
            raise TransientError(
                "Salesforce API request limit exceeded (REQUEST_LIMIT_EXCEEDED)", request=what
            ) from None
        raise StreamFailed(
            f"Salesforce refused the request (403): {_error_code(exc)}; check the user's permissions", request=what
        ) from None
    except SalesforceMalformedRequest as exc:
        if "INVALID_QUERY_LOCATOR" in str(exc.content):
            raise QueryLocatorLost("Salesforce no longer knows the query's next page", request=what) from None
        raise StreamFailed(f"Salesforce rejected the query: {_error_code(exc)}", request=what) from None
    except SalesforceError as exc:
        if exc.status >= 500:
            raise TransientError(f"Salesforce answered {exc.status}", request=what) from None
        raise StreamFailed(f"Salesforce answered {exc.status}: {_error_code(exc)}", request=what) from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"Salesforce connection problem: {type(exc).__name__}", request=what) from None
    except ValueError as exc:  # a truncated or non-JSON body
        raise TransientError(f"Salesforce sent an unreadable answer: {exc.__class__.__name__}", request=what) from None


def _error_code(exc: SalesforceError) -> str:
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return f"{content[0].get('errorCode')}: {str(content[0].get('message', ''))[:200]}"
    return str(content)[:200]
