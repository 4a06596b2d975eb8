"""``python -m gateway``: the command line (see ``gateway.command`` and ``gateway.cli``)."""

from gateway.command import main

raise SystemExit(main())
