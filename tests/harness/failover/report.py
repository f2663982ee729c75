"""The failover results table: printed, and written as Markdown and JSON for the README and CI."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class ScenarioResult:
    scenario: str
    backend: str
    dag_runs: int
    dag_runs_succeeded: int
    tasks_expected: int
    tasks_succeeded: int
    tasks_retried: int
    tasks_duplicated: int
    tasks_lost: int
    recovery_seconds: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.dag_runs_succeeded == self.dag_runs and self.tasks_lost == 0


COLUMNS = [
    ("scenario", "scenario"),
    ("backend", "backend"),
    ("recovery_seconds", "recovery s"),
    ("dag_runs", "runs"),
    ("dag_runs_succeeded", "runs ok"),
    ("tasks_succeeded", "tasks run"),
    ("tasks_retried", "retried"),
    ("tasks_duplicated", "duplicated"),
    ("tasks_lost", "lost"),
]


def _cell(result: ScenarioResult, key: str) -> str:
    value = getattr(result, key)
    if key == "recovery_seconds":
        return "-" if value is None else f"{value:.1f}"
    return str(value)


def markdown_table(results: list[ScenarioResult]) -> str:
    header = "| " + " | ".join(title for _key, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(r, key) for key, _title in COLUMNS) + " |" for r in results]
    return "\n".join([header, rule, *rows])


def write_results(results: list[ScenarioResult], directory: Path, backend: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"failover-{backend}.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    path = directory / f"failover-{backend}.md"
    notes = [f"- {r.scenario}: {note}" for r in results for note in r.notes]
    path.write_text(markdown_table(results) + ("\n\n" + "\n".join(notes) if notes else "") + "\n")
    return path
