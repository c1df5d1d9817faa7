"""Where notifications go: e-mail over SMTP, signed webhooks, and any apprise URL.

Each `send_*` is blocking network I/O: the delivery loop calls them on its own threads, never on
the server's event loop. A failure raises `DeliveryFailed` with the reason the run will show.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import ssl
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.orm import Session

from nbflows.errors import InvalidInput
from nbflows.services import secrets

#: The server's SMTP server for plain `mailto:address` targets, as a mailto:// URL.
SMTP_URL_ENV = "NBFLOWS_SMTP_URL"
#: Schemes apprise reaches over plain HTTP(S) at a host worth showing.
_HOST_SCHEMES = {"http", "https", "json", "jsons", "xml", "xmls", "form", "forms"}
TIMEOUT = 30.0
SIGNATURE_HEADER = "X-NBFlows-Signature"
TIMESTAMP_HEADER = "X-NBFlows-Timestamp"
DELIVERY_HEADER = "X-NBFlows-Delivery"


class DeliveryFailed(Exception):
    """The target did not take the message; `str()` says why."""


def channel_of(url: str) -> str:
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("mailto", "mailtos"):
        return "email"
    if scheme in ("http", "https"):
        return "webhook"
    return "apprise"


def split_credentials(
    url: str, secret: str | None, where: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what may be shown, what must not) of a notify action; InvalidInput for a bad URL.

    The hidden part keeps the whole URL and the webhook secret. Either may hold a
    `{{ secret.NAME }}` reference instead of the value (resolved by `resolve_secrets`).
    """
    kind = channel_of(url)
    if "://" not in url and not url.lower().startswith("mailto:"):
        raise InvalidInput(
            f"{where}.url: '{mask_url(url)}' is not a URL; give mailto://..., http(s)://... or "
            "an apprise URL such as slack://..., json://host:port/path"
        )
    refers = bool(secrets.references(url, secret))
    if kind == "email" and not refers:
        _email_settings(url, where)  # refuse now what could never be sent
    if secret is not None and kind != "webhook":
        raise InvalidInput(f"{where}.secret: only http(s) webhooks are signed with a secret")
    if kind == "apprise" and not refers:
        import apprise  # heavy: only where an apprise URL is given or sent

        if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
            raise InvalidInput(
                f"{where}.url: apprise does not understand '{mask_url(url)}' (see "
                "https://github.com/caronc/apprise/wiki for its URL formats)"
            )
    public = {"url": mask_url(url), "channel": kind, "signed": secret is not None}
    hidden = {"url": url, **({"secret": secret} if secret is not None else {})}
    return public, hidden


def mask_url(url: str) -> str:
    """The URL without what could be a credential: passwords, tokens in paths and queries."""
    if url.lower().startswith("mailto:") and "://" not in url:
        return url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("mailto", "mailtos"):
        user = (
            f"{parts.username}:***@"
            if parts.password
            else (f"{parts.username}@" if parts.username else "")
        )
        port = f":{parts.port}" if parts.port else ""
        query = "&".join(
            f"{key}={','.join(values)}"
            for key, values in parse_qs(parts.query).items()
            if key in ("to", "from", "cc", "security")
        )
        return f"{scheme}://{user}{parts.hostname or ''}{port}" + (f"?{query}" if query else "")
    if scheme in _HOST_SCHEMES:
        port = f":{parts.port}" if parts.port else ""
        rest = "/***" if parts.path.strip("/") or parts.query else ""
        return f"{scheme}://{parts.hostname or ''}{port}{rest}"
    return f"{scheme}://***"


def resolve_secrets(s: Session, hidden: dict[str, Any]) -> dict[str, Any]:
    """The action's hidden part with its `{{ secret.NAME }}` references replaced by the values."""
    names = secrets.references(hidden)
    return secrets.substitute(hidden, secrets.resolve(s, names)) if names else hidden


# ---- e-mail ---------------------------------------------------------------------------------


