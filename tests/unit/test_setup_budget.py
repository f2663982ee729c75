"""tests/harness/setup_budget.py on real pytest items: the first test that sets up a long session fixture gets
that fixture's budget on top of its own timeout; skipped tests and later users keep theirs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_first_user_of_each_fixture_gets_its_budget(tmp_path):
    (tmp_path / "conftest.py").write_text(
        textwrap.dedent(
            """
            import pytest
            from tests.harness import setup_budget

            @pytest.fixture(scope="session")
            def cluster():
                return 1

            @pytest.fixture(scope="session")
            def release(cluster):
                return 2

            @pytest.hookimpl(trylast=True)
            def pytest_collection_modifyitems(config, items):
                setup_budget.extend_first_users(items, 900, {"cluster": 100, "release": 1000})

            def pytest_collection_finish(session):
                for item in session.items:
                    marker = item.get_closest_marker("timeout")
                    print("TIMEOUT", item.name, marker.args[0] if marker else None)
            """
        )
    )
    (tmp_path / "test_x.py").write_text(
        textwrap.dedent(
            """
            import pytest

            def test_no_fixture():
                pass

            @pytest.mark.skip(reason="extended")
            def test_skipped(release):
                pass

            @pytest.mark.timeout(1500)
            def test_first(release):
                pass

            def test_second(release):
                pass
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--co", "-q", "-s", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    timeouts = dict(line.split()[1:] for line in out.stdout.splitlines() if line.startswith("TIMEOUT"))
    assert timeouts == {
        "test_no_fixture": "None",
        "test_skipped": "None",
        "test_first": "2600.0",
        "test_second": "None",
    }, out
