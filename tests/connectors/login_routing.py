"""A requests session that takes simple-salesforce's logins to the fake Salesforce.

The SDK always logs in at ``https://{domain}.salesforce.com`` (SOAP ``/services/Soap/u/…``
and ``/services/oauth2/token``) and then talks to the instance it was given back. Mounted
on the session the connector is handed, :class:`ToFake` sends login.salesforce.com and
test.salesforce.com requests to the fake (same path, same TLS checks against the sandbox
CA); any other host that is not loopback is refused, so a test can never reach out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com")
LOOPBACK = ("127.0.0.1", "localhost")


class ToFake(HTTPAdapter):
    def __init__(self, fake_base_url: str) -> None:
        super().__init__()
        self.target = urlsplit(fake_base_url)
        self.rerouted: list[str] = []  # the original URLs, for assertions

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url)
        if parts.hostname in LOGIN_HOSTS:
            self.rerouted.append(str(request.url))
            request.url = urlunsplit((self.target.scheme, self.target.netloc, parts.path, parts.query, ""))
        elif parts.hostname not in LOOPBACK:
            raise requests.ConnectionError(f"test session refuses a request to {parts.hostname}")
        return super().send(request, **kwargs)


def session_to(fake_base_url: str) -> tuple[requests.Session, ToFake]:
    session = requests.Session()
    session.trust_env = False  # a REQUESTS_CA_BUNDLE in the environment must not replace session.verify
    adapter = ToFake(fake_base_url)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session, adapter
