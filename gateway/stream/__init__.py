"""The I/O edge of one stream: admission to terminal event.

::

    start_stream (serve.py)      admit (auth, limits) -> prepare (decode the request) -> session
       │
    StreamSession (session.py)   open -> pipe -> finish
       ├─ Failover (attempts.py)      route targets in order, before the first byte -> Source
       ├─ Source (source.py)          upstream bytes -> Pipeline -> event batches
       ├─ Sink (sinks.py)             events -> Encoder -> client response (streamed or buffered)
       ├─ StreamRecord (metrics)      timings and counts -> Prometheus, logs, traces
       ├─ Deadlines (deadlines.py)    one timer: upstream silence, duration, heartbeats, slow client
       └─ drain (drain.py)            after an abort with on_client_abort: drain

One token's way, upstream socket to client socket (the raw upstream client; with
``server.upstream_client: aiohttp`` the first three steps are aiohttp's ``StreamReader``)::

    _Conn.data_received (rawhttp.py)     httptools strips the HTTP chunk framing
    _Conn.on_body                        payload appended to ``pending``, the reader woken
    RawResponse.read                     everything pending, as one bytes
    Source.next_batch (source.py)        Pipeline.feed: framing decoder -> translator -> guard
    StreamSession._pipe / _deliver       Sink.frame (encoder), StreamRecord.wrote
    Sink.send (sinks.py)                 one HTTP chunk straight to the client transport
                                         (aiohttp's writer only while the transport is paused)
"""

from gateway.ids import new_request_id
from gateway.stream.attempts import Attempt
from gateway.stream.plan import ErrorShape, StreamPlan
from gateway.stream.serve import Prepare, start_stream
from gateway.stream.session import StreamSession

__all__ = [
    "Attempt",
    "ErrorShape",
    "Prepare",
    "StreamPlan",
    "StreamSession",
    "new_request_id",
    "start_stream",
]
