"""The core/full split (tests/harness/suite.py): which extended tests the core suite skips."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.harness import suite


class _Item:
    def __init__(self, path: Path, nodeid: str, extended: bool) -> None:
        self.path, self.nodeid, self.extended, self.marks = path, nodeid, extended, []

    def get_closest_marker(self, name: str):
        return self.extended if name == "extended" else None

    def add_marker(self, mark) -> None:
        self.marks.append(mark)


def _config(tmp_path: Path, *args: str):
    return SimpleNamespace(args=list(args), invocation_params=SimpleNamespace(dir=tmp_path))


def _items(tmp_path: Path) -> list[_Item]:
    f = tmp_path / "tests" / "test_x.py"
    return [
        _Item(f, "tests/test_x.py::test_core", False),
        _Item(f, "tests/test_x.py::test_variant[a]", True),
        _Item(f, "tests/test_x.py::test_variant[b]", True),
    ]


def _skipped(items: list[_Item]) -> list[str]:
    return [i.nodeid.split("::")[1] for i in items if i.marks]


def test_core_suite_skips_extended_tests_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.delenv(suite.ENV, raising=False)
    items = _items(tmp_path)
    suite.skip_extended(_config(tmp_path, "tests"), items)
    assert _skipped(items) == ["test_variant[a]", "test_variant[b]"]
    assert "AIRFLOW_HA_SUITE=full" in items[1].marks[0].kwargs["reason"]


def test_a_test_named_by_id_runs_in_the_core_suite(tmp_path, monkeypatch):
    monkeypatch.delenv(suite.ENV, raising=False)
    items = _items(tmp_path)
    suite.skip_extended(_config(tmp_path, "tests/test_x.py::test_variant[b]"), items)
    assert _skipped(items) == ["test_variant[a]"]


def test_full_suite_skips_nothing_and_a_wrong_name_is_an_error(tmp_path, monkeypatch):
    items = _items(tmp_path)
    monkeypatch.setenv(suite.ENV, "full")
    suite.skip_extended(_config(tmp_path, "tests"), items)
    assert _skipped(items) == []
    monkeypatch.setenv(suite.ENV, "all")
    with pytest.raises(pytest.UsageError, match="AIRFLOW_HA_SUITE='all'"):
        suite.selected()
