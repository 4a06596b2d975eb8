"""Request ids: also the stream ids of resumable streams (contract section 12), so unguessable."""

from __future__ import annotations

import secrets


def new_request_id() -> str:
    """A fresh id: 128 random bits as 32 hex digits (the ``X-Request-Id``, the ``created`` id,
    and a resumable stream's id)."""
    return secrets.token_hex(16)
