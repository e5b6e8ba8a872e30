"""Salesforce's two login endpoints as simple-salesforce uses them, for the fake org.

- SOAP API "login()" ``POST /services/Soap/u/{version}`` (partner WSDL): the body's
  ``<login><username/><password/></login>``, where the password is the user's password with
  the security token appended. The answer is a ``loginResponse`` whose ``result`` holds
  ``metadataServerUrl``, ``passwordExpired``, ``sandbox``, ``serverUrl``
  (``{instance}/services/Soap/u/{version}/{orgId}``: the SDK takes the instance host from
  it), ``sessionId``, ``userId`` and ``userInfo``; bad credentials get HTTP 500 with a
  ``soapenv:Fault`` whose detail is an ``sf:LoginFault`` with ``sf:exceptionCode``
  INVALID_LOGIN and the deliberately vague "Invalid username, password, security token;
  or user locked out.".
- "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration"
  ``POST /services/oauth2/token`` with ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer``
  and ``assertion=<JWT>``: an RS256 JWT signed with the private key whose certificate was
  uploaded to the connected app; ``iss`` is the app's consumer key, ``sub`` the username,
  ``aud`` the login server (https://login.salesforce.com, or https://test.salesforce.com
  for a sandbox org), ``exp`` a time in the near future. The answer is
  ``{"access_token", "scope", "instance_url", "id", "token_type": "Bearer", "issued_at",
  "signature"}``; failures are HTTP 400 ``{"error", "error_description"}`` as RFC 6749
  §5.2 and Salesforce word them (``invalid_grant``: "invalid assertion", "audience is
  invalid", "expired authorization code", "user hasn't approved this consumer";
  ``invalid_client_id``: "client identifier invalid"; ``unsupported_grant_type``:
  "grant type not supported").

The fake cannot see which login host a client meant (tests route both to it), so only the
JWT audience tells a production org from a sandbox org.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from sandbox.httpbase import Response

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
PARTNER = "urn:partner.soap.sforce.com"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
INVALID_LOGIN = "Invalid username, password, security token; or user locked out."
SESSION_SECONDS = 7200


@dataclass(frozen=True)
class ApiUser:
    username: str
    password: str
    security_token: str
    user_id: str
    full_name: str = "Salespulse Integration"


@dataclass(frozen=True)
class ConnectedApp:
    client_id: str
    public_key: RSAPublicKey
    consumer_secret: str


def load_public_key(pem: str) -> RSAPublicKey:
    """The key of an uploaded certificate (what Salesforce asks for) or of a bare public key PEM."""
    data = pem.encode()
    key = (
        x509.load_pem_x509_certificate(data).public_key()
        if b"BEGIN CERTIFICATE" in data
        else serialization.load_pem_public_key(data)
    )
    if not isinstance(key, RSAPublicKey):
        raise TypeError("the JWT bearer flow signs with RS256: the connected app needs an RSA certificate")
    return key


# -- SOAP ---------------------------------------------------------------------------------------


def read_soap_login(body: bytes) -> tuple[str, str] | None:
    """(username, password) of a partner ``login`` call, or None when the body is not one."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    login = root.find(f"./{{{SOAP_ENV}}}Body/{{{PARTNER}}}login")
    if login is None:
        return None
    return login.findtext(f"{{{PARTNER}}}username") or "", login.findtext(f"{{{PARTNER}}}password") or ""


def _xml(status: int, body: str) -> Response:
    return Response(status, f'<?xml version="1.0" encoding="UTF-8"?>{body}'.encode(), {"Content-Type": "text/xml"})


