"""All configuration, in one typed tree: the only module that reads the environment.

Settings are built once (``Settings()`` reads ``AIMASS_*`` variables, nested
sections with ``__``: ``AIMASS_REGISTRY__DATABASE_URL``) and passed down to
whatever needs them; nothing else looks at ``os.environ``. Unknown keys are
errors so a typo in a variable name or a config file is never silently ignored.
URLs that may carry a password are :class:`~pydantic.SecretStr`, never printed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from aimass.errors import AimassError, ErrorCode

__all__ = [
    "DeploymentSettings",
    "GatewaySettings",
    "ModelBatching",
    "RegistrySettings",
    "ServerSettings",
    "ServingSettings",
    "Settings",
    "load_settings",
]


class _Section(BaseModel):
    # Frozen: settings are built once, at start-up, and only read after that.
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegistrySettings(_Section):
    """Where the model library keeps its metadata and artifacts."""

    database_url: SecretStr | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///$AIMASS_HOME/registry.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db (a secret: it may hold a password)",
    )
    artifact_url: str | None = Field(
        default=None,
        description="Artifact store: a directory path or file:// URL (default "
        "$AIMASS_HOME/artifacts), or s3://bucket/prefix",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible server (MinIO, moto, Ceph)"
    )
    allow_pickle: bool = Field(
        default=True,
        description="Load pickle/joblib artifacts (they run code when loaded; only "
        "ever after their sha256 is verified). False refuses them.",
    )
    prefer_safe_formats: bool = Field(
        default=True,
        description="Save scikit-learn models with skops instead of pickle when it round-trips",
    )
    onnx_serving_plans: bool = Field(
        default=True,
        description="Also save scikit-learn models fitted on arrays and PyTorch modules with "
        "float inputs as an ONNX serving plan (with the onnx extra), kept only when "
        "onnxruntime reproduces every output; such versions are then served without "
        "importing their framework",
    )
    gc_grace_minutes: float = Field(
        default=60,
        ge=0,
        description="aimass gc removes only debris (unreferenced objects, staging directories, "
        "models with no version) older than this, so it never races a registration in flight",
    )


class ServerSettings(_Section):
    """How ``aimass serve`` listens and how many processes it runs."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port; 0 lets the OS choose")
    workers: int = Field(default=1, ge=1, description="Worker processes sharing the port")
    keepalive_requests: int = Field(
        default=100,
        ge=1,
        description="With workers > 1, the most requests one connection carries before the "
        "response asks the client to reconnect (Connection: close), so that keep-alive "
        "clients spread over the workers, a replaced one included",
    )
    models: list[str] = Field(default_factory=list, description="Models to load at start-up")
    allow_missing: bool = Field(
        default=False,
        description="Serve even if a start-up model does not resolve or load (it is logged); "
        "by default such a model stops the start",
    )
    insecure: bool = Field(
        default=False,
        description="Serve on an address other than loopback although no API key exists "
        "(anyone who reaches it may use every model); by default that refuses to start",
    )
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        gt=0,
        description="Largest request body accepted (after decompression); larger is 413",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Largest request line plus headers; larger is 431 and the connection closes",
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest a request line and headers may take to arrive (counted from the "
        "connection or the request's first byte); then 408 and the connection closes",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Longest a request body may stall with no byte arriving; "
        "then 408 and the connection closes",
    )
    max_connections: int = Field(
        default=1024,
        ge=1,
        description="Open connections per worker process; past them a new connection takes the "
        "place of the one that has waited longest for a request (503 if it owed one), and a "
        "request is 503 only while every connection has one under way. The soft limit of open "
        "files is raised to fit them (up to the hard limit; fewer connections if it is lower)",
    )
    gzip_min_bytes: int = Field(
        default=4096,
        ge=0,
        description="Successful responses at least this large are gzipped for clients "
        "that accept it; error bodies never are",
    )
    log_level: str = Field(default="warning", description="uvicorn's log level")


class Batching(NamedTuple):
    """The batching limits one model version runs with (:meth:`ServingSettings.batching`)."""

    max_batch_size: int
    max_delay_ms: float
    fill_fraction: float


