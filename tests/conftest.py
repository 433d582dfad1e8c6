"""Fixtures for every test: the CLI's table cache lives in a temporary folder, never in the
user's ``~/.cache`` (a test must not read a table another run left there)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_table_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    # polypseg.cli.tablecache.CACHE_ENV, named here so conftest imports nothing of the CLI
    monkeypatch.setenv("POLYPSEG_CACHE_DIR", str(tmp_path_factory.mktemp("table-cache")))
