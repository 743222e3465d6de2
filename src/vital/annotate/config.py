"""Settings of the annotation app and of its exports, each in one place.

This module is light to import (no SQLAlchemy, no FastAPI): the command line
reads these classes at start-up to make its flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from vital.config import StageConfig, setting
from vital.errors import InputError

#: Hours a login link stays valid (``vital annotate add-user --expires-hours``).
LOGIN_TTL_HOURS = 72.0
#: Which answers give preference pairs.
ANSWER_KINDS = ("all", "compare", "demos")
EXPORT_KINDS = ("preferences", "demos")


@dataclass
class ServeConfig(StageConfig):
    """How the app is served: where it listens, how items are shared, which requests it accepts."""

    host: str = setting("127.0.0.1", "Address the app listens on (login links point to it, unless --public-url).")
    port: int = setting(8000, "Port the app listens on.")
    public_url: str | None = setting(
        None, "The address clinicians open, e.g. https://annotate.example.org (for login links; default "
        "http://HOST:PORT).")
    overlap: int = setting(1, "Annotators per item (2 or more measures agreement).")
    max_body: int = setting(1_000_000, "Largest request body in bytes; a larger one is refused (413) unread.")
    secure_cookies: bool = setting(
        False, "Mark cookies Secure even when requests arrive as plain HTTP: for a TLS proxy in front that sends "
        "no X-Forwarded-Proto.")

    def validate(self) -> None:
        if not 1 <= self.port <= 65535:
            raise InputError("must be a port number (1-65535)", field="port")
        if self.overlap < 1:
            raise InputError("must be at least 1", field="overlap")
        if self.max_body < 1:
            raise InputError("must be at least 1 byte", field="max_body")
        if self.public_url is not None:
            parts = urlsplit(self.public_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputError("must be an http:// or https:// address", field="public_url")

    @property
    def url(self) -> str:
        """The address login links point to."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass
class ExportConfig(StageConfig):
    """What ``vital annotate export`` writes."""

    kind: str = setting(
        help="preferences: pairs for vital selector train --preferences; demos: figure records for "
        "vital generate --demos.", choices=EXPORT_KINDS)
    answers: str = setting(
        "all", "Which answers give preference pairs: compare, demos (best and acceptable) or all.",
        choices=ANSWER_KINDS)