class ModelBatching(_Section):
    """Batching limits for one model, overriding the serving defaults."""

    max_batch_size: int | None = Field(default=None, ge=1, description="Rows per model call")
    max_delay_ms: float | None = Field(
        default=None, ge=0, description="How long the first queued request waits for company"
    )
    fill_fraction: float | None = Field(
        default=None,
        ge=0,
        description="How long a model that just finished a call waits for a fuller batch, "
        "as a fraction of that call's duration",
    )


class ServingSettings(_Section):
    """How the serving engine batches, queues, runs and caches models."""

    max_batch_size: int = Field(
        default=32,
        ge=1,
        description="Most rows merged into one model call (a larger request runs alone)",
    )
    max_delay_ms: float = Field(
        default=2.0,
        ge=0,
        description="Longest the oldest queued request waits for more to batch with; "
        "0 runs whatever is queued at once",
    )
    fill_fraction: float = Field(
        default=0.1,
        ge=0,
        description="Under load, how long a model that just finished a call waits for a "
        "fuller batch, as a fraction of that call's duration (a 100 ms call: up to 10 ms)",
    )
    queue_size: int = Field(
        default=1024, ge=1, description="Requests queued per model version before OVERLOADED"
    )
    admission_wait_ms: float = Field(
        default=50.0,
        ge=0,
        description="How long a request that finds its model's queue full waits for a slot "
        "(one frees as each call starts) before OVERLOADED; 0 refuses at once",
    )
    executor_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads running one model version's calls (default: one per CPU); "
        "each version has its own, so a slow or hung model never holds another's",
    )
    load_threads: int = Field(
        default=2, ge=1, description="Threads loading models and reading the registry"
    )
    memory_budget_mb: float | None = Field(
        default=None,
        gt=0,
        description="Evict least-recently-used idle models above this total artifact size "
        "(default: no limit)",
    )
    request_timeout_s: float = Field(
        default=60.0, gt=0, description="Default deadline of one inference request"
    )
    resolve_ttl_s: float = Field(
        default=2.0,
        ge=0,
        description="How long a resolved name or alias is trusted before asking the registry again",
    )
    load_retry_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a failed load is reported before a request retries it",
    )
    per_model: dict[str, ModelBatching] = Field(
        default_factory=dict,
        description="Batching overrides by model name, or name:version (which wins)",
    )

    def batching(self, name: str, version: int) -> Batching:
        """The batching limits of one version: its overrides over the serving defaults."""
        limits: dict[str, Any] = {
            "max_batch_size": self.max_batch_size,
            "max_delay_ms": self.max_delay_ms,
            "fill_fraction": self.fill_fraction,
        }
        for key in (name, f"{name}:{version}"):
            override = self.per_model.get(key)
            if override is not None:
                limits.update(override.model_dump(exclude_none=True))
        return Batching(**limits)


class GatewaySettings(_Section):
    """API keys, rate limits, request limits, TLS and CORS: what stands in front of the engine."""

    enabled: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="auto: keys are required as soon as one exists (open for a local demo "
        "with none); on: always required; off: no key checks at all",
    )
    key_refresh_s: float = Field(
        default=2.0,
        ge=0,
        description="How long the server trusts its copy of the key table before "
        "re-reading it; a backstop, since an unknown key and a change notification "
        "(key_watch_s) each trigger a re-read sooner",
    )
    key_recheck_s: float = Field(
        default=0.2,
        gt=0,
        description="Shortest time between the re-reads of the key table that unknown keys "
        "trigger (a key made a moment ago works at once; a flood of bad keys costs one read "
        "per interval)",
    )
    key_watch_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a server checks the key table for changes made by other "
        "processes (SQLite; PostgreSQL is told at once by NOTIFY and this is its reconnect "
        "delay): a revoked key is refused within about this",
    )
    rate_limit_backend: Literal["memory", "redis"] = Field(
        default="memory",
        description="memory: limits per server, shared by its --workers; redis: shared by "
        "every server using the same Redis",
    )
    redis_url: SecretStr = Field(
        default=SecretStr("redis://127.0.0.1:6379/0"),
        description="Redis for the redis rate-limit backend (a secret: it may hold a password)",
    )
    redis_prefix: str = Field(default="aimass:", description="Prefix of every Redis key")
    redis_timeout_s: float = Field(
        default=0.5, gt=0, description="Connect and reply timeout of one Redis call"
    )
    redis_failure: Literal["open", "closed"] = Field(
        default="open",
        description="When Redis is unreachable: open admits requests without limits, "
        "closed refuses them with 503; either way it is logged and counted",
    )
    max_tensor_elements: int = Field(
        default=16_777_216, gt=0, description="Most elements in one input tensor (else 413)"
    )
    max_string_bytes: int = Field(
        default=1_048_576,
        gt=0,
        description="Longest string (BYTES element, input text) in a request (else 413)",
    )
    request_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest a request may take before the server answers 504 "
        "(inference has its own, shorter, serving.request_timeout_s)",
    )
    tls_certfile: Path | None = Field(default=None, description="PEM certificate: serve HTTPS")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key of tls_certfile")
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser ('*' for any); "
        "empty sends no CORS headers",
    )
    cors_allow_credentials: bool = Field(
        default=False, description="Whether browsers may send credentials cross-origin"
    )


