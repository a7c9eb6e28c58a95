"""A URL as it may be shown or written: the password inside it (redis://:pw@host, postgres://user:pw@host)
replaced, so that no message, manifest or state file carries a secret."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def masked(url: str) -> str:
    """The URL with its password (if any) written as ***; anything that does not parse comes back unchanged."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url
