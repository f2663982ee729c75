"""A small client for Airflow 3's REST API (``/api/v2``), as the failover scenarios and users use it.

Authentication is the simple auth manager's JWT: ``POST /auth/token`` with username and password.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests

from tests.harness.waiting import WaitTimeout, wait_until

TERMINAL_RUN_STATES = {"success", "failed"}


class AirflowAPIError(RuntimeError):
    pass


@dataclass
class AirflowAPI:
    base_url: str  # e.g. http://127.0.0.1:8080
    # When set, asked for the base URL before every request (a port-forward that may have to restart).
    base_url_for: Callable[[], str] | None = None
    # When set, called after a connection error before the request is tried again (drop a dead forward).
    reconnect: Callable[[], None] | None = None
    connect_retries: int = 5
    # Seconds an answer that says the metadata database is away (HTTP 5xx, "Database error": a primary
    # being elected, a proxy pod lost), or no answer in `timeout`, is asked again, as a client of a highly
    # available API would.
    unavailable_for: float = 90.0
    username: str = "admin"
    password: str = "admin"
    timeout: float = 10.0
    _session: requests.Session = field(default_factory=requests.Session, repr=False)
    _token: str | None = field(default=None, repr=False)

    # -- plumbing ----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return self.base_url_for() if self.base_url_for else self.base_url

    def _login(self) -> None:
        response = self._session.post(
            f"{self.url}/auth/token",
            json={"username": self.username, "password": self.password},
            timeout=self.timeout,
        )
        if response.status_code not in (200, 201):
            raise AirflowAPIError(f"login as {self.username!r} failed: HTTP {response.status_code} {response.text}")
        self._token = response.json()["access_token"]

    def request(self, method: str, path: str, headers: dict | None = None, **kwargs) -> requests.Response:
        if self._token is None:
            self._login()
        deadline = time.monotonic() + self.unavailable_for
        relogged = retried = False
        while True:
            try:
                response = self._send(method, path, headers, **kwargs)
            except requests.ReadTimeout:
                # no answer in `timeout`: the api-server is waiting on a database connection that died with
                # its node (it fails after database.timeouts.readSeconds); a client of an HA API asks again.
                # The way there may be what hangs: a kubectl port-forward that still accepts connections but
                # relays nothing (stop 31's CI: 90 s of late answers from a release under load). Asking again
                # through a new one costs a second when it was the api-server.
                if time.monotonic() >= deadline:
                    raise
                if self.reconnect is not None:
                    self.reconnect()
                retried = True
                continue
            if response.status_code == 401 and not relogged:
                relogged = True
                self._login()  # token expired or api-server restarted with the same secret
                continue
            if _database_away(response) and time.monotonic() < deadline:
                retried = True
                time.sleep(2)
                continue
            break
        if response.status_code == 409 and retried and method == "POST":
            return response  # an earlier try went through before its answer was lost: created once
        if response.status_code >= 400:
            raise AirflowAPIError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response

    def _send(self, method: str, path: str, headers: dict | None, **kwargs) -> requests.Response:
        """One request, tried again after a connection error (the api-server pod or its forward was replaced)."""
        for attempt in range(self.connect_retries):
            try:
                return self._session.request(
                    method,
                    f"{self.url}{path}",
                    headers={**(headers or {}), "Authorization": f"Bearer {self._token}"},
                    timeout=self.timeout,
                    **kwargs,
                )
            except requests.ConnectionError:
                if attempt == self.connect_retries - 1:
                    raise
                if self.reconnect is not None:
                    self.reconnect()
                time.sleep(2)
        raise AssertionError("unreachable")

    # -- health ------------------------------------------------------------------------------------
    def health(self) -> dict:
        response = self._session.get(f"{self.url}/api/v2/monitor/health", timeout=self.timeout)
        response.raise_for_status()
        return response.json()

    def is_up(self) -> bool:
        try:
            return self.health()["metadatabase"]["status"] == "healthy"
        except (requests.RequestException, KeyError, ValueError):
            return False

    # -- DAGs and runs -----------------------------------------------------------------------------
    def dag_ids(self) -> set[str]:
        dags = self.request("GET", "/api/v2/dags", params={"limit": 1000}).json()["dags"]
        return {d["dag_id"] for d in dags}

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, run_id: str, conf: dict | None = None) -> str:
        body = {"dag_run_id": run_id, "logical_date": None, "conf": conf or {}}
        self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        return run_id

    def set_variable(self, key: str, value: str) -> None:
        self.request("POST", "/api/v2/variables", json={"key": key, "value": value})

    def variable(self, key: str) -> str:
        """The Variable's value as the API returns it: decrypted, whatever the release's Fernet key."""
        return self.request("GET", f"/api/v2/variables/{key}").json()["value"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
        return self.request("GET", path, params={"limit": 1000}).json()["task_instances"]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        response = self.request("GET", path, params={"full_content": "true"}, headers={"Accept": "application/json"})
        # Airflow 3 returns structured log records; one text line per record, every field kept.
        lines = []
        for record in response.json().get("content", []):
            if isinstance(record, dict):
                head = " ".join(str(record.get(k, "")) for k in ("timestamp", "level", "event"))
                extra = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "timestamp", "level"))
                lines.append(f"{head} {extra}")
            else:
                lines.append(str(record))
        return "\n".join(lines)

    def wait_for_runs(self, runs: list[tuple[str, str]], timeout: float) -> dict[tuple[str, str], str]:
        """Poll until every (dag_id, run_id) is terminal or ``timeout`` passes; returns the last states."""
        states: dict[tuple[str, str], str] = {}

        def all_ended() -> bool:
            for key in runs:
                if states.get(key) not in TERMINAL_RUN_STATES:
                    try:
                        states[key] = self.run_state(*key)
                    except (requests.RequestException, AirflowAPIError):
                        states[key] = "unreachable"  # api-server restarting: ask again
            return all(s in TERMINAL_RUN_STATES for s in states.values())

        with contextlib.suppress(WaitTimeout):  # the caller judges the states it gets
            wait_until(all_ended, timeout, f"{len(runs)} DAG runs to end", interval=2)
        return states


def _database_away(response: requests.Response) -> bool:
    """The api-server is up but its database is not (failing over): worth asking again shortly."""
    if response.status_code in (502, 503, 504):
        return True
    return response.status_code == 500 and "Database error" in response.text