class DeploymentSettings(_Section):
    """How servers follow deployments, judge canaries and run shadows."""

    poll_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="How often a server checks the database for changed deployments and moved "
        "aliases (a change is served within about this plus a version's load and warm-up)",
    )
    stats_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="How often a server writes its per-version request counts and latencies, "
        "which canary guards and `deploy show` read",
    )
    stats_bucket_s: int = Field(
        default=5, ge=1, description="The time resolution of stored per-version statistics"
    )
    shadow_concurrency: int = Field(
        default=32,
        ge=1,
        description="Shadow copies in flight per server, held ones included; a copy beyond it "
        "is dropped and counted",
    )
    shadow_hold_ms: float = Field(
        default=5.0,
        ge=0,
        description="How long copies to a shadow are held so they reach it as one call (a batch "
        "costs the server far less than its copies one by one); 0 sends each copy at once",
    )
    shadow_timeout_s: float = Field(default=5.0, gt=0, description="Deadline of one shadow request")


class Settings(BaseSettings):
    """The root of the configuration tree."""

    model_config = SettingsConfigDict(
        env_prefix="AIMASS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".aimass",
        description="Directory for the default SQLite database and artifact store",
    )
    user: str = Field(default="local", description="Recorded as creator of what you register")
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    deployments: DeploymentSettings = Field(default_factory=DeploymentSettings)

    def database_url(self) -> str:
        """The product database URL, defaulting to SQLite under ``home``."""
        url = self.registry.database_url
        return f"sqlite:///{self.home / 'registry.db'}" if url is None else url.get_secret_value()

    def artifact_url(self) -> str:
        """The artifact store location, defaulting to a directory under ``home``."""
        return self.registry.artifact_url or str(self.home / "artifacts")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a YAML file (optional), then the environment, then overrides.

    Environment variables win over the file so one file can serve several
    machines; explicit overrides (CLI flags) win over both. A file that is not
    YAML, an unknown key or a value of the wrong type, wherever it came from,
    is INVALID_INPUT naming the setting and the value.
    """
    from_file: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"config file {config_file} is not readable YAML: {_yaml_reason(exc)}",
            ) from exc
        if not isinstance(loaded, dict):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"config file {config_file}: expected a mapping of settings at the top level",
            )
        from_file = loaded
    try:
        env_only = Settings().model_dump(exclude_unset=True)
        return Settings.model_validate(_deep_merge(_deep_merge(from_file, env_only), overrides))
    except ValidationError as exc:
        where = f" (config file {config_file}, environment or flags)" if config_file else ""
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise AimassError(ErrorCode.INVALID_INPUT, f"{problems}{where}") from exc


def _yaml_reason(exc: Exception) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _describe(error: Mapping[str, Any]) -> str:
    """One validation error as the setting's config and env names, the value and why."""
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    env = "AIMASS_" + "__".join(part.upper() for part in loc)
    if error["type"] == "extra_forbidden":
        return f"unknown setting {dotted} ({env})"
    value = "(hidden)" if _is_secret(error["loc"]) else repr(error["input"])
    return f"invalid setting {dotted} ({env}) = {value}: {error['msg']}"


def _is_secret(loc: Sequence[int | str]) -> bool:
    """Whether the field at ``loc`` holds a secret, whose value is never shown."""
    model: Any = Settings
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is None or part not in fields:
            return False
        annotation = fields[part].annotation
        if annotation is SecretStr or SecretStr in get_args(annotation):
            return True
        model = annotation
    return False


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
