"""``python -m gateway``: the command line (see ``gateway.cli``)."""

from gateway.cli import main

raise SystemExit(main())
