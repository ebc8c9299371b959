"""The appliance's settings: one typed object, read from an optional TOML file
and ``APPLIANCE_*`` environment variables (the environment wins).

Everything is validated at start-up; an error names the bad key the way the
user wrote it (``APPLIANCE_PORT`` or ``port in /etc/appliance.toml``) and says
what it expects.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from appliance.manifest import CAPABILITIES

ENV_PREFIX = "APPLIANCE_"
CONFIG_ENV = "APPLIANCE_CONFIG"

Profile = Literal["embedded", "production"]
LlmProvider = Literal["llamacpp", "ollama"]
LogFormat = Literal["json", "console"]
EmbeddingBackend = Literal["torch", "onnx-int8"]
LogLevel = Literal["debug", "info", "warning", "error"]

Port = Annotated[int, Meta(ge=1, le=65535)]
PositiveInt = Annotated[int, Meta(ge=1)]
Seconds = Annotated[float, Meta(gt=0)]
Fraction = Annotated[float, Meta(gt=0, le=1)]
CHROMA_COLLECTION_NAME = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$"


def ipaddress_networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip()]


class SettingsError(ValueError):
    """A setting is missing or has a value the appliance cannot use."""


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    profile: Profile = "embedded"
    data_dir: str = ".appliance"
    host: str = "127.0.0.1"
    port: Port = 8000

    # Stores. None in the embedded profile means "start our own under data_dir".
    database_url: str | None = None
    db_pool_min_size: PositiveInt = 2
    db_pool_max_size: PositiveInt = 20
    # How long a request waits for a pooled connection while none comes back
    # (the database restarting, unreachable or stuck) before it is told 503.
    db_pool_timeout_s: Seconds = 5.0
    # How long it may wait in line while connections do come back (a burst of
    # work, not an outage): overload makes requests slower, never a 503 at 5 s.
    db_pool_queue_s: Seconds = 300.0
    chroma_url: str | None = None
    chroma_collection: Annotated[str, Meta(pattern=CHROMA_COLLECTION_NAME)] = "appliance_chunks"
    # How often documents published while Chroma was unreachable are indexed again.
    index_reconcile_s: Seconds = 10.0

    # The model. The provider defaults to llamacpp (embedded) or ollama (production).
    llm_provider: LlmProvider | None = None
    ollama_url: str | None = None
    # Several Ollama servers with the same model (comma-separated URLs): each call
    # goes to the live one with the fewest calls in flight. Set, it replaces ollama_url.
    ollama_urls: str | None = None
    # How often a server that stopped answering is asked whether it is back.
    ollama_probe_s: Seconds = 2.0
    ollama_model: str | None = None
    ollama_connect_timeout_s: Seconds = 5.0
    ollama_timeout_s: Seconds = 120.0
    ollama_keep_alive: str = "30m"
    llamacpp_model_path: str | None = None
    llamacpp_context_tokens: Annotated[int, Meta(ge=256)] = 4096
    llamacpp_threads: PositiveInt | None = None
    model_concurrency: PositiveInt = 1  # calls at once per model server
    temperature: Annotated[float, Meta(ge=0, le=2)] = 0.2
    max_answer_tokens: PositiveInt = 256
    # What the chat model may be trusted with (comma-separated: decide, rewrite,
    # generate, tools); unset, the manifest's entry for the configured model.
    model_capabilities: str | None = None

    # Conversation memory: the prompt stays under context_token_budget tokens;
    # when it would not, older turns are folded into the running summary until
    # the prompt is back under fold_target * budget.
    context_token_budget: Annotated[int, Meta(ge=64)] = 1024
    fold_target: Fraction = 0.85
    summary_max_tokens: PositiveInt = 160
    system_prompt: str = (
        "You are a helpful assistant running privately on the user's own network. Answer clearly and concisely."
    )

    # Knowledge bases: chunking (in words, so no tokenizer is needed), the
    # embedding model, and retrieval.
    chunk_words: Annotated[int, Meta(ge=20, le=2000)] = 180
    chunk_overlap_words: Annotated[int, Meta(ge=0, le=500)] = 30
    embedding_model_path: str | None = None
    embedding_backend: EmbeddingBackend = "torch"
    embedding_batch_size: PositiveInt = 32
    max_document_bytes: PositiveInt = 20_971_520
    retrieval_k: Annotated[int, Meta(ge=1, le=50)] = 4
    relevance_floor: Annotated[float, Meta(ge=-1, le=1)] = 0.25
    rag_max_retrievals: Annotated[int, Meta(ge=1, le=5)] = 2

    # Runs: every process executes up to worker_slots runs at once (0: serve
    # the API only, and leave runs to `appliance worker` processes). A worker
    # whose heartbeat is older than worker_dead_after_s is taken for dead and
    # its runs are retried, at most run_max_attempts times in all.
    worker_slots: Annotated[int, Meta(ge=0)] = 16
    # Turns at work at once in one process (appliance/pacing.py): the others
    # wait in order of arrival, and one waiting for the model steps out. 0 (the
    # default): no limit. Under a flood a lane cut the median turn's wait to
    # 0.64x for 1.10x the CPU a turn (bench.stream_load --compare-lane).
    turn_lane_width: Annotated[int, Meta(ge=0)] = 0
    worker_heartbeat_s: Seconds = 5.0
    worker_dead_after_s: Seconds = 30.0
    run_max_attempts: PositiveInt = 3
    run_event_retention_s: Seconds = 3600.0
    stream_heartbeat_s: Seconds = 15.0
    # Where webhooks may go: a comma-separated list of networks.
    webhook_allowed_networks: str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    webhook_attempts: PositiveInt = 4
    webhook_backoff_s: Seconds = 1.0
    # Tools: where tool servers (MCP, Streamable HTTP) may be, as networks; how
    # long one call may take, and how long a server has to list its tools.
    tool_allowed_networks: str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    tool_call_timeout_s: Seconds = 30.0
    tool_list_timeout_s: Seconds = 10.0

    # Rate limits, per API key and per tenant, counted in PostgreSQL across every
    # process (0: no limit). A tenant's own limits (PUT /tenants/{tenant}/limits) win.
    limit_key_requests_per_minute: Annotated[int, Meta(ge=0)] = 600
    limit_tenant_requests_per_minute: Annotated[int, Meta(ge=0)] = 3000
    limit_key_runs_in_flight: Annotated[int, Meta(ge=0)] = 8
    limit_tenant_runs_in_flight: Annotated[int, Meta(ge=0)] = 32
    limit_key_uploads_in_flight: Annotated[int, Meta(ge=0)] = 2
    limit_tenant_uploads_in_flight: Annotated[int, Meta(ge=0)] = 4

    # HTTP. With a certificate and its key (PEM files), the API and web chat are
    # served over HTTPS only; http_redirect_port then answers plain HTTP with a
    # redirect to HTTPS and nothing else.
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    http_redirect_port: Port | None = None
    max_body_bytes: PositiveInt = 1_048_576
    admin_key_file: str | None = None

    log_format: LogFormat | None = None
    log_level: LogLevel = "info"
    models_manifest: str | None = None

    def __post_init__(self) -> None:
        if self.chunk_overlap_words >= self.chunk_words:
            raise SettingsError(
                f"chunk_overlap_words ({self.chunk_overlap_words}) must be smaller than "
                f"chunk_words ({self.chunk_words})"
            )
        for name in ("webhook_allowed_networks", "tool_allowed_networks"):
            try:
                ipaddress_networks(getattr(self, name))
            except ValueError as exc:
                raise SettingsError(f"{name}: {exc}; give networks like 10.0.0.0/8,fd00::/8") from None
        unknown = set(self.capability_list or ()) - set(CAPABILITIES)
        if unknown:
            raise SettingsError(
                f"model_capabilities: {', '.join(sorted(unknown))} unknown; choose from {', '.join(CAPABILITIES)}"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise SettingsError("tls_cert_file and tls_key_file go together: set both (HTTPS) or neither (HTTP)")
        if self.http_redirect_port is not None and self.tls_cert_file is None:
            raise SettingsError("http_redirect_port redirects to HTTPS: it needs tls_cert_file and tls_key_file")
        if self.http_redirect_port == self.port:
            raise SettingsError(f"http_redirect_port ({self.http_redirect_port}) must differ from port")
        if self.db_pool_min_size > self.db_pool_max_size:
            raise SettingsError(
                f"db_pool_min_size ({self.db_pool_min_size}) must not exceed db_pool_max_size ({self.db_pool_max_size})"
            )

    @property
    def capability_list(self) -> list[str] | None:
        if self.model_capabilities is None:
            return None
        return [c.strip() for c in self.model_capabilities.split(",") if c.strip()]

    # Values that depend on the profile, resolved in one place.
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def provider(self) -> LlmProvider:
        if self.llm_provider:
            return self.llm_provider
        return "llamacpp" if self.profile == "embedded" else "ollama"

    @property
    def ollama_servers(self) -> list[str]:
        """Every Ollama server's URL: ollama_urls, else ollama_url alone."""
        if self.ollama_urls:
            return [u.strip().rstrip("/") for u in self.ollama_urls.split(",") if u.strip()]
        return [self.ollama_url.rstrip("/")] if self.ollama_url else []

    @property
    def logs_as_json(self) -> bool:
        return (self.log_format or ("console" if self.profile == "embedded" else "json")) == "json"

    @property
    def admin_key_path(self) -> Path:
        return Path(self.admin_key_file) if self.admin_key_file else self.data_path / "admin-key"

    @property
    def manifest_path(self) -> Path:
        if self.models_manifest:
            return Path(self.models_manifest)
        return Path(__file__).resolve().parent.parent / "models" / "manifest.toml"


