"""``python -m mtlsauth``: the command line (see ``mtlsauth --help``)."""

from __future__ import annotations

from mtlsauth._cli._main import main

raise SystemExit(main())
