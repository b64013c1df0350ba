"""Choosing a backend by the scheme of its URL (`s3://bucket/prefix`, `file:///path`, a path)."""

from __future__ import annotations

from billing.domain.errors import ConfigurationError


def backend_for(registry: dict[str, type], url: str, setting: str) -> type:
    """The backend of `url`'s scheme (a URL without one is a local folder); ConfigurationError
    naming `setting` for a scheme no backend implements: an `ftp://` archive must not quietly
    become a local folder named `ftp:`."""
    scheme, found, _ = url.partition("://")
    if not found:
        return registry["file"]
    if scheme not in registry:
        known = ", ".join(f"{name}://" for name in sorted(registry))
        raise ConfigurationError(
            f"{setting}: {url!r} has the scheme {scheme}://, which no backend implements "
            f"(use {known} or a path)"
        )
    return registry[scheme]
