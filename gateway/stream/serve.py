"""The entry shared by every streaming endpoint: admit, validate, then run a stream session."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.admission import NO_AUTH, Admission, Demand
from gateway.errors import GatewayError, Unavailable
from gateway.http import ClientRequest, cors_headers, json_error
from gateway.httpexchange import Reply
from gateway.ids import new_request_id
from gateway.logs import log_event
from gateway.state import GatewayState, RouteRuntime
from gateway.stream.plan import ErrorShape, StreamPlan
from gateway.stream.recording import attach, open_recording
from gateway.stream.session import StreamSession

Prepare = Callable[[str], Awaitable[StreamPlan]]
"""``prepare(request_id)``: read and validate the request, build its plan; raises GatewayError."""


async def start_stream(
    request: ClientRequest,
    state: GatewayState,
    runtime: RouteRuntime,
    prepare: Prepare,
    *,
    received: float,
    errors: ErrorShape = json_error,
    frontdoor: str = "route",
    id_header: str | None = None,
) -> Reply:
    """Admit (auth, limits), ``prepare``, check the concurrency cap, reserve, then stream.

    A :class:`GatewayError` before the stream is counted as a rejection, releases what the
    admission held, and becomes the error response in the endpoint's shape (``errors``).
    ``id_header``: a second header carrying the request id, where the API's SDKs read it.
    """
    route = runtime.config
    state.metrics.frontdoor.request(route.name, frontdoor)  # ``frontdoor``: the API spoken
    request_id = new_request_id()
    headers = {"X-Request-Id": request_id, **cors_headers(request, route)}
    if id_header is not None:
        headers[id_header] = request_id
    admission: Admission = NO_AUTH
    place = Starting()
    try:
        try:
            if state.draining:
                raise Unavailable("the gateway is shutting down", headers={"Retry-After": "1"})
            if state.admit is not None:
                admission = await state.admit(request, state, runtime)
            plan = await prepare(request_id)
            if len(state.sessions) >= state.config.limits.max_concurrent_streams:
                raise Unavailable("too many concurrent streams", headers={"Retry-After": "1"})
            state.sessions.add(place)  # counted from the check on: the waits below (a limits
            if admission.holds:  # backend, a resume store) cannot let a burst past the cap
                await admission.reserve(demand(request, plan))  # counted last, once valid
        except GatewayError as exc:
            state.route_metrics[route.name].rejected(exc.error_code, admission.app)
            admission.release({})
            log_event(
                "rejected", route=route.name, id=request_id, code=exc.error_code, app=admission.app
            )
            return errors(exc, headers)
        sink = None
        if route.resume.enabled:  # else no recording: no coroutine to run for it
            sink = await open_recording(
                state,
                route,
                request,
                plan.encoder,
                headers,
                stream_id=request_id,
                app=admission.app,
                received=received,
            )
        # By position (each argument is the parameter's name): a class called with keywords
        # builds a dict of them first.
        session = StreamSession(
            state, route, request, plan, request_id, received, admission, headers, errors, sink
        )
        attach(sink, session, state)
    finally:
        state.sessions.discard(place)  # the session takes its place as it starts: no wait between
    return await session.run()


class Starting:
    """A request past the concurrency cap's check that is not yet a session: it stands in
    ``state.sessions`` until its session does, so the cap counts it while it waits."""

    __slots__ = ()

    def shutdown(self) -> None:
        """Nothing streams yet (graceful shutdown waits for the session it becomes)."""


def demand(request: ClientRequest, plan: StreamPlan) -> Demand:
    """The request's :class:`Demand` once ``prepare`` read its body (its size: the bytes read,
    which also counts a chunked body without Content-Length)."""
    size = request.content.total_bytes or request.content_length or 0
    return Demand(plan.max_tokens, plan.model, size)
