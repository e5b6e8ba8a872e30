"""Start the whole sandbox: a generated company and the three fake servers on loopback.

Used by ``python service.py sandbox`` and ``demo``, by the tests and the benchmarks. The
company is generated once per (scale, seed, anchor) into ``workdir`` and reused after,
so a second start of a large sandbox costs seconds, not minutes. Each start makes a new
throw-away CA (``workdir/ca-<random>.pem``, its own file so a demo started beside a running
sandbox does not replace the CA that sandbox's clients trust) and new random tokens, and new login credentials for
the fake Salesforce (``Sandbox.salesforce_login``: an API user's password and security
token, a connected app's client id and the private key of its certificate). Those logins go
to login.salesforce.com, so only a client whose session routes that host to the fake (as
the tests do) can use them; ``env()`` keeps to the session id.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import string
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from models.clock import Clock, utc_now
from sandbox.company import GENERATOR_VERSION, SCALES, GroundTruth, Scale, generate
from sandbox.hubspot import FakeHubSpot
from sandbox.salesforce import FakeSalesforce
from sandbox.slack import FakeSlack
from sandbox.store import Store


def _tls(workdir: Path) -> tuple[ssl.SSLContext, Path]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    pem = workdir / f"ca-{secrets.token_hex(4)}.pem"
    ca.cert_pem.write_to_path(str(pem))
    return context, pem


@dataclass(frozen=True)
class SalesforceLogin:
    """Throw-away credentials of the fake Salesforce org, for the password and JWT bearer logins."""

    username: str
    password: str
    security_token: str
    client_id: str
    private_key_pem: str


def _salesforce_login(fake: FakeSalesforce) -> SalesforceLogin:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    login = SalesforceLogin(
        username="integration@salespulse-sandbox.example.com",
        password=secrets.token_urlsafe(12),
        # Salesforce's tokens are 24-25 letters and digits.
        security_token="".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24)),
        client_id="3MVG9" + secrets.token_urlsafe(60).replace("-", ".").replace("_", "."),
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
    fake.add_user(login.username, login.password, login.security_token)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fake.register_app(login.client_id, public_pem.decode())
    return login


@dataclass
class Sandbox:
    workdir: Path
    scale: Scale = SCALES["small"]
    seed: int = 1
    anchor: date | None = None
    problems: set[str] | None = None
    clock: Clock = utc_now
    store: Store = field(init=False)
    truth: GroundTruth = field(init=False)
    salesforce: FakeSalesforce = field(init=False)
    hubspot: FakeHubSpot = field(init=False)
    slack: FakeSlack = field(init=False)
    ca_pem: Path = field(init=False)
    tokens: dict[str, str] = field(init=False)
    salesforce_login: SalesforceLogin = field(init=False)

    def start(self) -> Sandbox:
        anchor = self.anchor or self.clock().date()
        self.workdir.mkdir(parents=True, exist_ok=True)
        company = self.workdir / f"company-{self.scale.name}-{self.seed}-{anchor.isoformat()}-g{GENERATOR_VERSION}"
        if not (company / "ground_truth.json").exists():
            shutil.rmtree(company, ignore_errors=True)
            company.mkdir(parents=True)
            generate(
                Store(company / "company.sqlite"),
                company,
                scale=self.scale,
                seed=self.seed,
                anchor=anchor,
                problems=self.problems,
            )
        self.company_dir = company
        self.store = Store(company / "company.sqlite", clock=self.clock)
        self.truth = GroundTruth.load(company / "ground_truth.json")
        context, self.ca_pem = _tls(self.workdir)
        self.tokens = {
            "salesforce": "00D" + secrets.token_hex(12),
            "hubspot": "pat-sandbox-" + secrets.token_hex(12),
            "slack": "xoxb-sandbox-" + secrets.token_hex(12),
        }
        self.salesforce = FakeSalesforce(self.store, session_id=self.tokens["salesforce"], ssl_context=context).start()
        self.salesforce_login = _salesforce_login(self.salesforce)
        self.hubspot = FakeHubSpot(self.store, access_token=self.tokens["hubspot"]).start()
        self.slack = FakeSlack(token=self.tokens["slack"]).start()
        return self

    def stop(self) -> None:
        for server in (self.salesforce, self.hubspot, self.slack):
            server.stop()
        self.ca_pem.unlink(missing_ok=True)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if exc[0] is None:
            for server in (self.salesforce, self.hubspot, self.slack):
                server.check_handlers()

    @property
    def quota_file(self) -> Path:
        return self.company_dir / "quotas.csv"

    def env(self) -> dict[str, str]:
        """The environment that points salespulse at this sandbox (tokens included: they are throw-away)."""
        env = {
            "SALESPULSE_SALESFORCE__ENABLED": "true",
            "SALESPULSE_SALESFORCE__INSTANCE_URL": self.salesforce.base_url,
            "SALESPULSE_SALESFORCE__SESSION_ID": self.tokens["salesforce"],
            "SALESPULSE_SALESFORCE__CA_BUNDLE": str(self.ca_pem),
            "SALESPULSE_HUBSPOT__ENABLED": "true",
            "SALESPULSE_HUBSPOT__BASE_URL": self.hubspot.base_url,
            "SALESPULSE_HUBSPOT__ACCESS_TOKEN": self.tokens["hubspot"],
            "SALESPULSE_HUBSPOT__PORTAL_ID": "900001",
            "SALESPULSE_SLACK__BASE_URL": self.slack.base_url + "/api/",
            "SALESPULSE_SLACK__TOKEN": self.tokens["slack"],
            "SALESPULSE_QUOTAS__PATH": str(self.quota_file),
        }
        # No [company.fx_rates]: the rates come from the fake CRMs, as from real multi-currency ones.
        return env
