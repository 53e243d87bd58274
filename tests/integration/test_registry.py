"""The model library on every metadata (SQLite, PostgreSQL) and artifact (local, S3) backend."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from aimass.contract.manifest import Lineage, LineageMethod
from aimass.contract.signature import Datatype, Signature, TensorSpec
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry
from aimass.settings import Settings
from tests.integration.processes import registry_env


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    x, y = load_iris(return_X_y=True)
    return x, y


@pytest.fixture(scope="module")
def clf(iris: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]) -> Any:
    x, y = iris
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)


def test_register_numbers_versions_and_infers_the_signature(
    registry: Registry, clf: Any, iris: Any
) -> None:
    x, _ = iris
    first = registry.register(clf, "iris", sample_input=x[:3], tags={"team": "ml"})
    second = registry.register(clf, "iris", sample_input=x[:3], description="again")

    assert (first.version, second.version) == (1, 2)
    assert first.manifest.runtime == "sklearn"
    assert first.manifest.signature.inputs == (
        TensorSpec(name="input", datatype=Datatype.FP64, shape=(-1, 4)),
    )
    assert [o.name for o in first.manifest.signature.outputs] == ["label", "probabilities"]
    assert first.manifest.task == "classification"
    assert all(len(f.sha256) == 64 for f in first.manifest.files)
    assert first.tags == {"team": "ml"}
    assert registry.get_model("iris").latest_version == 2


def test_load_predicts_like_the_original_by_version_alias_and_latest(
    registry: Registry, clf: Any, iris: Any
) -> None:
    x, y = iris
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    registry.register(clf, "iris", sample_input=x[:2])
    registry.register(tree, "iris", sample_input=x[:2])
    registry.set_alias("iris", "production", 1)

    np.testing.assert_array_equal(registry.load("iris", 1).predict(x), clf.predict(x))
    np.testing.assert_array_equal(registry.load("iris").predict(x), tree.predict(x))
    production = registry.load("iris", alias="production")
    assert production.version == 1
    np.testing.assert_allclose(production.predict_proba(x), clf.predict_proba(x))


def test_alias_moves_are_atomic_and_recorded(registry: Registry, clf: Any, iris: Any) -> None:
    x, _ = iris
    for _ in range(3):
        registry.register(clf, "iris", sample_input=x[:2])
    assert registry.set_alias("iris", "production", 1) is None
    assert registry.set_alias("iris", "production", 3) == 1
    registry.delete_alias("iris", "production")

    history = [(e.alias, e.from_version, e.to_version) for e in registry.alias_history("iris")]
    assert history == [("production", None, 1), ("production", 1, 3), ("production", 3, None)]
    with pytest.raises(AimassError) as missing:
        registry.set_alias("iris", "staging", 9)
    assert missing.value.code is ErrorCode.NOT_FOUND


def test_delete_and_archive_are_refused_while_aliased_and_numbers_never_reused(
    registry: Registry, clf: Any, iris: Any
) -> None:
    x, _ = iris
    registry.register(clf, "iris", sample_input=x[:2])
    registry.register(clf, "iris", sample_input=x[:2])
    registry.set_alias("iris", "production", 2)

    for action in (registry.delete_version, registry.archive_version):
        with pytest.raises(AimassError) as refused:
            action("iris", 2)
        assert refused.value.code is ErrorCode.CONFLICT
        assert "production" in refused.value.message

    registry.delete_alias("iris", "production")
    registry.delete_version("iris", 2)
    assert registry.register(clf, "iris", sample_input=x[:2]).version == 3
    registry.archive_version("iris", 3)
    assert registry.get_version("iris").version == 1
    assert [v.version for v in registry.list_versions("iris", include_archived=True)] == [1, 3]


def test_search_by_name_tag_and_task(registry: Registry, clf: Any, iris: Any) -> None:
    x, _ = iris
    registry.register(clf, "iris-prod", sample_input=x[:2])
    registry.register(clf, "flowers", sample_input=x[:2])
    registry.set_tags("flowers", {"owner": "bio"})

    assert [m.name for m in registry.list_models(name="iris")] == ["iris-prod"]
    assert [m.name for m in registry.list_models(tag="owner=bio")] == ["flowers"]
    assert [m.name for m in registry.list_models(tag="owner=chem")] == []
    assert len(registry.list_models(task="classification")) == 2


def test_an_unknown_task_filter_names_the_valid_ones(registry: Registry) -> None:
    with pytest.raises(AimassError) as bogus:
        registry.list_models(task="bogus")
    assert bogus.value.code is ErrorCode.INVALID_INPUT
    assert "task must be one of classification, regression, embedding" in bogus.value.message


def test_the_latest_versions_tags_are_listed_with_the_model(
    registry: Registry, clf: Any, iris: Any
) -> None:
    x, _ = iris
    registry.register(clf, "tagged", sample_input=x[:2], tags={"team": "ml"})
    registry.register(clf, "tagged", sample_input=x[:2], tags={"team": "vision"})
    [listed] = registry.list_models(name="tagged")
    assert listed.latest_tags == {"team": "vision"}


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("my alias", "must start with a letter or digit"),
        ("", "must start with a letter or digit"),
        ("latest", "is reserved"),
        ("3", "must not be a number"),
    ],
)
def test_alias_names_follow_the_model_names_rule(
    registry: Registry, clf: Any, iris: Any, alias: str, message: str
) -> None:
    x, _ = iris
    registry.register(clf, "aliased", sample_input=x[:2])
    with pytest.raises(AimassError) as bad:
        registry.set_alias("aliased", alias, 1)
    assert bad.value.code is ErrorCode.INVALID_INPUT and message in bad.value.message
    assert registry.get_model("aliased").aliases == {}


def test_a_promotion_refuses_a_bad_alias_before_its_gates(
    registry: Registry, clf: Any, iris: Any
) -> None:
    from aimass.lifecycle.gates import Requirement, promote
    from aimass.lifecycle.runs import RunStore

    x, _ = iris
    registry.register(clf, "gated", sample_input=x[:2])
    with pytest.raises(AimassError) as bad:
        promote(
            registry,
            RunStore.of(registry),
            "gated",
            "staging now",
            1,
            [Requirement.parse("accuracy>=0.9")],  # it has no evaluation: CONFLICT, if checked
        )
    assert bad.value.code is ErrorCode.INVALID_INPUT


def test_explicit_signature_task_and_lineage_are_kept(registry: Registry, clf: Any) -> None:
    signature = Signature(
        inputs=(TensorSpec(name="input", datatype=Datatype.FP64, shape=(-1, 4)),),
        outputs=(TensorSpec(name="label", datatype=Datatype.INT64, shape=(-1,)),),
    )
    parent = registry.register(clf, "iris", signature=signature)
    child = registry.register(
        clf,
        "iris-small",
        signature=signature,
        task="classification",
        lineage=Lineage(method=LineageMethod.QUANTIZED, parents=(parent.ref,), params={"bits": 8}),
    )
    assert child.manifest.signature == signature
    assert child.manifest.lineage.parents == ("iris:1",)
    assert registry.resolve("iris-small:1").manifest.lineage.params == {"bits": 8}


def test_bad_names_and_missing_models_are_clear_errors(registry: Registry, clf: Any) -> None:
    with pytest.raises(AimassError) as bad:
        registry.register(clf, "no spaces allowed")
    assert bad.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(AimassError) as missing:
        registry.load("nope")
    assert missing.value.code is ErrorCode.NOT_FOUND
    assert "nope" in missing.value.message


def test_corrupted_artifact_is_detected_never_loaded(
    registry: Registry, settings: Settings, clf: Any, iris: Any
) -> None:
    x, _ = iris
    version = registry.register(clf, "iris", sample_input=x[:2])
    sha = version.manifest.files[0].sha256
    garbage = Path(settings.home) / "garbage"
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(b"not the model")
    _overwrite_object(registry, sha, garbage)

    with pytest.raises(AimassError) as corrupted:
        registry.load("iris")
    assert corrupted.value.code is ErrorCode.INTEGRITY
    assert "corrupted" in corrupted.value.message


def test_missing_artifact_is_detected(registry: Registry, clf: Any, iris: Any) -> None:
    x, _ = iris
    version = registry.register(clf, "iris", sample_input=x[:2])
    registry.artifacts.delete(version.manifest.files[0].sha256)
    with pytest.raises(AimassError) as missing:
        registry.load("iris")
    assert missing.value.code is ErrorCode.INTEGRITY
    assert "missing" in missing.value.message


def test_corrupted_cache_copy_is_refetched(registry: Registry, clf: Any, iris: Any) -> None:
    x, _ = iris
    registry.register(clf, "iris", sample_input=x[:2])
    directory = registry.materialize(registry.get_version("iris"))
    for file in directory.rglob("*"):
        if file.is_file():
            file.write_bytes(b"tampered")
    np.testing.assert_array_equal(registry.load("iris").predict(x), clf.predict(x))


def _overwrite_object(registry: Registry, sha: str, source: Path) -> None:
    from aimass.registry.artifacts import LocalArtifactStore, S3ArtifactStore

    store = registry.artifacts
    if isinstance(store, LocalArtifactStore):
        store._object(sha).write_bytes(source.read_bytes())
    else:
        assert isinstance(store, S3ArtifactStore)
        store._client.upload_file(str(source), store.bucket, store._key(sha))


def test_load_in_a_fresh_process_predicts_like_the_original(
    registry: Registry, settings: Settings, clf: Any, iris: Any, tmp_path: Path
) -> None:
    x, _ = iris
    registry.register(clf, "iris", sample_input=x[:2])
    np.save(tmp_path / "x.npy", x)
    script = textwrap.dedent(
        f"""
        import numpy as np, aimass
        model = aimass.load("iris")
        np.save({str(tmp_path / "y.npy")!r}, model.predict(np.load({str(tmp_path / "x.npy")!r})))
        """
    )
    subprocess.run(
        [sys.executable, "-c", script], env=registry_env(settings), check=True, timeout=120
    )
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), clf.predict(x))


# Numbering is the metadata store's job: the artifact backend does not change it.
ONE_PER_DATABASE = pytest.mark.parametrize(
    "settings", ["sqlite-local", "postgres-local"], indirect=True
)


@pytest.mark.slow
@ONE_PER_DATABASE
def test_concurrent_registration_gets_distinct_numbers(
    registry: Registry, settings: Settings, clf: Any, iris: Any
) -> None:
    x, _ = iris
    registry.register(clf, "iris", sample_input=x[:2])  # the schema and model exist
    script = textwrap.dedent(
        """
        import json, numpy as np, aimass
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        x, y = load_iris(return_X_y=True)
        clf = LogisticRegression(max_iter=300).fit(x, y)
        print(json.dumps([aimass.register(clf, "iris", sample_input=x[:2]).version
                          for _ in range(3)]))
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=registry_env(settings),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    numbers = []
    for proc in procs:
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 0
        numbers.extend(json.loads(out))
    assert sorted(numbers) == list(range(2, 14))
    assert registry.get_model("iris").latest_version == 13