# Settings that production cannot do without, with an example of what is expected.
_REQUIRED_IN_PRODUCTION = {
    "database_url": "a PostgreSQL URL such as postgresql://appliance@db.lan:5432/appliance",
    "chroma_url": "the Chroma server's URL such as http://vectors.lan:8001",
}
_REQUIRED_FOR_OLLAMA = {
    "ollama_url": "the Ollama server's URL such as http://llm.lan:11434 (or APPLIANCE_OLLAMA_URLS: several)",
    "ollama_model": "the model name pinned in models/manifest.toml, such as qwen2.5:3b-instruct",
}


def field_names() -> tuple[str, ...]:
    return Settings.__struct_fields__


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(env: Mapping[str, str] | None = None, config_file: str | Path | None = None) -> Settings:
    """Build the settings from a TOML file (optional) and the environment."""
    env = os.environ if env is None else env
    config_file = config_file or env.get(CONFIG_ENV)
    raw: dict[str, object] = {}
    origin: dict[str, str] = {}

    if config_file:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"{CONFIG_ENV}: the settings file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path} is not valid TOML: {exc}") from None
        for key, value in data.items():
            origin[key] = f"{key} in {path}"
            raw[key] = value

    known = set(field_names())
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise SettingsError(
                f"{name} is not a setting of the appliance; known settings: "
                + ", ".join(env_name(k) for k in sorted(known))
            )
        origin[key] = name
        raw[key] = None if value == "" else value

    unknown = sorted(set(raw) - known)
    if unknown:
        raise SettingsError(
            f"{origin[unknown[0]]} is not a setting of the appliance; known settings: " + ", ".join(sorted(known))
        )

    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_explain(exc, origin)) from None

    _check_profile(settings, origin)
    return settings


