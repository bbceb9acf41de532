"""Signed auth tokens (JWT through PyJWT).

HS256 by default, with one secret that every process of a server shares: configured
(`Settings.auth_key` or TICKWIRE_AUTH_KEY), or generated once at start by the process that
starts the others and handed down through the environment of its children, never on a
command line. RS256 signs with a private key where tokens are signed and verifies with the
public keys, chosen by key id (`kid`) so keys can rotate. SocketCluster's tokens are JWTs
too, with the same claims (`exp`, `iat`), so its clients can keep theirs.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt

from .errors import Unauthenticated

__all__ = ["Auth", "generate_key", "KEY_ENV"]

KEY_ENV = "TICKWIRE_AUTH_KEY"


def generate_key() -> str:
    return secrets.token_urlsafe(32)


class Auth:
    """Signs and verifies tokens. Pure apart from reading the clock when not given `now`."""

    def __init__(
        self,
        algorithm: str = "HS256",
        key: str | None = None,
        private_key: str | None = None,
        public_keys: dict[str, str] | None = None,
        key_id: str | None = None,
        expiry: float = 24 * 3600.0,
    ):
        self.algorithm = algorithm
        self.expiry = expiry
        self.key_id = key_id
        if algorithm.startswith("HS"):
            if not key:
                raise ValueError("HS256 tokens need a key (Settings.auth_key or TICKWIRE_AUTH_KEY)")
            self.signing_key: Any = key
            self.verify_keys: dict[str | None, Any] = {None: key}
        elif algorithm.startswith(("RS", "ES", "PS")):
            if not public_keys:
                raise ValueError(f"{algorithm} tokens need public keys to verify them")
            self.signing_key = private_key  # None where tokens are only verified
            self.verify_keys = dict(public_keys)
            if key_id is not None and key_id not in self.verify_keys:
                raise ValueError(f"the signing key id {key_id!r} has no public key")
        else:
            raise ValueError(f"unsupported token algorithm {algorithm!r}")

    @property
    def can_sign(self) -> bool:
        return self.signing_key is not None

    def sign(self, claims: dict[str, Any], expiry: float | None = None, now: float | None = None) -> str:
        if self.signing_key is None:
            raise RuntimeError("this process has no private key: it can verify tokens, not sign them")
        now = time.time() if now is None else now
        body = dict(claims)
        body.setdefault("iat", int(now))
        if "exp" not in body:
            body["exp"] = int(now + (self.expiry if expiry is None else expiry))
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(body, self.signing_key, algorithm=self.algorithm, headers=headers)

    def verify(self, token: str, now: float | None = None) -> dict[str, Any]:
        """The token's claims, or Unauthenticated saying why (expired, invalid)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("invalid token") from None
        if header.get("alg") != self.algorithm:
            raise Unauthenticated("invalid token: wrong algorithm")
        kid = header.get("kid")
        if kid is not None and kid in self.verify_keys:
            key = self.verify_keys[kid]
        elif None in self.verify_keys:
            key = self.verify_keys[None]
        elif kid is None and len(self.verify_keys) == 1:
            key = next(iter(self.verify_keys.values()))
        else:
            raise Unauthenticated("invalid token: unknown key id")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[self.algorithm],
                options={"require": ["exp"], "verify_exp": False},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        now = time.time() if now is None else now
        if claims["exp"] <= now:
            raise Unauthenticated("token expired")
        return claims

    @staticmethod
    def expired(claims: dict[str, Any] | None, now: float) -> bool:
        return claims is not None and "exp" in claims and claims["exp"] <= now
