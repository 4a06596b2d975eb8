"""Small HTTP helpers shared by the handlers: JSON error responses and body reading."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.errors import BodyTooLarge, GatewayError, InvalidRequest
from gateway.jsonutil import dumps


def json_error(exc: GatewayError, extra_headers: dict[str, str] | None = None) -> web.Response:
    """The pre-stream error response: ``{"error": {"code", "message"}}`` with the error's status."""
    headers = {**(extra_headers or {}), **exc.headers}
    return web.Response(
        status=exc.http_status,
        body=dumps(exc.to_json()),
        content_type="application/json",
        headers=headers,
    )


def json_response(
    doc: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=dumps(doc), content_type="application/json", headers=headers
    )


async def read_body(request: web.Request, max_bytes: int, read_timeout: float) -> bytes:
    """Read the whole request body (bounded in size and time).

    Reading it all before opening the upstream matters: an unread body pauses socket reads and
    hides a client disconnect (lessons.md). Raises :class:`BodyTooLarge` past ``max_bytes``
    (checked against Content-Length first, then while reading) and :class:`InvalidRequest` when
    the body does not arrive within ``read_timeout`` (slowloris).
    """
    length = request.content_length
    if length is not None and length > max_bytes:
        raise BodyTooLarge(f"request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(read_timeout):
            async for chunk in request.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLarge(f"request body is larger than {max_bytes} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise InvalidRequest(f"request body not received within {read_timeout:g}s") from None
    return b"".join(chunks)
