"""The table cache of ``polypseg models``: keys, reads, writes, and the command through it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from polypseg.cli import main, tablecache
from polypseg.cli import models as models_cli


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(tablecache.CACHE_ENV, str(folder))
    return folder


def test_store_and_load_round_trip(cache: Path) -> None:
    key = tablecache.cache_key("models", {"size": 64})
    assert tablecache.load("models", key) is None
    assert tablecache.store("models", key, {"rows": [{"name": "p4", "params": 12}]})
    assert tablecache.load("models", key) == {"rows": [{"name": "p4", "params": 12}]}
    other = tablecache.cache_key("models", {"size": 128})
    assert other != key and tablecache.load("models", other) is None


def test_unreadable_or_foreign_entries_are_misses(cache: Path) -> None:
    key = tablecache.cache_key("models", {"size": 64})
    tablecache.store("models", key, [1, 2])
    (entry,) = cache.iterdir()
    entry.write_text("{not json")
    assert tablecache.load("models", key) is None
    entry.write_text('{"key": "another", "value": [1, 2]}')
    assert tablecache.load("models", key) is None


def test_an_unwritable_cache_is_not_an_error(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(tablecache.CACHE_ENV, str(blocker / "sub"))  # a folder under a file
    assert tablecache.store("models", "0" * 64, [1]) is False


def test_source_digest_follows_the_package_source(tmp_path: Path, monkeypatch) -> None:
    package = tmp_path / "fakepkg_tablecache"
    package.mkdir()
    (package / "__init__.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = tablecache.source_digest("fakepkg_tablecache")
    assert tablecache.source_digest("fakepkg_tablecache") == before
    (package / "__init__.py").write_text("X = 2\n")
    assert tablecache.source_digest("fakepkg_tablecache") != before
    assert "fakepkg_tablecache" not in sys.modules  # found, never imported
    assert tablecache.source_digest("no_such_package_here") == "absent"


def test_models_reads_the_cache_instead_of_building(cache: Path, monkeypatch, capsys) -> None:
    calls = []
    row = {"name": "p4", "summary": "s", "group": "C4", "group_size": 4, "width": 8,
           "params": 1234, "macs": 5e9}

    def fake_rows(size, width, depth, match):
        calls.append((size, width, depth, match))
        return [row], None

    monkeypatch.setattr(models_cli, "variant_rows", fake_rows)
    assert main(["models", "--size", "64", "--depth", "2"]) == 0
    first = capsys.readouterr().out
    assert main(["models", "--size", "64", "--depth", "2"]) == 0
    assert capsys.readouterr().out == first and "1,234" in first
    assert calls == [(64, None, 2, None)]  # built once, read the second time
    assert main(["models", "--size", "64", "--depth", "2", "--no-cache"]) == 0
    assert main(["models", "--size", "32", "--depth", "2"]) == 0  # other options: other entry
    assert len(calls) == 3


def test_models_errors_are_not_cached(cache: Path, capsys) -> None:
    assert main(["models", "--size", "7", "--depth", "2"]) == 2
    assert "--size 7" in capsys.readouterr().err
    assert not cache.exists() or not any(cache.iterdir())


def test_the_tests_cache_variable_is_the_modules() -> None:
    assert tablecache.CACHE_ENV == "POLYPSEG_CACHE_DIR"  # tests/conftest.py sets it by name