def _email_settings(url: str, where: str) -> dict[str, Any]:
    if url.lower().startswith("mailto:") and "://" not in url:
        to = unquote(url.split(":", 1)[1])
        server = os.environ.get(SMTP_URL_ENV)
        if not server:
            raise InvalidInput(
                f"{where}: '{url}' needs the server's SMTP settings ({SMTP_URL_ENV}="
                "mailto://user:password@smtp-host:587?from=me@example.com&security=starttls); "
                "or give them in the URL: mailto://user:password@host:port?to=...&from=..."
            )
        settings = _email_settings(server + ("&" if "?" in server else "?") + f"to={to}", where)
        return settings
    parts = urlsplit(url)
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    if not parts.hostname:
        raise InvalidInput(f"{where}: the SMTP server's host is missing in '{mask_url(url)}'")
    recipients = [x.strip() for x in query.get("to", "").split(",") if x.strip()]
    if not recipients:
        raise InvalidInput(
            f"{where}: say who gets the e-mail: mailto://host:port?to=ops@example.com"
        )
    security = query.get("security", "ssl" if parts.scheme.lower() == "mailtos" else "none")
    if security not in ("none", "starttls", "ssl"):
        raise InvalidInput(f"{where}: security must be none, starttls or ssl, not '{security}'")
    try:
        port = parts.port or (465 if security == "ssl" else 25)
    except ValueError:
        raise InvalidInput(f"{where}: the SMTP port in '{mask_url(url)}' is not a number") from None
    return {
        "host": parts.hostname,
        "port": port,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "from": query.get("from") or f"nbflows@{parts.hostname}",
        "to": recipients,
        "security": security,
    }


def send_email(url: str, subject: str, text: str) -> None:
    try:
        smtp = _email_settings(url, "e-mail")
    except InvalidInput as err:
        raise DeliveryFailed(err.message) from None
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = smtp["from"]
    message["To"] = ", ".join(smtp["to"])
    message.set_content(text)
    context = ssl.create_default_context()
    try:
        client: smtplib.SMTP
        if smtp["security"] == "ssl":
            client = smtplib.SMTP_SSL(smtp["host"], smtp["port"], timeout=TIMEOUT, context=context)
        else:
            client = smtplib.SMTP(smtp["host"], smtp["port"], timeout=TIMEOUT)
        with client:
            if smtp["security"] == "starttls":
                client.starttls(context=context)
            if smtp["username"] and smtp["password"]:
                client.login(smtp["username"], smtp["password"])
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as err:
        where = f"{smtp['host']}:{smtp['port']}"
        raise DeliveryFailed(f"SMTP server {where}: {err or type(err).__name__}") from None


# ---- webhooks -------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, '<timestamp>.<body>'): what a receiver recomputes
    (the timestamp in the signed text lets it refuse old replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def send_webhook(url: str, secret: str | None, payload: dict[str, Any], delivery_id: str) -> None:
    import httpx

    body = json.dumps(payload, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: timestamp,
        # The same id on every attempt: a receiver can drop a repeat (see docs/automations.md).
        DELIVERY_HEADER: delivery_id,
        "User-Agent": "nbflows-automations",
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    try:
        answer = httpx.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as err:
        raise DeliveryFailed(f"{mask_url(url)}: {err or type(err).__name__}") from None
    if not answer.is_success:
        raise DeliveryFailed(
            f"{mask_url(url)} answered HTTP {answer.status_code}: {answer.text[:200]}"
        )


# ---- apprise --------------------------------------------------------------------------------


def send_apprise(url: str, subject: str, text: str) -> None:
    import logging

    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise DeliveryFailed(f"apprise does not understand '{mask_url(url)}'")
    with apprise.LogCapture(level=logging.WARNING) as captured:
        delivered = notifier.notify(title=subject, body=text)
        said = captured.getvalue().strip()
    if not delivered:
        reason = said.splitlines()[-1] if said else "apprise could not deliver"
        raise DeliveryFailed(f"{mask_url(url)}: {reason}"[:1000])
