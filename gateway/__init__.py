"""A protocol-agnostic streaming gateway for LLM token streams.

The hot path is a pipeline of small pure steps; only ``server.py`` and ``upstream.py`` do I/O::

    client POST -> server -> adapter.build_request -> upstream (aiohttp)
                                                         | bytes
                   framing decoder -> adapter translator -> TokenStream guard -> encoder -> client
"""

__version__ = "0.1.0"
