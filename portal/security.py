"""What protects the page's forms and cookies.

- **Cookies**: `__Host-`-style rules by hand (path /, no domain), HttpOnly, SameSite=Strict, and
  Secure whenever the request came over HTTPS (uvicorn's --proxy-headers sets the scheme behind
  the operator's proxy). The session and challenge cookies hold signed opaque tokens only.
- **Cross-site posts**: every POST must (1) not come from another site by the browser's own
  word (`Sec-Fetch-Site: cross-site`, or an `Origin` that is not this page's) and (2) carry a
  form token that is a keyed hash of the visitor's `portal_csrf` cookie and, once signed in, of
  the session: a page of another site can neither read the cookie nor forge the hash
  (OWASP's synchronizer-token and fetch-metadata defences, both).
- **Headers**: a strict Content-Security-Policy (no script at all), no framing, no referrer,
  no caching of pages that show a customer's data. The referrer policy is `same-origin`, not
  `no-referrer`: under `no-referrer` browsers send `Origin: null` on a same-origin POST.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response

from billing.accounts.keys import Keys

CSRF_COOKIE = "portal_csrf"
SESSION_COOKIE = "portal_session"
CHALLENGE_COOKIE = "portal_challenge"
LANGUAGE_COOKIE = "portal_lang"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    response: Response, request: Request, name: str, value: str, max_age: int | None = None
) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=is_https(request), httponly=True,
        samesite="strict",
    )  # fmt: skip


def delete_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path="/", secure=is_https(request), httponly=True, samesite="strict"
    )


def csrf_seed(request: Request) -> tuple[str, bool]:
    """The visitor's CSRF cookie value, and whether it is new (to be set on the response)."""
    seed = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(seed) <= 64 and seed.replace("-", "").replace("_", "").isalnum():
        return seed, False
    return secrets.token_urlsafe(24), True


def csrf_token(keys: Keys, seed: str, session_id: str = "") -> str:
    return keys.digest("csrf", seed, session_id)


def same_site_post(request: Request) -> bool:
    """False when the browser says the POST comes from another site (fetch metadata, Origin)."""
    if request.headers.get("sec-fetch-site", "") == "cross-site":
        return False
    origin = request.headers.get("origin")
    if origin is None:  # not sent by every browser on a same-origin POST: the token decides
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin == own


def valid_csrf(keys: Keys, request: Request, submitted: str, session_id: str = "") -> bool:
    seed = request.cookies.get(CSRF_COOKIE, "")
    if not seed or not submitted:
        return False
    return hmac.compare_digest(csrf_token(keys, seed, session_id), submitted)
