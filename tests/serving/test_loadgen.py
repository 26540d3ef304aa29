"""The load generator against real servers on loopback: a scripted ASGI app with known answers
(statuses, chunked bodies, closed connections, slow and failing requests) and the service."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from serving_support import ServerThread, make_settings
from typer.testing import CliRunner

from shopfusion.cli import app as cli
from shopfusion.serving.app import create_app
from shopfusion.serving.loadgen import LoadResult, request_paths, run_load


async def scripted(scope, receive, send):  # type: ignore[no-untyped-def]
    """``/ok`` 200, ``/shed`` 503, ``/busy`` 503 with ``Retry-After: 1``, ``/boom`` 500,
    ``/chunked`` a body in three chunks, ``/close`` 200 then closes the connection, ``/slow`` 200
    after 100 ms, ``/slower`` after 1 s."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    path = scope["path"]
    status = {"/shed": 503, "/busy": 503, "/boom": 500}.get(path, 200)
    headers = [] if path == "/chunked" else [(b"content-length", b"2")]
    if path == "/busy":
        headers.append((b"retry-after", b"1"))
    if path == "/close":
        headers.append((b"connection", b"close"))
    if path in ("/slow", "/slower"):
        await asyncio.sleep(0.1 if path == "/slow" else 1.0)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if path == "/chunked":
        for part in (b"ab", b"cd", b""):
            await send({"type": "http.response.body", "body": part, "more_body": part != b""})
    else:
        await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(scope="module")
def server() -> object:
    with ServerThread(scripted) as running:
        yield running


def _load(url: str, paths: list[str], rate: float | None, duration_s: float, **kwargs: float) -> LoadResult:
    return asyncio.run(run_load(url, paths, rate, duration_s, "test", **kwargs))  # type: ignore[arg-type]


def test_open_loop_sends_on_schedule_and_splits_answered_from_shed(server: ServerThread) -> None:
    paths = ["/ok", "/shed", "/chunked", "/close", "/boom"]
    started = time.perf_counter()
    result = _load(server.url, paths, rate=50, duration_s=1.0, connections=4)
    wall = time.perf_counter() - started
    summary = result.summary()
    assert summary["sent"] == 50 and summary["mode"] == "open"
    # Every fifth request of each kind: the paths are cycled in order.
    assert summary["statuses"] == {"200": 30, "500": 10, "503": 10}
    assert summary["ok"] == 30 and summary["shed"] == 10 and summary["ok_rps"] == 30.0
    assert summary["server_errors_5xx_not_503"] == 10 and summary["transport_errors"] == 0
    assert summary["other_latency_ms"] is not None and len(result.latencies_other_s) == 10
    assert 0.95 <= wall < 2.0  # paced by the schedule, not as fast as the server answers
    assert summary["ok_latency_ms"]["p99"] < 100


def test_latency_counts_from_the_due_time_when_the_server_falls_behind(server: ServerThread) -> None:
    # 20 requests due over 0.4 s, each taking 100 ms on one connection: they queue in the client,
    # and the last one is answered ~2 s after it was due. A closed-loop client would report 100 ms.
    result = _load(server.url, ["/slow"], rate=50, duration_s=0.4, connections=1)
    summary = result.summary()
    assert summary["sent"] == 20 and summary["statuses"] == {"200": 20}
    assert summary["ok_latency_ms"]["p50"] > 500
    assert summary["ok_latency_ms"]["max"] > 1500
    assert summary["send_lag_ms"]["max"] > 1400  # and the report says the client waited
    assert 95 <= summary["ok_wire_latency_ms"]["p50"] < 250  # the server's share: one /slow


def test_closed_loop_keeps_each_connection_busy(server: ServerThread) -> None:
    result = _load(server.url, ["/slow"], rate=None, duration_s=0.5, connections=3)
    summary = result.summary()
    assert summary["mode"] == "closed" and summary["target_rps"] is None
    assert 9 <= summary["sent"] <= 18  # 3 connections x 5 requests of 100 ms (fewer on a busy box)
    assert 95 <= summary["ok_latency_ms"]["p50"] < 250


