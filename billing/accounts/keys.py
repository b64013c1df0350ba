"""One secret for the customer's side, and a key derived from it for each purpose, so a key
leaked from one use (say, a cookie signer) says nothing of another (the code hashes)."""

from __future__ import annotations

import hashlib
import hmac


class Keys:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("the portal secret must hold at least 32 bytes")
        self._secret = secret

    def derive(self, purpose: str) -> bytes:
        return hmac.new(
            self._secret, f"invoices-portal:{purpose}".encode(), hashlib.sha256
        ).digest()

    def digest(self, purpose: str, *parts: str) -> str:
        """A keyed hash (hex) of `parts` for `purpose`; parts are length-prefixed, so ("ab", "c")
        and ("a", "bc") differ."""
        message = b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)
        return hmac.new(self.derive(purpose), message, hashlib.sha256).hexdigest()


def token_id(token: str) -> str:
    """The ledger's id of an opaque token (sha256): the database never holds the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()
