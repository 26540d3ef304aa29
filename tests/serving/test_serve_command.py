"""``shopfusion serve`` in a real process, and the demo's hand-over to it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from typer.testing import CliRunner

from shopfusion.cli import app
from shopfusion.serving.security import hash_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(sample_artifact: Path, tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SHOPFUSION_PSEUDONYM_SECRET": "s"}
    env["SHOPFUSION_INGEST_KEY_HASHES"] = hash_key("ingest")
    command = [sys.executable, "-m", "shopfusion.cli", "serve", "--artifact", str(sample_artifact)]
    command += ["--port", str(port), "--store", str(tmp_path / "events.db"), *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return process, port


def _wait_ready(process: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "server did not become ready"
        time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    return output


def test_serve_starts_prints_the_url_and_serves_the_storefront(sample_artifact: Path, tmp_path: Path) -> None:
    process, port = _start(sample_artifact, tmp_path)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.strip() == f"storefront: http://127.0.0.1:{port}/"
        _wait_ready(process, port)
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and 'id="search-form"' in page.text
        feed = httpx.get(f"http://127.0.0.1:{port}/v1/recommend", params={"user_id": "u0001", "k": 3})
        assert len(feed.json()["items"]) == 3
    finally:
        output = _stop(process)
    assert "u0001" not in output  # user ids stay out of the server's log


def test_serve_with_two_workers_shares_events_between_them(sample_artifact: Path, tmp_path: Path) -> None:
    process, port = _start(sample_artifact, tmp_path, "--workers", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, port)
        # New connections are spread over both workers; each caches its own copy of the feed.
        feeds = {tuple(_feed(url)) for _ in range(20)}
        assert len(feeds) == 1
        before = next(iter(feeds))
        event = {"events": [{"user_id": "u0002", "item_id": before[0], "type": "purchase"}]}
        assert httpx.post(f"{url}/v1/events", json=event, headers={"X-API-Key": "ingest"}).status_code == 202
        # EVENT_SYNC_S is 0.25: the other worker reads the event within that, and then no worker
        # serves the old feed. Polled up to a deadline rather than after a fixed second: on a
        # machine busy with the rest of the suite that second was once not enough.
        deadline = time.monotonic() + 15.0
        while True:
            time.sleep(0.5)
            after = {tuple(_feed(url)) for _ in range(20)}
            if (len(after) == 1 and before[0] not in next(iter(after))) or time.monotonic() > deadline:
                break
        assert len(after) == 1 and before[0] not in next(iter(after))  # no worker serves the old feed
    finally:
        output = _stop(process)
    assert output.count("serving artifact") == 2  # each worker loaded the artifact in its lifespan


def _feed(url: str) -> list[str]:
    # A fresh connection per request: uvicorn's workers share the listening socket. /readyz
    # answered by one worker says nothing of the other, which may still be loading (503 until
    # it is ready): such an answer is retried, any other is a failure.
    deadline = time.monotonic() + 60
    while True:
        response = httpx.get(f"{url}/v1/recommend", params={"user_id": "u0002", "k": 5})
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 200, response.text
    return [item["item_id"] for item in response.json()["items"]]


def test_serve_refuses_a_folder_that_is_no_artifact(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--artifact", str(tmp_path)])
    assert result.exit_code == 1 and "shopfusion train" in result.output


def test_hash_key_prints_the_digest_to_configure() -> None:
    result = CliRunner().invoke(app, ["serve", "--hash-key", "abc"])
    assert result.exit_code == 0 and result.output.strip() == hash_key("abc")
