"""One client stream's lifetime (see ``session.py``); the parts live in their own modules."""

from gateway.stream.attempts import RETRY_AFTER_CAP, Attempt, EarlyError
from gateway.stream.session import StreamSession

__all__ = ["RETRY_AFTER_CAP", "Attempt", "EarlyError", "StreamSession"]
