"""The failover harness's REST client against a real HTTP server on 127.0.0.1 that behaves like an
api-server whose pooled database connection died with its node: the first answers are late, or 500."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.harness.failover.api import AirflowAPI, AirflowAPIError


class Server:
    """Answers /auth/token; GET /api/v2/dags/<id>/dagRuns/<run>: the first `late` answers after `delay` s,
    then `errors` answers HTTP 500 "Database error", then 200."""

    def __init__(self, late: int = 0, errors: int = 0, delay: float = 1.0) -> None:
        self.late, self.errors, self.delay, self.calls = late, errors, delay, 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._send(201, {"access_token": "t"})

            def do_GET(self) -> None:
                server.calls += 1
                if server.calls <= server.late:
                    time.sleep(server.delay)
                elif server.calls <= server.late + server.errors:
                    return self._send(500, {"detail": "Database error"})
                self._send(200, {"state": "success"})

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up on a late answer
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    started: list[Server] = []

    def make(**kwargs) -> Server:
        started.append(Server(**kwargs))
        return started[-1]

    yield make
    for s in started:
        s.close()


def test_late_answers_are_asked_again_within_the_window(server_factory):
    server = server_factory(late=2, errors=1, delay=0.6)
    api = AirflowAPI(server.url, timeout=0.3, unavailable_for=30)
    assert api.run_state("d", "r") == "success"
    assert server.calls == 4


def test_late_answers_past_the_window_raise(server_factory):
    import requests

    server = server_factory(late=100, delay=0.5)
    api = AirflowAPI(server.url, timeout=0.2, unavailable_for=1.0)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        api.run_state("d", "r")
    assert time.monotonic() - started < 5


def test_database_errors_past_the_window_raise_with_the_answer(server_factory):
    server = server_factory(errors=100)
    api = AirflowAPI(server.url, timeout=2, unavailable_for=0.0)
    with pytest.raises(AirflowAPIError, match="Database error"):
        api.run_state("d", "r")


def test_a_way_in_that_stopped_answering_is_replaced_and_the_request_asked_again(server_factory):
    """A port-forward that accepts connections but relays nothing looks like a late api-server: after a late
    answer the client drops its way in (``reconnect``) and asks again through the new one."""
    hung = server_factory(late=100, delay=2)
    healthy = server_factory()
    ways = [hung.url]
    api = AirflowAPI("", base_url_for=lambda: ways[-1], reconnect=lambda: ways.append(healthy.url),
                     timeout=0.3, unavailable_for=30)  # fmt: skip
    assert api.run_state("d", "r") == "success"
    assert (hung.calls, healthy.calls, len(ways)) == (1, 1, 2)
