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
