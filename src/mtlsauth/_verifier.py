"""Verifier. INTERFACE STUB: the real one lands shortly."""

from __future__ import annotations

__all__ = ["Verifier"]


class Verifier:
    def __init__(self, **kwargs: object) -> None:
        raise NotImplementedError
