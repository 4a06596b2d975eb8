"""App keys (``auth.keys``): who is calling, and may they use this route.

A client presents its key as ``Authorization: Bearer <key>`` or ``x-api-key: <key>`` (the
Bearer header wins when both are sent). The key is compared in constant time against *every*
configured key, with no early exit, so timing reveals neither which key matched nor how much of
one did: both sides are hashed with SHA-256 first, so each comparison runs over 32 bytes
whatever the key lengths. A missing key and a wrong key get the same 401 body.

What identifies the caller afterwards is the key's *name* (the ``app`` label in metrics and the
``app`` field in logs); the key itself is never logged, counted, echoed or sent upstream.
A valid key used on a route outside its ``routes`` allow-list gets 403 ``forbidden`` naming the
route (contract section 3): its key is good, so 401 would mislead, and 404 would tell the app's
developer the route does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from gateway.config.model import AppKey, AuthConfig, RouteConfig
from gateway.errors import Forbidden, Unauthorized

UNAUTHORIZED_MESSAGE = "missing or invalid API key"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="gateway"'}


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key the client sent: the Bearer token, else ``x-api-key``; ``None`` when neither."""
    auth = headers.get("Authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


class Authenticator:
    """Checks app keys against ``auth.keys``. Holds only SHA-256 digests of the keys."""

    def __init__(self, auth: AuthConfig) -> None:
        self._keys = [(_digest(k.key), k) for k in auth.keys]
        # A digest no configured key has: a missing key is compared against every key too, so
        # "missing" and "wrong" take the same time as well as giving the same body.
        self._nothing = hashlib.sha256(b"\x00no key presented").digest()

    def authenticate(self, headers: Mapping[str, str]) -> AppKey:
        """The app key matching the request's credentials; raises :class:`Unauthorized`."""
        presented = presented_key(headers)
        digest = self._nothing if presented is None else _digest(presented)
        found: AppKey | None = None
        for candidate, key in self._keys:
            # Every key is compared: no early exit, so timing does not tell which one matched.
            if hmac.compare_digest(digest, candidate):
                found = key
        if found is None or presented is None:
            raise Unauthorized(UNAUTHORIZED_MESSAGE, headers=dict(CHALLENGE))
        return found

    @staticmethod
    def authorize(key: AppKey, route: RouteConfig) -> None:
        """Raise :class:`Forbidden` (403, naming the route, never the key) when ``route`` is
        outside the key's ``routes`` allow-list."""
        if not may_use(key, route.name):
            raise Forbidden(f"this key may not use route {route.name!r}")


def may_use(key: AppKey | None, route: str) -> bool:
    """Whether ``key`` may use route ``route`` (no key: auth is off, every route)."""
    return key is None or key.routes is None or route in key.routes
