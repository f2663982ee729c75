"""The "Smart sensors" page inside the Airflow 3 UI.

A FastAPI sub-application mounted by the api-server at ``/airflow-ha`` (``GET /airflow-ha/sensors``
renders the table of waiting sensors and below it those that finished within the retention period;
``GET /airflow-ha/sensors.json`` returns the waiting ones as JSON, ``?all=true`` both as
``{"waiting": [...], "finished": [...]}``), and an external view that puts it in the UI's Browse menu,
embedded in the page. Both require a logged-in user (Airflow's JWT cookie
or bearer token). The page refreshes itself every 10 seconds.
"""

from __future__ import annotations

import html
from typing import Annotated

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Query
from fastapi.responses import HTMLResponse

from airflow_ha.sensors.listing import finished_sensors, status_store_or_none, waiting_sensors
from airflow_ha.settings import history_days

URL_PREFIX = "/airflow-ha"


FINISHED_ON_PAGE = 200  # newest finished sensors shown under the waiting ones (the JSON has up to 1,000)


def _groups(session, dag_id: str | None, store):
    groups = waiting_sensors(session, store)
    if dag_id:
        groups = [g for g in groups if any(w.dag_id == dag_id for w in g.waiters)]
    return groups


def _age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _finished_rows(finished) -> str:
    import datetime as dt

    e = html.escape
    rows = []
    for f in finished:
        at = dt.datetime.fromtimestamp(f.finished_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        task = _task(f.dag_id, f.task_id, f.run_id, f.map_index)
        waited = "-" if f.waited_seconds is None else _age(f.waited_seconds)
        rows.append(
            f"<tr><td><small>{at}</small></td><td class='{e(f.outcome)}'>{e(f.outcome)}</td><td>{e(task)}</td>"
            f"<td>{e(f.description)}<br><small>{e(f.detail)}</small></td><td>{waited}</td><td>{f.pokes}</td>"
            f"<td><small>{e(f.shard)}<br>{e(f.replica)}</small></td></tr>"
        )
    return "".join(rows) or "<tr><td colspan='7'>None in the retention period.</td></tr>"


WAITERS_SHOWN = 3  # waiting tasks listed in a row; the rest fold into "+N more"
PAGE_SIZE = 100  # targets per page


def _task(dag_id: str, task_id: str, run_id: str, map_index: int) -> str:
    return f"{dag_id} · {task_id} · {run_id}" + (f" [{map_index}]" if map_index >= 0 else "")


def _waiters(waiters) -> str:
    e = html.escape
    names = [e(_task(w.dag_id, w.task_id, w.run_id, w.map_index)) for w in waiters]
    shown = "<br>".join(names[:WAITERS_SHOWN])
    if len(names) > WAITERS_SHOWN:
        rest = "<br>".join(names[WAITERS_SHOWN:])
        shown += f"<details><summary>+{len(names) - WAITERS_SHOWN} more</summary>{rest}</details>"
    return shown


def _pager(page: int, pages: int, dag_id: str | None) -> str:
    if pages <= 1:
        return ""
    extra = f"&dag_id={html.escape(dag_id)}" if dag_id else ""
    links = [f"page {page} of {pages}"]
    if page > 1:
        links.insert(0, f"<a href='?page={page - 1}{extra}'>&larr; previous</a>")
    if page < pages:
        links.append(f"<a href='?page={page + 1}{extra}'>next &rarr;</a>")
    return f"<p class='pager'>{' · '.join(links)}</p>"


def render_page(groups, finished=(), page: int = 1, dag_id: str | None = None) -> str:
    """The page: waiting targets (``PAGE_SIZE`` per page, oldest wait first), then the finished sensors.

    A fixed table layout with wrapping cells keeps it within the window (1,400 px and narrower); a
    target's waiting tasks fold after ``WAITERS_SHOWN``.
    """
    e = html.escape
    pages = max(1, -(-len(groups) // PAGE_SIZE))
    page = min(max(1, page), pages)
    rows = []
    for g in groups[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]:
        rows.append(
            "<tr>"
            f"<td><code>{g.hashcode}</code><br><small>shard {g.shard} (v{g.virtual_shard}) · {e(g.kind)}</small></td>"
            f"<td>{e(g.description)}</td><td>{len(g.waiters)}</td><td>{_waiters(g.waiters)}</td>"
            f"<td>{_age(g.age_seconds)}</td><td>{g.pokes}</td>"
            f"<td class='{e(g.last_result)}'>{e(g.last_result)}<br><small>{e(g.last_detail)}</small></td>"
            f"<td><small>{e(g.last_poke_at or '-')}<br>{e(g.poked_by or '')}</small></td>"
            "</tr>"
        )
    total = sum(len(g.waiters) for g in groups)
    body = "".join(rows) or "<tr><td colspan='8'>No smart sensor is waiting.</td></tr>"
    scope = f" of DAG {e(dag_id)}" if dag_id else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>Smart sensors</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; width: 100%; table-layout: fixed; font-size: 0.85rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.3rem 0.45rem; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }}
th {{ background: #f4f4f5; }} .ready {{ color: #15803d; }} .waiting {{ color: #a16207; }} .unknown {{ color: #71717a; }}
.retrying, .slow, .timeout {{ color: #c2410c; }} .failed {{ color: #b91c1c; font-weight: 600; }}
.success {{ color: #15803d; }} summary {{ cursor: pointer; color: #2563eb; }}
</style></head><body>
<h2>Smart sensors waiting{scope}: {total} task(s) on {len(groups)} target(s)</h2>
<p>One row per hashcode: every task waiting on the same target shares one poke per interval.
Filter by DAG with <code>?dag_id=</code>.</p>
{_pager(page, pages, dag_id)}
<table><colgroup><col style="width:13%"><col style="width:20%"><col style="width:5%"><col style="width:22%">
<col style="width:6%"><col style="width:5%"><col style="width:17%"><col style="width:12%"></colgroup>
<thead><tr><th>hashcode, shard, kind</th><th>poke context</th><th>waiters</th><th>dag · task · run</th>
<th>age</th><th>pokes</th><th>last poke result</th><th>last poke</th></tr></thead>
<tbody>{body}</tbody></table>
{_pager(page, pages, dag_id)}
<h3>Finished in the last {history_days()} day(s): newest {len(finished)}</h3>
<table><colgroup><col style="width:11%"><col style="width:7%"><col style="width:24%"><col style="width:34%">
<col style="width:7%"><col style="width:5%"><col style="width:12%"></colgroup>
<thead><tr><th>finished (UTC)</th><th>outcome</th><th>dag · task · run</th><th>poke context, last poke</th>
<th>waited</th><th>pokes</th><th>released by</th></tr></thead>
<tbody>{_finished_rows(finished)}</tbody></table></body></html>"""


def create_app() -> FastAPI:
    # FastAPI resolves the endpoints' annotations from this module's globals, so SessionDep is imported
    # at module level (with postponed annotations a local import would turn `session` into a query field).
    app = FastAPI(title="airflow-ha smart sensors", dependencies=[Depends(requires_authenticated())])

    @app.get("/sensors.json")
    def sensors_json(
        session: SessionDep,
        dag_id: Annotated[str | None, Query()] = None,
        include_finished: Annotated[bool, Query(alias="all")] = False,
    ) -> list[dict] | dict[str, list[dict]]:
        store = status_store_or_none()
        waiting = [g.as_dict() for g in _groups(session, dag_id, store)]
        if not include_finished:
            return waiting
        return {"waiting": waiting, "finished": [f.as_dict() for f in finished_sensors(store, dag_id)]}

    @app.get("/sensors", response_class=HTMLResponse)
    def sensors_page(
        session: SessionDep, dag_id: Annotated[str | None, Query()] = None, page: Annotated[int, Query(ge=1)] = 1
    ) -> str:
        store = status_store_or_none()
        finished = finished_sensors(store, dag_id, FINISHED_ON_PAGE)
        return render_page(_groups(session, dag_id, store), finished, page=page, dag_id=dag_id)

    return app


class SmartSensorsPlugin(AirflowPlugin):
    name = "airflow_ha_smart_sensors"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "airflow-ha smart sensors"}]
    external_views = [
        {
            "name": "Smart sensors",
            "href": f"{URL_PREFIX}/sensors",
            "url_route": "smart-sensors",
            "destination": "nav",
            "category": "browse",
        }
    ]
