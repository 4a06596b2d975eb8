"""The held (non-streaming) encoders answer an error with the status its code has in the tree."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from gateway import events as ev
from gateway.config.model import RouteConfig
from gateway.encoders.chat_completions import CompletionEncoder
from gateway.encoders.messages import MessageEncoder
from gateway.encoders.responses import ResponseDocEncoder
from gateway.errors import BudgetExceeded, LimitExceeded, UpstreamTimeout
from tests.support.gateway import config_from

ROUTE = config_from({"routes": [{"name": "r", "provider": "simulated"}]}).routes[0]

Held = CompletionEncoder | MessageEncoder | ResponseDocEncoder
MAKERS: dict[str, Callable[[RouteConfig], Held]] = {
    "chat_completions": lambda route: CompletionEncoder(route, "rid", model="r", created=1),
    "messages": lambda route: MessageEncoder(route, "rid", model="r"),
    "responses": lambda route: ResponseDocEncoder(route, "rid"),
}


@pytest.mark.parametrize("api", sorted(MAKERS))
@pytest.mark.parametrize(
    ("code", "status"),
    [
        (LimitExceeded.code, 429),  # was 500 in the copied tables
        (BudgetExceeded.code, 429),  # was 500 in the copied tables
        (UpstreamTimeout.code, 504),
        ("upstream_error", 502),
        ("shutdown", 503),
        ("not_a_gateway_code", 500),
    ],
)
def test_held_error_status(api: str, code: str, status: int) -> None:
    encoder = MAKERS[api](ROUTE)
    body = encoder.encode(ev.error(code, "stopped here", False))
    assert encoder.status == status
    assert json.loads(body)  # a whole JSON error document
