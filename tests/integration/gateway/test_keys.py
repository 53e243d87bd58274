"""Keys over real HTTP: the admin API, revocation, expiry, model scopes and the audit log."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from aimass.gateway.keys import ApiKey
from aimass.roles import Role
from tests.integration.gateway.gatewaytest import IRIS_ROW, FakeClock, ServeFactory


def test_admin_api_creates_lists_and_revokes_keys(serve: ServeFactory) -> None:
    with serve() as served:
        admin = served.key(Role.ADMIN)
        with served.client(admin) as client:
            created = client.post(
                "/admin/keys",
                json={"name": "ci", "role": "invoker", "models": ["iris"], "quota": "100/day"},
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            key_id = created.json()["key"]["id"]
            listed = client.get("/admin/keys").json()
            assert {k["id"] for k in listed} >= {key_id}
            assert secret not in client.get("/admin/keys").text
            assert client.get(f"/admin/keys/{key_id}").json()["quota"] == "100/day"
            with served.client(secret) as invoker:
                assert invoker.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
                revoked = client.delete(f"/admin/keys/{key_id}")
                assert revoked.json()["status"] == "revoked"
                # The admin API's own server drops the key at once.
                assert invoker.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 401
            assert client.delete("/admin/keys/key_nope").status_code == 404
            bad = client.post("/admin/keys", json={"name": "x", "role": "emperor"})
            assert bad.status_code == 400 and "role" in bad.json()["error"]
            bad = client.post("/admin/keys", json={"name": "x", "role": "admin", "quota": "5/y"})
            assert bad.status_code == 400 and "quota" in bad.json()["error"]


def test_the_key_is_stored_only_as_a_hash(serve: ServeFactory) -> None:
    from sqlalchemy import text

    with serve() as served:
        secret = served.key(Role.INVOKER)
        with served.keys.engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM api_keys")).all()
        assert rows and all(secret not in str(row) for row in rows)


def test_a_key_revoked_elsewhere_stops_working_within_the_refresh(serve: ServeFactory) -> None:
    with serve(key_refresh_s=0.2) as served:
        secret = served.key(Role.INVOKER)
        key_id = served.keys.list()[0].id
        with served.client(secret) as client:
            assert client.get("/v2").status_code == 200
            served.keys.revoke(key_id)  # as `aimass keys revoke` in another process would
            deadline = time.monotonic() + 10
            while client.get("/v2").status_code == 200:
                assert time.monotonic() < deadline, "the revoked key kept working"


def test_unknown_keys_reread_the_table_at_most_once_per_interval(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    interval = 0.2
    with serve(key_refresh_s=60, key_recheck_s=interval, key_watch_s=60) as served:
        served.key(Role.INVOKER)  # keys are required from here on
        reads: list[float] = []
        snapshot = served.keys.snapshot

        def counted() -> tuple[dict[str, ApiKey], bool]:
            reads.append(time.monotonic())
            return snapshot()

        monkeypatch.setattr(served.keys, "snapshot", counted)

        def unknown(index: int) -> int:
            with served.client(f"aimass_unknown-{index}") as client:
                return client.get("/v2").status_code

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(unknown, range(64)))
        elapsed = time.monotonic() - started
        assert statuses == [401] * 64
        # One read per interval at most, plus the one a request that came in during it waits for.
        assert 1 <= len(reads) <= elapsed / interval + 2, (len(reads), elapsed)
        # A key made elsewhere (no invalidate) is found by the re-read its first request triggers.
        made = served.keys.create(name="new", role=Role.INVOKER, created_by="another process")
        with served.client(made.secret) as client:
            assert client.get("/v2").status_code == 200


def test_an_expired_key_is_refused(serve: ServeFactory) -> None:
    clock = FakeClock(time.time())
    with serve(clock=clock) as served:
        expires = datetime.fromtimestamp(clock.now, UTC) + timedelta(hours=1)
        secret = served.key(Role.INVOKER, expires_at=expires)
        with served.client(secret) as client:
            assert client.get("/v2").status_code == 200
            clock.now += 2 * 3600
            response = client.get("/v2")
            assert response.status_code == 401
            assert response.json() == {"error": "invalid API key"}
        assert served.keys.list()[0].public(served.gateway.now())["status"] == "expired"


def test_model_scopes_hide_what_is_out_of_scope(serve: ServeFactory) -> None:
    with serve() as served:
        secret = served.key(Role.DEPLOYER, models=["iri*"])
        with served.client(secret) as client:
            assert client.get("/v2/models/iris").status_code == 200
            assert client.get("/v2/models/iris@production").status_code == 200
            assert client.post("/v2/models/iris/infer", json=IRIS_ROW).status_code == 200
            exists = client.get("/v2/models/other")
            missing = client.get("/v2/models/no-such-model")
            assert exists.status_code == missing.status_code == 403
            assert exists.json()["error"].replace("other", "X") == missing.json()["error"].replace(
                "no-such-model", "X"
            )
            assert client.post("/v2/repository/models/other/load").status_code == 403
            assert client.get("/v1/models/other").status_code == 403
            listed = client.get("/v1/models", headers={"accept-encoding": "gzip"}).json()
            assert [m["id"] for m in listed["data"]] == ["iris"]
            index = client.post("/v2/repository/index", json={}).json()
            assert {m["name"] for m in index} == {"iris"}
            embed = client.post("/v1/embeddings", json={"model": "other", "input": ["hi"]})
            assert embed.status_code == 403
            assert embed.json()["error"]["type"] == "permission_error"
            # in scope: the body reaches the endpoint intact (iris embeds nothing: its 400)
            embed = client.post("/v1/embeddings", json={"model": "iris", "input": ["hi"]})
            assert embed.status_code == 400 and "embedding" in embed.json()["error"]["message"]


def test_management_actions_are_audited(serve: ServeFactory) -> None:
    with serve() as served:
        deployer = served.key(Role.DEPLOYER)
        invoker = served.key(Role.INVOKER)
        admin = served.key(Role.ADMIN)
        ids = {k.role: k.id for k in served.keys.list()}
        with served.client(deployer) as client:
            assert client.post("/v2/repository/models/iris/load").status_code == 200
        with served.client(invoker) as client:
            assert client.post("/v2/repository/models/iris/unload").status_code == 403
        with served.client(admin) as client:
            created = client.post("/admin/keys", json={"name": "n", "role": "invoker"}).json()
            client.delete(f"/admin/keys/{created['key']['id']}")
            events = client.get("/admin/audit", params={"limit": 10}).json()
            assert client.get("/admin/audit", params={"limit": "lots"}).status_code == 400
        by_action = [(e["actor"], e["action"], e["target"], e["status"]) for e in events]
        assert by_action == [
            (ids[Role.ADMIN], "keys.revoke", created["key"]["id"], 200),
            (ids[Role.ADMIN], "keys.create", created["key"]["id"], 201),
            (ids[Role.INVOKER], "request", "POST /v2/repository/models/iris/unload", 403),
            (ids[Role.DEPLOYER], "request", "POST /v2/repository/models/iris/load", 200),
        ]
        assert all(e["source"] == "127.0.0.1" for e in events)
        assert all(datetime.fromisoformat(e["at"]) <= datetime.now(UTC) for e in events)
