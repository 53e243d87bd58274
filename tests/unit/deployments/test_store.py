"""The deployment store on SQLite and PostgreSQL: state, revisions, history, marks, stats."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from aimass.contract.manifest import Manifest
from aimass.contract.signature import Datatype, Signature, TensorSpec
from aimass.db.database import open_engine
from aimass.deployments.records import StatsRow
from aimass.deployments.spec import DeploymentSpec, Target
from aimass.deployments.store import DeploymentStore
from aimass.errors import AimassError, ErrorCode
from aimass.registry.store import MetadataStore


def _spec(*pairs: tuple[str, int]) -> DeploymentSpec:
    return DeploymentSpec(targets=tuple(Target(ref=r, weight=w) for r, w in pairs)).checked()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """One migrated database per backend for the module; each test uses its own names."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_database")()
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'r.db'}"
    opened = open_engine(url)
    yield opened
    opened.dispose()


@pytest.fixture
def store(engine: Engine) -> DeploymentStore:
    """A store over the module's database, with 5-second stats buckets."""
    return DeploymentStore(engine, bucket_s=5)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A deployment name no other test of the module uses."""
    test: str = request.node.name
    return test.split("[")[0].replace("_", "-")[5:40]


def test_create_get_list_and_name_taken(store: DeploymentStore, name: str) -> None:
    created = store.create(name, _spec(("iris:1", 1000)), by="alice", reason="first")
    assert created.revision == 1
    assert created.created_by == created.updated_by == "alice"
    assert store.get(name).spec == created.spec
    assert name in [d.name for d in store.list()]
    with pytest.raises(AimassError) as taken:
        store.create(name, _spec(("iris:2", 1000)), by="bob")
    assert taken.value.code is ErrorCode.ALREADY_EXISTS
    assert store.get(name).spec.targets[0].ref == "iris:1"
    with pytest.raises(AimassError) as missing:
        store.get(name + "-nope")
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_change_bumps_revision_and_records_before_and_after(
    store: DeploymentStore, name: str
) -> None:
    first = _spec(("iris:1", 1000))
    second = _spec(("iris:1", 900), ("iris:2", 100))
    store.create(name, first, by="alice")
    changed = store.change(name, second, by="bob", kind="set", reason="try 2")
    assert changed.revision == 2
    assert changed.updated_by == "bob"
    assert changed.created_by == "alice"
    events = store.events(name)
    assert [(e.kind, e.by) for e in events] == [("create", "alice"), ("set", "bob")]
    assert events[0].before is None and events[0].after == first
    assert events[1].before == first and events[1].after == second
    assert events[1].reason == "try 2"
    assert events[1].at.tzinfo is not None
    assert [e.kind for e in store.events(name, limit=1)] == ["set"]


def test_expect_revision_refuses_a_stale_change(store: DeploymentStore, name: str) -> None:
    store.create(name, _spec(("iris:1", 1000)), by="a")
    store.change(name, _spec(("iris:2", 1000)), by="a", kind="set", expect_revision=1)
    with pytest.raises(AimassError) as stale:
        store.change(name, _spec(("iris:3", 1000)), by="b", kind="guard", expect_revision=1)
    assert stale.value.code is ErrorCode.CONFLICT
    kept = store.get(name)
    assert (kept.revision, kept.spec.targets[0].ref) == (2, "iris:2")
    assert [e.kind for e in store.events(name)] == ["create", "set"]


def test_concurrent_changes_at_one_revision_let_exactly_one_win(
    store: DeploymentStore, name: str
) -> None:
    store.create(name, _spec(("iris:1", 1000)), by="a")
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def change(version: int) -> None:
        start.wait()
        try:
            store.change(
                name, _spec((f"iris:{version}", 1000)), by="t", kind="guard", expect_revision=1
            )
            outcomes.append("won")
        except AimassError as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=change, args=(v,)) for v in range(2, 6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict"] * 3 + ["won"]
    assert store.get(name).revision == 2
    assert len(store.events(name)) == 2


def test_delete_keeps_the_history(store: DeploymentStore, name: str) -> None:
    spec = _spec(("iris:1", 1000))
    store.create(name, spec, by="a")
    store.delete(name, by="b")
    with pytest.raises(AimassError) as gone:
        store.get(name)
    assert gone.value.code is ErrorCode.NOT_FOUND
    events = store.events(name)
    assert [(e.kind, e.before, e.after) for e in events][-1] == ("delete", spec, None)
    with pytest.raises(AimassError) as again:
        store.delete(name, by="b")
    assert again.value.code is ErrorCode.NOT_FOUND
    with pytest.raises(AimassError) as change:
        store.change(name, spec, by="b", kind="set")
    assert change.value.code is ErrorCode.NOT_FOUND


def test_mark_grows_with_changes_and_alias_moves(
    store: DeploymentStore, engine: Engine, name: str
) -> None:
    metadata = MetadataStore(engine)
    before = store.mark()
    store.create(name, _spec(("iris:1", 1000)), by="a")
    changed = store.mark()
    assert changed[0] > before[0] and changed[1] == before[1]
    metadata.ensure_model(name, task="classification", description="", created_by="a")
    manifest = Manifest(
        runtime="sklearn",
        framework="sklearn",
        framework_version="1",
        format="skops",
        signature=Signature(inputs=(TensorSpec(name="x", datatype=Datatype.FP32, shape=(-1,)),)),
    )
    metadata.add_version(name, manifest, description="", metadata={}, tags={}, created_by="a")
    metadata.set_alias(name, "production", 1, by="a")
    moved = store.mark()
    assert moved[0] == changed[0] and moved[1] > changed[1]


def _row(name: str, bucket: int, requests: int, *, process: str = "p1") -> StatsRow:
    return StatsRow(
        deployment=name,
        ref="iris:1",
        role="target",
        process=process,
        bucket=bucket,
        requests=requests,
        errors=1,
        latency=[requests, 0, 2],
        comparison={"agree": requests},
    )


def test_stats_upsert_replaces_a_process_bucket(store: DeploymentStore, name: str) -> None:
    store.write_stats([_row(name, 1000, 3), _row(name, 1000, 4, process="p2")])
    store.write_stats([_row(name, 1000, 7)])
    store.write_stats([])
    rows = store.read_stats(name, 1000)
    assert sorted((r.process, r.requests, r.latency[0]) for r in rows) == [
        ("p1", 7, 7),
        ("p2", 4, 4),
    ]
    assert rows[0].comparison == {"agree": rows[0].requests}


def test_read_stats_starts_at_the_bucket_holding_since(store: DeploymentStore, name: str) -> None:
    store.write_stats([_row(name, b, 1) for b in (990, 995, 1000, 1005)])
    assert [r.bucket for r in store.read_stats(name, 997.5)] == [995, 1000, 1005]
    assert [r.bucket for r in store.read_stats(name, 1000)] == [1000, 1005]
    assert store.read_stats(name + "-other", 0) == []


def test_prune_stats_drops_old_buckets(store: DeploymentStore, name: str) -> None:
    store.write_stats([_row(name, b, 1) for b in (10, 15, 20)])
    assert store.prune_stats(20) >= 2
    assert [r.bucket for r in store.read_stats(name, 0)] == [20]


def test_store_answers_on_a_fresh_file(
    tmp_path: Path, postgres_database: Callable[[], str]
) -> None:
    # A database opened for the first time is migrated to the deployments' schema.
    for url in (f"sqlite:///{tmp_path / 'fresh.db'}", postgres_database()):
        engine = open_engine(url)
        assert DeploymentStore(engine).list() == []
        assert DeploymentStore(engine).mark() == (0, 0)
        engine.dispose()
