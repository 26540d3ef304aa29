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


def test_serve_starts_prints_the_url_and_serves_the_storefront(sample_artifact: Path, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "SHOPFUSION_PSEUDONYM_SECRET": "s"}
    command = [sys.executable, "-m", "shopfusion.cli", "serve", "--artifact", str(sample_artifact)]
    command += ["--port", str(port), "--store", str(tmp_path / "events.db")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.strip() == f"storefront: http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "server did not become ready"
            time.sleep(0.2)
        page = httpx.get(f"http://127.0.0.1:{port}/")
        assert page.status_code == 200 and 'id="search-form"' in page.text
        feed = httpx.get(f"http://127.0.0.1:{port}/v1/recommend", params={"user_id": "u0001", "k": 3})
        assert len(feed.json()["items"]) == 3
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "u0001" not in output  # user ids stay out of the server's log


def test_serve_refuses_a_folder_that_is_no_artifact(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--artifact", str(tmp_path)])
    assert result.exit_code == 1 and "shopfusion train" in result.output


def test_hash_key_prints_the_digest_to_configure() -> None:
    result = CliRunner().invoke(app, ["serve", "--hash-key", "abc"])
    assert result.exit_code == 0 and result.output.strip() == hash_key("abc")
