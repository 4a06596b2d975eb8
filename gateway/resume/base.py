"""The resume store's interface, its per-process bounds, and the checks every store shares.

A resumable stream (contract section 12) is recorded while it is written: its recording sink
(:mod:`gateway.stream.recording`) calls :meth:`Recorder.extend` with each write batch's frames
(their ids run on from the batch's first id), then :meth:`Recorder.finish` after the terminal
frame (the sink records an ``error{code: shutdown}`` frame first when the stream ends without
one). Stream ids
are request ids (:func:`gateway.ids.new_request_id`, 128 random bits). Any request may then
:meth:`ResumeStore.replay` the frames after an id and follow
the live stream to its terminal frame, or :meth:`ResumeStore.stop` it.

::

    ResumeStore.open(id, owner, headers, window, max_events, on_stop) -> (Recorder | None, reason)
    Recorder.extend(first_id, frames) / append(id, frame)  sync, never blocks the hot path
    Recorder.detach() -> bool                            the client left; keep recording?
    await Recorder.finish()                              terminal; the window starts
    await ResumeStore.replay(id, app, last_event_id) -> Replay(headers, frames)
    await ResumeStore.stop(id, app)                      calls the owner's on_stop

Bounds: every store of a process shares one :class:`Budget` (bytes held in memory, detached
streams). A store refuses to open a recorder when a cap is reached: that stream is simply not
resumable, never an out-of-memory. The budget is plain arithmetic on the hot path; its gauges
are read from it (``ResumeMetrics.watch``), not pushed on every write batch.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

from gateway.errors import Forbidden, Gone, InvalidRequest, NotFound
from gateway.values import value

STREAM_ID = re.compile(r"[0-9A-Za-z_-]{22,64}")
"""What a stream id may look like (``secrets.token_hex(16)`` and ``token_urlsafe`` fit)."""

ENTRY_OVERHEAD = 48
"""Bytes counted per buffered frame on top of its length: the ``bytes`` object's header and its
deque slot (``python -m bench.resume``: 93 bytes held per 46-byte frame in the memory store)."""

StopCallback = Callable[[], None]


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """``Last-Event-ID`` (the header wins) as an int; ``None`` when neither was sent.

    Raises :class:`InvalidRequest` (400) unless it is a decimal integer >= 0.
    """
    raw = header if header is not None else query
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise InvalidRequest("Last-Event-ID: must be a non-negative integer")
    return int(raw)


def check_stream_id(stream_id: str) -> None:
    """Raise :class:`NotFound` for an id no stream can have (it never reaches a store key)."""
    if not STREAM_ID.fullmatch(stream_id):
        raise NotFound("no such stream (unknown or expired)")


def stream_owner(route: str, app: str | None) -> str:
    """Whose a stream is, as the stores keep it: the route it was started on and the app key
    that started it (``route/app``, or ``route/`` without auth; both are config names, which
    have no ``/``). A stream is resumed or stopped only through its own route's path, so a
    key a reload took off that route cannot reach it through another route."""
    return f"{route}/{app or ''}"


def check_owner(owner: str | None, app: str | None) -> None:
    """Only the owner that started a stream may resume or stop it (403 otherwise); the
    endpoints pass :func:`stream_owner`'s value."""
    if owner != app:
        raise Forbidden("this stream was started by another key or on another route")


def check_range(last_event_id: int, first: int | None, last: int, finished: bool) -> None:
    """Shared 400/410 rules: ``first`` is the oldest id still held (``None``: none held).

    Beyond the stream (400) is only decided once the stream is finished, or by a store that
    sees every append synchronously (it passes ``finished=True`` for that check).
    """
    if finished and last_event_id > last:
        raise InvalidRequest(f"Last-Event-ID: {last_event_id} is beyond this stream ({last})")
    if first is not None and last_event_id + 1 < first:
        raise Gone(f"events after {last_event_id} were dropped (the oldest held is {first})")


