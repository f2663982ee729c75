"""The Smart sensors page with hundreds of targets: paged, waiters folded, a layout that wraps in the window."""

from __future__ import annotations

import re

from airflow_ha.sensors.listing import SensorGroup, Waiter
from airflow_ha.sensors.plugin import PAGE_SIZE, WAITERS_SHOWN, render_page


def _group(code: int, waiters: int = 1) -> SensorGroup:
    group = SensorGroup(
        hashcode=code,
        kind="file",
        description=f"file /opt/airflow/markers/20261124/{'very_long_upstream_job_name_' * 4}{code}.job",
        poke_context={},
        virtual_shard=code % 64,
        queue=f"sensor-v{code % 64:03d}",
        shard=code % 2,
        age_seconds=3600.0 - code,
    )
    group.waiters = [
        Waiter(f"edw_d_{i:04d}", f"wait_edw_{code}", "scheduled__2026-11-24T02:00:00+00:00", -1, 1, "", code, 1)
        for i in range(waiters)
    ]
    return group


def _rows(page: str) -> list[str]:
    waiting = page.split("<h3>")[0]
    return re.findall(r"<tr><td><code>(\d+)</code>", waiting)


def test_hundreds_of_targets_are_paged():
    groups = [_group(code) for code in range(1, 251)]
    first = render_page(groups)
    assert _rows(first) == [str(code) for code in range(1, PAGE_SIZE + 1)]
    assert "page 1 of 3" in first and "href='?page=2'" in first and "previous" not in first
    last = render_page(groups, page=3, dag_id="edw_d_0001")
    assert _rows(last) == [str(code) for code in range(201, 251)]
    assert "href='?page=2&dag_id=edw_d_0001'" in last and "next" not in last
    assert _rows(render_page(groups, page=99)) == _rows(last)  # past the end: the last page
    assert "page " not in render_page(groups[:10])  # one page: no pager


def test_a_target_with_many_waiters_folds_them():
    page = render_page([_group(7, waiters=40)])
    row = page.split("<tbody>")[1].split("</tbody>")[0]
    assert row.count("edw_d_") == 40  # every one is there, behind the fold
    assert f"<summary>+{40 - WAITERS_SHOWN} more</summary>" in row
    before_fold = row.split("<details>")[0]
    assert before_fold.count("edw_d_") == WAITERS_SHOWN


def test_the_layout_fits_the_window():
    """Eight fixed-width columns of the window's width that wrap long names, where the old table grew past
    1,400 px with ten columns and unbreakable paths."""
    page = render_page([_group(1, waiters=5)])
    assert "table-layout: fixed" in page and "overflow-wrap: anywhere" in page and "width: 100%" in page
    waiting = page.split("<h3>")[0]
    widths = [int(w) for w in re.findall(r'<col style="width:(\d+)%">', waiting)]
    assert len(widths) == 8 == waiting.split("<thead>")[1].split("</thead>")[0].count("<th>") and sum(widths) == 100
