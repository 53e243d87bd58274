"""Container build files: a directory that ``docker build`` turns into a server of one version.

``aimass build iris:3`` writes:

- ``Dockerfile``: a slim Python image of the version's Python, a non-root
  user, pinned requirements, and ``aimass serve --model iris:3`` as its command;
- ``requirements.txt``: aimass's own dependencies, the server's and the
  version's framework, each pinned to the version installed here;
- ``vendor/aimass``: this aimass, so the image runs the code that registered
  the version;
- ``home``: a one-version registry (SQLite and an artifact directory) holding
  the version under the same number and with the aliases that point at it.

The directory is complete on its own: ``AIMASS_HOME=home PYTHONPATH=vendor
aimass serve --model iris:3`` serves it without Docker, which is how the tests
check it on a machine that has no Docker engine.

The image listens on 0.0.0.0, where ``aimass serve`` refuses to start open,
so the build carries no keys and the README it writes says how keys reach
the image: made in ``home`` before ``docker build`` (the image then holds
their sha256, never a key), or the explicit ``AIMASS_SERVER__INSECURE=true``.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry, VersionInfo
from aimass.runtimes import runtime_class
from aimass.runtimes.loading import require
from aimass.settings import Settings

__all__ = ["BuildContext", "build_context", "pinned_requirements"]

_PORT = 8000
_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class BuildContext:
    """What :func:`build_context` wrote."""

    directory: Path
    dockerfile: Path
    requirements: Path
    ref: str
    image_command: tuple[str, ...]


def _requirement_lines(extras: set[str]) -> list[str]:
    Requirement = require("packaging.requirements", "lifecycle").Requirement

    wanted = set(extras)
    declared = [Requirement(r) for r in importlib.metadata.requires("aimass") or []]
    # aimass[transformers] inside an extra names more extras: follow them to the end.
    changed = True
    while changed:
        changed = False
        for req in declared:
            if req.name == "aimass" and _applies(req, wanted) and not req.extras <= wanted:
                wanted |= req.extras
                changed = True
    lines: dict[str, str] = {}
    for req in declared:
        if req.name == "aimass" or not _applies(req, wanted):
            continue
        try:
            installed = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            raise AimassError(
                ErrorCode.MISSING_EXTRA,
                f"{req.name} is needed in the image but not installed here, so its version "
                f"cannot be pinned: pip install 'aimass[{','.join(sorted(extras))}]'",
            ) from None
        extra = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        lines[req.name.lower()] = f"{req.name}{extra}=={installed}"
    return [lines[name] for name in sorted(lines)]


def _applies(req: object, extras: set[str]) -> bool:
    marker = getattr(req, "marker", None)
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras)


def _extras(info: VersionInfo) -> set[str]:
    training = info.metadata.get("training") or {}
    extras = {"server", runtime_class(info.manifest.runtime).extra}
    extras.update(training.get("extras") or [])
    return extras - {"python"}


def pinned_requirements(info: VersionInfo) -> list[str]:
    """The pinned requirement lines an image serving ``info`` needs."""
    return _requirement_lines(_extras(info))


def _dockerfile(info: VersionInfo, needs_torch: bool, command: tuple[str, ...]) -> str:
    python = ".".join(info.manifest.python_version.split(".")[:2])
    index = f" --extra-index-url {_TORCH_INDEX}" if needs_torch else ""
    quoted = ", ".join(f'"{part}"' for part in command)
    return f"""\
# Serves {info.ref} with `aimass serve` (written by `aimass build {info.ref}`).
# It listens on 0.0.0.0, so it starts only once home/ holds an API key (see README.md):
#   AIMASS_HOME=home aimass keys create --name NAME --role invoker
FROM python:{python}-slim

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PYTHONPATH=/app/vendor \\
    AIMASS_HOME=/app/home \\
    AIMASS_SERVER__HOST=0.0.0.0 \\
    AIMASS_SERVER__PORT={_PORT}

WORKDIR /app
RUN useradd --create-home --uid 10001 aimass

COPY requirements.txt ./
RUN pip install --no-cache-dir{index} -r requirements.txt

COPY --chown=10001:10001 vendor/ vendor/
COPY --chown=10001:10001 home/ home/

USER 10001
EXPOSE {_PORT}
HEALTHCHECK --interval=30s --timeout=5s \\
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{_PORT}/v2/health/ready')"]
ENTRYPOINT ["python", "-c", "from aimass.cli.app import main; main()"]
CMD [{quoted}]
"""


def _copy_version(source: Registry, info: VersionInfo, home: Path) -> None:
    target = Registry.from_settings(Settings(home=home))
    try:
        # Under its own number, so ``name:N`` means the same inside the image.
        target.copy_version(source, info)
    finally:
        target.close()


def build_context(registry: Registry, ref: str, directory: Path) -> BuildContext:
    """Write the build directory for the version ``ref`` names; refuses a non-empty directory."""
    import aimass

    info = registry.resolve(ref)
    if directory.exists() and any(directory.iterdir()):
        raise AimassError(
            ErrorCode.ALREADY_EXISTS, f"{directory} is not empty; give a new or empty directory"
        )
    requirements = pinned_requirements(info)
    needs_torch = any(line.startswith("torch") for line in requirements)
    command = ("serve", "--model", info.ref)
    # Write into a sibling temporary directory first, so a failure leaves nothing half-built.
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}-"))
    try:
        (staging / "requirements.txt").write_text("\n".join(requirements) + "\n")
        (staging / "Dockerfile").write_text(_dockerfile(info, needs_torch, command))
        shutil.copytree(
            Path(aimass.__file__).parent,
            staging / "vendor" / "aimass",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        _copy_version(registry, info, staging / "home")
        (staging / "README.md").write_text(_readme(info))
        if directory.exists():
            directory.rmdir()
        staging.rename(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return BuildContext(
        directory=directory,
        dockerfile=directory / "Dockerfile",
        requirements=directory / "requirements.txt",
        ref=info.ref,
        image_command=command,
    )


def _readme(info: VersionInfo) -> str:
    tag = f"{info.model}:{info.version}".lower()
    return f"""\
# {info.ref} as a container

The image listens on 0.0.0.0, and a server that others can reach refuses to
start without an API key. Create keys in this directory's registry before
building; the image holds only their sha256, never a key:

    KEY=$(AIMASS_HOME=home aimass keys create --name clients --role invoker)
    docker build -t {tag} .
    docker run --rm -p {_PORT}:{_PORT} {tag}
    curl localhost:{_PORT}/v2/models/{info.model} -H "Authorization: Bearer $KEY"

To run it open on purpose (behind a gateway of your own, say), pass
`-e AIMASS_SERVER__INSECURE=true` to `docker run`.

Without Docker, the same directory serves the version directly (on
127.0.0.1, open unless it holds a key):

    AIMASS_HOME=home PYTHONPATH=vendor aimass serve --model {info.ref}
"""
