"""A URL as it may be shown or written: the password inside it (redis://:pw@host, postgres://user:pw@host)
replaced, so that no message, manifest or state file carries a secret."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def masked(url: str) -> str:
    """The URL with its password (if any) written as ***; anything that does not parse comes back unchanged."""
    try:
        parts = urlsplit(url)
        if parts.password is None and parts.username is None:
            return url
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        # user:password keeps the user; a lone user part (https://TOKEN@host) is the secret itself.
        userinfo = "***" if parts.password is None else f"{parts.username or ''}:***"
        netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return url


def masked_data(data):
    """DATA (a config's JSON dump) with the credentials of every URL in it masked (`masked`): what a manifest keeps."""
    if isinstance(data, dict):
        return {key: masked_data(value) for key, value in data.items()}
    if isinstance(data, list):
        return [masked_data(value) for value in data]
    if isinstance(data, str) and "@" in data and "://" in data:
        return masked(data)
    return data
