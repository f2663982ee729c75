"""Fixes that let the stack this project pins run together; each module says what and why.

Every fix is listed in :data:`FIXES` with the upstream issue or change it works around and the versions
it was written and tested for. :func:`install` (called when Airflow loads this provider's information,
which every ``airflow`` command does before it imports executors) applies a fix only when every installed
version is in its range, logs once per process what it applied, and warns when a version left the range:
then run the fix's canary test (``tests/integration/test_compat.py``, the ``stock`` cases), which fails
once upstream no longer has the bug, and drop the fix or widen its range.

``AIRFLOW_HA_COMPAT_SKIP=<name>,...`` leaves named fixes out (the canary tests use it to run the stock
code through the real entry points; a deployment can use it if an upstream release fixed a bug first).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata

# each fix module imports only the standard library at module level: what it patches loads later
from airflow_ha.compat import celery, executor_end, forksafe_db, trigger_cleanup

log = logging.getLogger(__name__)

SKIP_ENV = "AIRFLOW_HA_COMPAT_SKIP"


@dataclass(frozen=True)
class Fix:
    name: str
    affected: Mapping[str, str]  # distribution -> PEP 440 specifier of the versions the fix is written for
    upstream: str
    install: Callable[[], None]

    def out_of_range(self) -> list[str]:
        """``"<dist> <version> not <spec>"`` for each installed distribution outside the fix's range."""
        from packaging.specifiers import SpecifierSet

        outside = []
        for dist, spec in self.affected.items():
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                outside.append(f"{dist} not installed")
                continue
            if version not in SpecifierSet(spec, prereleases=True):
                outside.append(f"{dist} {version} not {spec}")
        return outside


CELERY_5_7 = {"celery": ">=5.7", "apache-airflow-providers-celery": ">=3.26,<3.27"}
FIXES = (
    Fix(
        "celery-db-retry",
        CELERY_5_7,
        "celery/celery#10130 removed celery.backends.database.retry; the Celery provider still imports it",
        celery.install_retry,
    ),
    Fix(
        "celery-db-result-decoding",
        CELERY_5_7,
        "celery/celery#10536 stores results encoded; the provider's BulkStateFetcher reads the raw column",
        celery.install_result_decoding,
    ),
    Fix(
        "celery-send-queued-on-end",
        {"apache-airflow-providers-celery": ">=3.26,<3.27"},
        "apache/airflow#65594 pre-assigns Celery task ids when queueing: a scheduler stopped before its next "
        "heartbeat strands those tasks until task_queued_timeout (the trade-off its review accepted)",
        executor_end.install,
    ),
    Fix(
        "forksafe-mysql",
        {"apache-airflow-core": ">=3.0,<3.4"},
        "apache/airflow#56879 (a forked child's GC closes the parent's MySQL connection; #56044 was closed)",
        forksafe_db.install,
    ),
    Fix(
        "trigger-cleanup",
        {"apache-airflow-core": ">=3.3,<3.4"},
        "apache/airflow#72061 (Trigger.clean_unused deletes a just-deferred trigger on MySQL, cascading to its TI)",
        trigger_cleanup.install,
    ),
)

_applied: list[str] | None = None


def install() -> list[str]:
    """Apply the fixes whose versions match (once per process); returns the names applied."""
    global _applied
    if _applied is not None:
        return _applied
    skipped = {s.strip() for s in os.environ.get(SKIP_ENV, "").split(",") if s.strip()}
    unknown = skipped - {fix.name for fix in FIXES}
    if unknown:
        log.warning("airflow-ha: %s names no compat fix: %s (known: %s)", SKIP_ENV, sorted(unknown), _names())
    _applied = []
    for fix in FIXES:
        if fix.name in skipped:
            log.info("airflow-ha: compat fix %s skipped (%s)", fix.name, SKIP_ENV)
            continue
        outside = fix.out_of_range()
        if outside:
            log.warning(
                "airflow-ha: compat fix %s not applied: %s. Upstream: %s. Run its canary test to see whether "
                "the bug is gone.",
                fix.name,
                "; ".join(outside),
                fix.upstream,
            )
            continue
        fix.install()
        _applied.append(fix.name)
    log.info("airflow-ha: compat fixes applied: %s", ", ".join(_applied) or "none")
    return _applied


def _names() -> list[str]:
    return [fix.name for fix in FIXES]