@pytest.mark.slow
@ONE_PER_DATABASE
def test_first_registrations_of_a_new_model_race_safely(
    settings: Settings, clf: Any, iris: Any
) -> None:
    script = textwrap.dedent(
        """
        import aimass
        from sklearn.datasets import load_iris
        from sklearn.tree import DecisionTreeClassifier
        x, y = load_iris(return_X_y=True)
        tree = DecisionTreeClassifier().fit(x, y)
        print(aimass.register(tree, "fresh", sample_input=x[:2]).version)
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env=registry_env(settings),
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o) for o in outs) == [1, 2, 3]


# Past 2**31 - 1 PostgreSQL's INTEGER refuses the comparison; past 2**63 - 1 SQLite's does.
BEYOND_ANY_DATABASE = [2**31, 2**63, 10**20]


@ONE_PER_DATABASE
@pytest.mark.parametrize("number", BEYOND_ANY_DATABASE)
def test_a_version_number_no_database_holds_is_not_found(
    registry: Registry, clf: Any, iris: Any, number: int
) -> None:
    registry.register(clf, "iris", sample_input=iris[0][:2])
    calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (registry.get_version, ("iris", number), {}),
        (registry.resolve, (f"iris:{number}",), {}),
        (registry.load, ("iris", number), {}),
        (registry.archive_version, ("iris", number), {}),
        (registry.restore_version, ("iris", number), {}),
        (registry.delete_version, ("iris", number), {}),
        (registry.set_alias, ("iris", "production", number), {}),
        (registry.set_tags, ("iris", {"stage": "x"}), {"version": number}),
        (registry.delete_tag, ("iris", "stage"), {"version": number}),
    ]
    for call, args, kwargs in calls:
        with pytest.raises(AimassError) as info:
            call(*args, **kwargs)
        assert info.value.code is ErrorCode.NOT_FOUND, call.__name__
    assert registry.resolve("iris:1").version == 1


@ONE_PER_DATABASE
def test_the_python_api_finds_no_version_no_database_holds(
    registry: Registry, settings: Settings, clf: Any, iris: Any
) -> None:
    registry.register(clf, "iris", sample_input=iris[0][:2])
    script = textwrap.dedent(
        f"""
        import aimass
        from aimass.errors import AimassError
        for number in {BEYOND_ANY_DATABASE!r}:
            try:
                aimass.load(f"iris:{{number}}")
            except AimassError as exc:
                print(exc.code.value, exc.message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=registry_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"not_found model 'iris' has no version {n}" for n in BEYOND_ANY_DATABASE
    ]
