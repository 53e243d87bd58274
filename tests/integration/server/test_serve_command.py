"""``aimass serve --port 0`` as a real process: prints its address, serves, stops on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

_SCRIPT = "from aimass.cli.app import main; main()"


def test_serve_prints_address_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "AIMASS_HOME": str(tmp_path / "home")}
    process = subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # blocks until the line is flushed (or the process dies)
        assert line.startswith("aimass serving on http://127.0.0.1:"), (
            line + process.communicate(timeout=30)[1]
        )
        url = line.split()[-1]
        ready = False
        with httpx.Client(base_url=url, timeout=5) as client:
            while not ready:
                assert process.poll() is None, process.communicate()[1]
                try:
                    response = client.get("/v2/health/ready")
                except httpx.TransportError:
                    continue
                ready = response.status_code == 200 and response.json() == {"ready": True}
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