def _check_profile(settings: Settings, origin: Mapping[str, str]) -> None:
    required: dict[str, str] = {}
    if settings.profile == "production":
        required |= _REQUIRED_IN_PRODUCTION
    if settings.provider == "ollama":
        required |= _REQUIRED_FOR_OLLAMA
    for key, expected in required.items():
        if key == "ollama_url" and settings.ollama_urls:
            continue  # several servers stand for one
        if not getattr(settings, key):
            raise SettingsError(
                f"{env_name(key)} is required with profile={settings.profile} and "
                f"llm_provider={settings.provider}: set it to {expected}"
            )
    for key in ("database_url",):
        value = getattr(settings, key)
        if value and not re.match(r"^postgres(ql)?://", value):
            raise SettingsError(f"{origin.get(key, env_name(key))} must be a postgresql:// URL, got {value!r}")
    urls = [("chroma_url", settings.chroma_url), ("ollama_url", settings.ollama_url)]
    urls += [("ollama_urls", u) for u in (settings.ollama_servers if settings.ollama_urls else [])]
    for key, value in urls:
        if value and not re.match(r"^https?://[^/]+", value):
            raise SettingsError(f"{origin.get(key, env_name(key))} must be an http:// or https:// URL, got {value!r}")
    if settings.ollama_urls is not None and not settings.ollama_servers:
        raise SettingsError(f"{origin.get('ollama_urls', env_name('ollama_urls'))} names no URL")


def _explain(exc: msgspec.ValidationError, origin: Mapping[str, str]) -> str:
    """Turn msgspec's "... - at `$.port`" into a message naming the user's key."""
    text = str(exc)
    match = re.search(r"at `\$\.(\w+)`", text)
    if not match:
        return f"invalid settings: {text}"
    key = match.group(1)
    where = origin.get(key, env_name(key))
    problem = text[: match.start()].rstrip(" -")
    hint = _expected(key)
    return f"{where}: {problem}" + (f" (expected {hint})" if hint else "")


def _expected(key: str) -> str:
    hints = typing.get_type_hints(Settings, include_extras=True)
    hint = hints.get(key)
    for arg in (hint, *typing.get_args(hint)):
        if typing.get_origin(arg) is Literal:
            return "one of " + ", ".join(repr(v) for v in typing.get_args(arg))
        if typing.get_origin(arg) is Annotated:
            base, *metas = typing.get_args(arg)
            bounds = [
                f"{label} {getattr(m, attr)}"
                for m in metas
                for attr, label in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                if getattr(m, attr, None) is not None
            ]
            return f"{base.__name__} " + " and ".join(bounds)
    if hint in (int, float, str, bool):
        return hint.__name__
    return ""
