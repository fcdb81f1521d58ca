"""pytest plugin: fixtures for testing mTLS policies (filled in by the plugin module)."""

from __future__ import annotations