class Budget:
    """Per-process caps shared by every store: bytes held in memory and detached streams."""

    __slots__ = ("bytes", "detached", "max_bytes", "max_detached")

    def __init__(self, max_bytes: int, max_detached: int) -> None:
        self.max_bytes = max_bytes
        self.max_detached = max_detached
        self.bytes = 0
        self.detached = 0

    def refusal(self) -> str | None:
        """Why a new recorder may not open now, or ``None`` when it may.

        New streams are refused from 90% of the byte cap on: the rest is headroom for the
        streams already recording (past the cap they drop their own oldest frames).
        """
        if self.bytes * 10 >= self.max_bytes * 9:
            return "buffer_full"
        if self.detached >= self.max_detached:
            return "too_many_detached"
        return None

    @property
    def over(self) -> bool:
        return self.bytes > self.max_bytes

    def add(self, n: int) -> None:
        self.bytes += n

    def detach(self) -> bool:
        if self.detached >= self.max_detached:
            return False
        self.detached += 1
        return True

    def undetach(self) -> None:
        self.detached -= 1


@value
class Replay:
    """A resume: the original response's headers, then every frame to send (``b""``: idle).

    ``ended``: the stream is finished and the client already has its terminal frame.
    """

    headers: Mapping[str, str]
    frames: AsyncGenerator[bytes, None]
    ended: bool = False


class Recorder(ABC):
    """Records one live stream. Owned by the stream's task; not shared between tasks."""

    stream_id: str

    @abstractmethod
    def extend(self, first_id: int, frames: Sequence[bytes]) -> None:
        """Record one write batch: ``frames[i]`` is the encoded event ``first_id + i``. Never
        blocks.

        Ids run on without a gap: ``first_id`` is the last recorded id plus one (1 for the first
        batch). Heartbeats are not recorded. After :meth:`finish` it is ignored. Raises
        ``ValueError`` on any other ``first_id`` (a caller bug).
        """

    def append(self, event_id: int, frame: bytes) -> None:
        """:meth:`extend` with one frame."""
        self.extend(event_id, (frame,))

    @abstractmethod
    def detach(self) -> bool:
        """The client left and the stream keeps running (``on_client_abort: detach``).

        Returns ``False`` when the process holds its cap of detached streams: then cancel it.
        """

    @abstractmethod
    async def finish(self) -> None:
        """The terminal frame was appended: followers end after it; the window starts now."""


class ResumeStore(ABC):
    """Where resumable streams are kept. See the module docstring for the whole cycle."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget

    @abstractmethod
    async def open(
        self,
        stream_id: str,
        owner_app: str | None,
        headers: Mapping[str, str],
        window: float,
        max_events: int,
        on_stop: StopCallback | None = None,
    ) -> tuple[Recorder | None, str | None]:
        """Start recording ``stream_id`` (a request id: :func:`gateway.ids.new_request_id`).

        Returns ``(recorder, None)``, or ``(None, reason)`` when a cap of the :class:`Budget`
        is reached (``buffer_full``, ``too_many_detached``) or the store failed
        (``store_error``). ``on_stop`` is called (in the owner's process) on :meth:`stop`.
        """

    @abstractmethod
    async def replay(
        self, stream_id: str, app: str | None, last_event_id: int | None, idle: float = 15.0
    ) -> Replay:
        """The frames after ``last_event_id`` (``None``: from the start), then the live ones
        up to and including the terminal frame; ``b""`` after each ``idle`` seconds without
        one (the caller sends a heartbeat).

        Raises before the first frame: :class:`NotFound` (unknown or expired), :class:`Forbidden`
        (another app's stream), :class:`Gone` (range dropped), :class:`InvalidRequest` (beyond
        the stream). A follower that falls behind by more than ``max_events`` ends early
        (its next resume gets 410). Cancelling the iteration is safe.
        """

    @abstractmethod
    async def stop(self, stream_id: str, app: str | None) -> None:
        """Stop a stream: its owner's ``on_stop`` runs (within 100 ms, in whichever process
        owns it). A finished stream is left as it is. Raises NotFound / Forbidden as replay."""

    def expire(self) -> None:  # noqa: B027 (optional hook)
        """Forget the streams whose window has ended (called once a second and before each
        ``/metrics``): an idle process frees their memory too, and its gauges say so."""

    async def warm(self) -> None:  # noqa: B027 (optional hook)
        """Get ready to serve at once (app start-up); never raises."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections and background tasks."""