def soap_login_response(
    *, instance_url: str, version: str, org_id: str, org_name: str, sandbox_org: bool, user: ApiUser, session_id: str
) -> Response:
    t = escape
    return _xml(
        200,
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns="{PARTNER}"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><loginResponse><result>'
        f"<metadataServerUrl>{t(instance_url)}/services/Soap/m/{version}/{org_id}</metadataServerUrl>"
        "<passwordExpired>false</passwordExpired>"
        f"<sandbox>{str(sandbox_org).lower()}</sandbox>"
        f"<serverUrl>{t(instance_url)}/services/Soap/u/{version}/{org_id}</serverUrl>"
        f"<sessionId>{t(session_id)}</sessionId>"
        f"<userId>{user.user_id}</userId>"
        "<userInfo><accessibilityMode>false</accessibilityMode><currencySymbol>$</currencySymbol>"
        "<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode><orgHasPersonAccounts>false</orgHasPersonAccounts>"
        f"<organizationId>{org_id}</organizationId><organizationMultiCurrency>true</organizationMultiCurrency>"
        f"<organizationName>{t(org_name)}</organizationName><sessionSecondsValid>{SESSION_SECONDS}</sessionSecondsValid>"
        f"<userEmail>{t(user.username)}</userEmail><userFullName>{t(user.full_name)}</userFullName>"
        f"<userId>{user.user_id}</userId><userLanguage>en_US</userLanguage><userLocale>en_US</userLocale>"
        f"<userName>{t(user.username)}</userName><userTimeZone>America/Los_Angeles</userTimeZone>"
        "<userType>Standard</userType><userUiSkin>Theme3</userUiSkin></userInfo>"
        "</result></loginResponse></soapenv:Body></soapenv:Envelope>",
    )


def soap_fault(code: str, message: str) -> Response:
    """A login fault (``sf:LoginFault``) as HTTP 500, the SOAP 1.1 status of every fault."""
    return _xml(
        500,
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}" xmlns:sf="urn:fault.partner.soap.sforce.com"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>sf:{code}</faultcode><faultstring>{code}: {escape(message)}</faultstring>"
        '<detail><sf:LoginFault xsi:type="sf:LoginFault">'
        f"<sf:exceptionCode>{code}</sf:exceptionCode><sf:exceptionMessage>{escape(message)}</sf:exceptionMessage>"
        "</sf:LoginFault></detail></soapenv:Fault></soapenv:Body></soapenv:Envelope>",
    )


def soap_client_fault(message: str) -> Response:
    """The fault for a body that is not a login call at all (no LoginFault detail)."""
    return _xml(
        500,
        f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body><soapenv:Fault>'
        f"<faultcode>soapenv:Client</faultcode><faultstring>{escape(message)}</faultstring>"
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>",
    )


# -- OAuth 2.0 JWT bearer ------------------------------------------------------------------------


def oauth_error(error: str, description: str) -> Response:
    return Response(
        400, {"error": error, "error_description": description}, {"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


def check_assertion(
    assertion: str | None, *, apps: dict[str, ConnectedApp], audience: str, now: datetime
) -> tuple[ConnectedApp, str] | Response:
    """(app, username) of a valid assertion, or the error Salesforce answers for it."""
    if not assertion:
        return oauth_error("invalid_grant", "invalid assertion")
    try:
        claims: dict[str, Any] = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return oauth_error("invalid_grant", "invalid assertion")
    app = apps.get(str(claims.get("iss")))
    if app is None:
        return oauth_error("invalid_client_id", "client identifier invalid")
    try:
        jwt.decode(
            assertion,
            app.public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_aud": False, "verify_iat": False, "verify_sub": False},
        )
    except jwt.PyJWTError:
        return oauth_error("invalid_grant", "invalid assertion")
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        return oauth_error("invalid_grant", "audience is invalid")
    try:
        # The SDK sends exp as a string of digits; Salesforce takes it.
        expires = float(claims["exp"])
    except (KeyError, TypeError, ValueError):
        return oauth_error("invalid_grant", "invalid assertion")
    if expires <= now.timestamp():
        return oauth_error("invalid_grant", "expired authorization code")
    return app, str(claims.get("sub") or "")


def token_response(
    *, app: ConnectedApp, user: ApiUser, org_id: str, instance_url: str, login_url: str, session_id: str, now: datetime
) -> Response:
    identity = f"{login_url}/id/{org_id}/{user.user_id}"
    issued_at = str(int(now.timestamp() * 1000))
    # Salesforce signs id + issued_at with the consumer secret (HMAC-SHA256), so a client can check the answer.
    digest = hmac.new(app.consumer_secret.encode(), (identity + issued_at).encode(), hashlib.sha256).digest()
    body = {
        "access_token": session_id,
        "scope": "api",
        "instance_url": instance_url,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": issued_at,
        "signature": base64.b64encode(digest).decode(),
    }
    return Response(200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"})
