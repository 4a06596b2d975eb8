"""A protocol-agnostic streaming gateway for LLM token streams.

The hot path is a pipeline of small pure steps (framing, adapters, pipeline, encoders: no I/O);
the I/O edge around one stream is ``gateway.stream`` (its package docs draw the parts), with
``upstream.py`` the upstream client seam and ``server.py`` / ``frontdoor`` the handlers::

    client POST -> start_stream (admission, request decoding) -> Failover -> upstream
                                                                   | bytes
      Source: framing decoder -> adapter translator -> Pipeline guard -> [events]
      Sink: encoder -> client;   StreamRecord: metrics, logs, traces
"""

__version__ = "0.1.0"

from gateway.native import STATUS as NATIVE  # before any other module: see native.py

__all__ = ["NATIVE", "__version__"]
