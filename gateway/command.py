"""The ``gateway`` command's entry point (the installed script and ``python -m gateway``).

Importing the gateway takes about a second (aiohttp, the configuration's schema, the
adapters), and SIGHUP's default action would end the process meanwhile. Under systemd a death
by SIGHUP counts as a clean exit, which ``Restart=on-failure`` does not restart: a ``systemctl
reload`` right after a start would leave the gateway down. So the hangup is blocked before
that import, and :func:`gateway.cli.main` decides what it means once it knows the command
(:func:`gateway.runner.release_hangups`). Only Python's own start and the package's
``__init__`` (some 60 ms) come before the block.
"""

from __future__ import annotations

import signal


def main() -> int:
    """Block SIGHUP, then run the command line (``gateway.cli.main``) and return its code."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    from gateway.cli import main as run  # imported only now: the block comes first

    return run()
