"""Real notification receivers on loopback: an SMTP server (aiosmtpd) and an HTTP receiver that
checks webhook signatures and keeps apprise's json:// posts."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import free_port


class SMTPReceiver:
    """aiosmtpd on 127.0.0.1 that requires `user`/`password` (AUTH without TLS, loopback only)
    and keeps every message it accepts."""

    def __init__(self, user: str = "bot", password: str = "smtp-pa55") -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[EmailMessage] = []
        self.user, self.password = user, password
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                receiver.messages.append(
                    message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[arg-type]
                )
                return "250 Message accepted for delivery"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> Any:
            ok = isinstance(data, LoginPassword) and (
                data.login.decode(),
                data.password.decode(),
            ) == (receiver.user, receiver.password)
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=authenticate,
            auth_require_tls=False,
        )

    def url(self, to: str = "ops@example.com") -> str:
        return (
            f"mailto://{self.user}:{self.password}@127.0.0.1:{self.port}"
            f"?to={to}&from=nbflows@example.com"
        )

    def __enter__(self) -> SMTPReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class HTTPReceiver:
    """Takes POSTs on 127.0.0.1. `/hook...` must carry a valid X-NBFlows-Signature for
    `secret`; any other path (apprise's json://) is kept as it comes. `status` is the answer
    (set 503 to refuse everything, as a receiver that is down)."""

    def __init__(self, secret: str = "webhook-s3cret") -> None:
        self.secret = secret
        self.status = 200
        self.accepted: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                why = receiver.check(self.path, dict(self.headers), body)
                with receiver.lock:
                    if why is None and receiver.status < 300:
                        receiver.accepted.append(
                            {
                                "path": self.path,
                                "headers": dict(self.headers),
                                "body": json.loads(body),
                            }
                        )
                    else:
                        receiver.refused.append(why or f"answered {receiver.status}")
                self.send_response(400 if why else receiver.status)
                self.end_headers()
                self.wfile.write(b"refused" if why or receiver.status >= 300 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = self.server.server_address[1]

    def check(self, path: str, headers: dict[str, str], body: bytes) -> str | None:
        """Why a webhook is refused (None: its signature is right and fresh)."""
        if not path.startswith("/hook"):
            return None
        timestamp = headers.get("X-NBFlows-Timestamp", "")
        sent = headers.get("X-NBFlows-Signature", "")
        expected = (
            "sha256="
            + hmac.new(
                self.secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
        )
        if not hmac.compare_digest(sent, expected):
            return f"bad signature {sent!r}"
        if abs(time.time() - int(timestamp)) > 300:
            return f"stale timestamp {timestamp}"
        return None

    def bodies(self, prefix: str) -> list[dict[str, Any]]:
        with self.lock:
            return [x["body"] for x in self.accepted if x["path"].startswith(prefix)]

    def __enter__(self) -> HTTPReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
