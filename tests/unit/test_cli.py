from __future__ import annotations

import subprocess
import sys

from airflow_ha.cli import build_parser


def test_help_lists_the_registered_commands():
    parser = build_parser()
    result = subprocess.run(
        [sys.executable, "-m", "airflow_ha.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert parser.prog == "airflow-ha"
    assert "usage: airflow-ha" in result.stdout
