"""``aimass serve --port 0`` as a real process: prints its address, serves, stops on SIGTERM."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from aimass.testing.server import serve_in_process


def test_serve_prints_address_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "AIMASS_HOME": str(tmp_path / "home")}
    with serve_in_process(env=env) as served:
        assert served.url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{served.url}/v2/health/ready").json() == {"ready": True}
        code, stderr = served.stop()
    assert code == 0, stderr
    assert "Traceback" not in stderr
