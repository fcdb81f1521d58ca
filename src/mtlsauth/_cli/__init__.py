"""The ``mtlsauth`` command line and its tooling: ``_main`` (argument parsing, ``inspect``,
``verify``, ``testca``), ``_demo`` (``mtlsauth demo``) and ``_testpki`` (the test PKI it writes).

The only core-side package allowed to import adapters and web frameworks (``_demo`` runs a
FastAPI app under uvicorn); nothing in the runtime core imports it.
"""

from __future__ import annotations

from mtlsauth._cli._main import main

__all__ = ["main"]
