from __future__ import annotations

import argparse
import re
import subprocess
import sys

from airflow_ha.cli import COMMAND_MODULES, build_parser


def registered_commands() -> set[str]:
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return set(subparsers.choices)


def test_every_command_module_registers_a_command_and_help_lists_them_all():
    commands = registered_commands()
    assert len(commands) >= len(COMMAND_MODULES), commands
    result = subprocess.run(
        [sys.executable, "-m", "airflow_ha.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("usage: airflow-ha")
    listed = set(re.search(r"\{([a-z,-]+)\}", result.stdout).group(1).split(","))
    assert listed == commands


def test_an_unknown_command_is_refused_by_name(capsys):
    try:
        build_parser().parse_args(["no-such-command"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid choice: 'no-such-command'" in capsys.readouterr().err
