"""The "Smart sensors" page inside the Airflow 3 UI.

A FastAPI sub-application mounted by the api-server at ``/airflow-ha`` (``GET /airflow-ha/sensors``
renders the table, ``GET /airflow-ha/sensors.json`` returns it as JSON), and an external view that puts
it in the UI's Browse menu, embedded in the page. Both require a logged-in user (Airflow's JWT cookie
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

URL_PREFIX = "/airflow-ha"


def _groups(session, dag_id: str | None):
    from airflow_ha.sensors.listing import status_store_or_none, waiting_sensors

    groups = waiting_sensors(session, status_store_or_none())
    if dag_id:
        groups = [g for g in groups if any(w.dag_id == dag_id for w in g.waiters)]
    return groups


def _age(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def render_page(groups) -> str:
    e = html.escape
    rows = []
    for g in groups:
        waiters = "<br>".join(
            e(f"{w.dag_id} · {w.task_id} · {w.run_id}" + (f" [{w.map_index}]" if w.map_index >= 0 else ""))
            for w in g.waiters
        )
        rows.append(
            "<tr>"
            f"<td><code>{g.hashcode}</code></td><td>{g.shard} <small>(v{g.virtual_shard})</small></td>"
            f"<td>{e(g.kind)}</td><td>{e(g.description)}</td><td>{len(g.waiters)}</td><td>{waiters}</td>"
            f"<td>{_age(g.age_seconds)}</td><td>{g.pokes}</td>"
            f"<td class='{e(g.last_result)}'>{e(g.last_result)}<br><small>{e(g.last_detail)}</small></td>"
            f"<td><small>{e(g.last_poke_at or '-')}<br>{e(g.poked_by or '')}</small></td>"
            "</tr>"
        )
    total = sum(len(g.waiters) for g in groups)
    body = "".join(rows) or "<tr><td colspan='10'>No smart sensor is waiting.</td></tr>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>Smart sensors</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1rem; }}
table {{ border-collapse: collapse; width: 100%; font-size: 0.9rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f5; }} .ready {{ color: #15803d; }} .waiting {{ color: #a16207; }} .unknown {{ color: #71717a; }}
.retrying, .slow {{ color: #c2410c; }} .failed {{ color: #b91c1c; font-weight: 600; }}
</style></head><body>
<h2>Smart sensors waiting: {total} task(s) on {len(groups)} target(s)</h2>
<p>One row per hashcode: every task waiting on the same target shares one poke per interval.</p>
<table><thead><tr><th>hashcode</th><th>shard</th><th>kind</th><th>poke context</th><th>waiters</th>
<th>dag · task · run</th><th>age</th><th>pokes</th><th>last poke result</th><th>last poke</th></tr></thead>
<tbody>{body}</tbody></table></body></html>"""


def create_app() -> FastAPI:
    # FastAPI resolves the endpoints' annotations from this module's globals, so SessionDep is imported
    # at module level (with postponed annotations a local import would turn `session` into a query field).
    app = FastAPI(title="airflow-ha smart sensors", dependencies=[Depends(requires_authenticated())])

    @app.get("/sensors.json")
    def sensors_json(session: SessionDep, dag_id: Annotated[str | None, Query()] = None) -> list[dict]:
        return [g.as_dict() for g in _groups(session, dag_id)]

    @app.get("/sensors", response_class=HTMLResponse)
    def sensors_page(session: SessionDep, dag_id: Annotated[str | None, Query()] = None) -> str:
        return render_page(_groups(session, dag_id))

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