def test_a_closed_loop_waits_out_retry_after_and_an_open_loop_does_not(server: ServerThread) -> None:
    started = time.perf_counter()
    waited = _load(server.url, ["/busy"], rate=None, duration_s=0.6, connections=2)
    assert waited.statuses == {"503": 2}  # each connection's one refusal, then its wait to the end
    assert time.perf_counter() - started < 1.0  # the wait ends with the run, not a second later
    storm = _load(server.url, ["/shed"], rate=None, duration_s=0.3, connections=2)
    assert storm.statuses["503"] > 20  # no Retry-After: nothing to wait for
    scheduled = _load(server.url, ["/busy"], rate=40, duration_s=0.5, connections=2)
    assert scheduled.statuses == {"503": 20}  # arrivals on schedule whatever the answers


def test_warm_up_requests_are_not_counted(server: ServerThread) -> None:
    result = _load(server.url, ["/ok"], rate=40, duration_s=0.5, warmup_s=0.5, connections=2)
    assert result.sent == 20 and result.statuses == {"200": 20}


def test_timeouts_reopen_the_connection_and_stale_requests_are_not_sent(server: ServerThread) -> None:
    result = _load(server.url, ["/slower", "/ok"], rate=4, duration_s=1.0, connections=1, timeout_s=0.15)
    assert result.statuses == {"timeout": 2, "200": 2}  # the connection was reopened after each
    assert result.unsent == 0
    jammed = _load(server.url, ["/slow"], rate=200, duration_s=0.3, connections=1, timeout_s=0.15)
    assert jammed.unsent > 30 and jammed.statuses["unsent"] == jammed.unsent
    assert jammed.sent + jammed.unsent == 60  # every due request is accounted for


def test_bad_arguments_are_refused(server: ServerThread) -> None:
    with pytest.raises(ValueError, match="http://"):
        _load("https://example.com", ["/ok"], rate=1, duration_s=1)
    with pytest.raises(ValueError, match="rate"):
        _load(server.url, ["/ok"], rate=-1, duration_s=1)


def test_overload_of_the_service_gets_429_and_never_500(sample_artifact: Path, tmp_path: Path) -> None:
    users = (sample_artifact / "users.txt").read_text().split()
    items = (sample_artifact / "items.txt").read_text().split()
    paths = request_paths("recommend", users, items, ["tv"], 60, seed=1)
    assert paths == request_paths("recommend", users, items, ["tv"], 60, seed=1)  # reproducible mix
    # Burst 20, then 10/s: 60 requests at 40/s must see some 429s, and never a 500.
    app = create_app(make_settings(sample_artifact, tmp_path, rate_limit_per_s=10, rate_limit_burst=20))
    with ServerThread(app) as running:
        result = asyncio.run(run_load(running.url, paths, 40, 1.5, "recommend", connections=8))
    summary = result.summary()
    assert summary["sent"] == 60
    assert summary["statuses"].get("200", 0) >= 20 and summary["statuses"].get("429", 0) >= 10
    assert summary["server_errors_5xx_not_503"] == 0 and summary["transport_errors"] == 0
    assert summary["shed"] == summary["statuses"]["429"]
    assert 0 < summary["ok_latency_ms"]["p50"] <= summary["ok_latency_ms"]["p99"]


def test_paths_are_url_encoded() -> None:
    paths = request_paths("search", ["u 1"], ["i/1"], ["电视 4K"], 2)
    assert paths[0].startswith("/v1/search?q=%E7%94%B5%E8%A7%86%204K&user_id=u%201")
    assert request_paths("similar", ["u"], ["i/1"], ["q"], 1) == ["/v1/similar/i%2F1?k=10"]


def test_bench_load_command_appends_a_summary(sample_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    with ServerThread(create_app(make_settings(sample_artifact, tmp_path))) as running:
        for endpoint, rate in (("recommend", "20"), ("similar", "20"), ("recommend", "0")):
            args = ["bench", "load", "--url", running.url, "--artifact", str(sample_artifact), "--endpoint"]
            args += [endpoint, "--rate", rate, "--duration", "1", "--warmup", "0", "--connections", "2"]
            result = CliRunner().invoke(cli, [*args, "--json", str(out)])
            assert result.exit_code == 0, result.output
    runs = json.loads(out.read_text())
    assert [(r["endpoint"], r["mode"]) for r in runs] == [
        ("recommend", "open"),
        ("similar", "open"),
        ("recommend", "closed"),
    ]
    assert all(r["sent"] == 20 and r["statuses"] == {"200": 20} for r in runs[:2])
    # Closed loop runs into the default rate limit (200/s per client): shed, never failed.
    assert runs[2]["ok"] > 20 and runs[2]["ok"] + runs[2]["shed"] == runs[2]["sent"]
