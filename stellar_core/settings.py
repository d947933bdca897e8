"""All configuration. The only module that reads ``STELLAR_*`` environment variables.

Every field has a default, so ``StellarMemory()`` works with no configuration at all.
"""

from __future__ import annotations

import os
import secrets
import socket
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PROCESS = (0, "")  # (pid, random token) of this process's default agent id


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stellar"


class Settings(BaseSettings):
    """Stellar Memory settings; each can be set as ``STELLAR_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="STELLAR_", extra="forbid", frozen=True)

    # --- where and who -------------------------------------------------------------------
    home: Path = Field(default_factory=_default_home, description="Data directory of the embedded default.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means a SQLite file in `home`."
    )
    database_schema: str | None = Field(
        default=None,
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="PostgreSQL schema for Stellar's tables (created if missing); unset: `public`.",
    )
    db_pool_size: int = Field(default=5, ge=1, description="PostgreSQL: connections kept open.")
    db_max_overflow: int = Field(default=10, ge=0, description="PostgreSQL: extra connections at peaks.")
    db_pool_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for a free connection.")
    db_pool_recycle: float = Field(
        default=1800.0, description="Seconds after which a connection is replaced (-1: never)."
    )
    db_pool_pre_ping: bool = Field(
        default=True, description="Check a connection before use, so a restarted server is survived."
    )
    db_index_build_memory: str = Field(
        default="1GB",
        pattern=r"^[1-9][0-9]*(kB|MB|GB)$",
        description="PostgreSQL: maintenance_work_mem for building the HNSW graph after a bulk "
        "load (a graph that does not fit is built on disk, several times slower).",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for the shared read-through cache (e.g. redis://host:6379/0); unset: none.",
    )
    cache_ttl_seconds: float = Field(default=300.0, gt=0, description="Longest a cached memory is kept.")
    cache_zones: list[Literal["core", "inner", "outer", "belt", "cloud"]] = Field(
        default=["core", "inner"], description="Zones whose memories are cached (the hot ones)."
    )
    cache_verify: bool = Field(
        default=True,
        description="Check each cache hit against the memory's version in the database (one indexed "
        "read): never older than the database, whatever happened to Redis. Off: a change that a "
        "writer could not delete from an unreachable Redis stays visible until the TTL.",
    )
    namespace: str = Field(default="default", description="Namespace used when a call names none.")
    agent_id: str | None = Field(
        default=None,
        description="Identity of this agent when a call names no principal; unset: a distinct id "
        "per process, such as `cli-myhost-3f9a2c` (two processes must never share one).",
    )

    # --- security (decision 0028) ----------------------------------------------------------
    access_control: bool = Field(
        default=False,
        description="Check every call against the principal's roles per namespace (grants); "
        "off: one implicit admin, for a single user's memory.",
    )
    admins: list[str] = Field(
        default=[], description="Principals that are admins of every namespace, whatever the grants say."
    )
    grants_refresh_seconds: float = Field(
        default=5.0, gt=0, description="How soon a grant changed by another process takes effect here."
    )
    audit_log: bool = Field(default=False, description="Record every access (reads too) in the audit log.")
    audit_retention_days: float = Field(default=365.0, gt=0, description="Days audit records are kept.")
    encryption_key: SecretStr | None = Field(
        default=None, description="A base64 AES-256 key (32 bytes) for memories stored encrypted."
    )
    encryption_keys: dict[str, SecretStr] = Field(
        default={}, description='Keys by id, as JSON: {"k2": "<base64>", ...} (key rotation).'
    )
    encryption_key_file: Path | None = Field(
        default=None, description='A JSON key file: {"primary": "<id>", "keys": {"<id>": "<base64>"}}.'
    )
    encryption_primary_key: str | None = Field(
        default=None, description="The key id new values are sealed with (default: the file's, or the last)."
    )
    auto_encrypt_tags: list[str] = Field(
        default=["secret", "sensitive", "api_key"],
        description="Memories stored with any of these tags are encrypted.",
    )
    encryption_strict: bool = Field(
        default=False,
        description="Encrypted memories get no keyed search words and padded lengths: recall finds "
        "them by meaning only (decision 0028).",
    )

    # --- embeddings ----------------------------------------------------------------------
    embedding_provider: str = Field(
        default="sentence-transformers",
        description="'sentence-transformers' or 'openai' (any compatible API).",
    )
    embedding_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2", description="Model name for the provider."
    )
    embedding_url: str = Field(
        default="http://127.0.0.1:11434/v1",
        description="Base URL of an OpenAI-compatible embeddings API.",
    )
    embedding_api_key: str | None = Field(default=None, description="Bearer token for the embeddings API.")
    embedding_timeout: float = Field(
        default=30.0, gt=0, description="Seconds before an embeddings request fails."
    )
    embedding_batch_size: int = Field(default=64, ge=1, description="Texts per embedding call.")
    query_cache_size: int = Field(default=1024, ge=0, description="Query embeddings kept in memory.")

    # --- input limits --------------------------------------------------------------------
    max_content_chars: int = Field(default=100_000, ge=1, description="Longest content accepted by store().")

    # --- ingestion ------------------------------------------------------------------------
    chunk_max_chars: int = Field(default=1200, ge=80, description="Longest chunk of an ingested document.")
    file_max_bytes: int = Field(
        default=20_000_000, ge=1, description="Largest file ingested (bytes read); larger ones are skipped."
    )
    web_timeout_seconds: float = Field(default=10.0, gt=0, description="Seconds before a fetch fails.")
    web_max_bytes: int = Field(default=5_000_000, ge=1, description="Largest response body read.")
    web_max_redirects: int = Field(default=5, ge=0, description="Redirects followed per fetch.")
    web_allow_hosts: list[str] = Field(
        default=[],
        description="Hosts, addresses or networks (CIDR) fetched even though private or local; "
        "every other private, loopback or link-local address is refused (SSRF guard).",
    )
    web_user_agent: str = Field(default="StellarMemory/0.1", description="User-Agent of fetches.")

    # --- summarisation and dedup -----------------------------------------------------------
    summarizer: Literal["extractive", "llm"] = Field(
        default="extractive", description="'extractive' (no LLM) or 'llm' (OpenAI-compatible API)."
    )
    summary_min_chars: int = Field(
        default=2_000, ge=1, description="Documents and memories at least this long get a summary."
    )
    summary_max_chars: int = Field(default=600, ge=50, description="Longest summary written.")
    llm_url: str = Field(
        default="http://127.0.0.1:11434/v1",
        description="Base URL of an OpenAI-compatible chat-completions API (OpenAI, Ollama, vLLM).",
    )
    llm_model: str = Field(default="llama3.2", description="Model the LLM summariser asks for.")
    llm_api_key: str | None = Field(default=None, description="Bearer token for the LLM API.")
    llm_timeout_seconds: float = Field(default=60.0, gt=0, description="Seconds before an LLM call fails.")
    dedup_threshold: float = Field(
        default=0.95, gt=0, le=1, description="Cosine similarity at which memories are near-duplicates."
    )

    # --- memory function -----------------------------------------------------------------
    weight_recall: float = Field(default=0.30, ge=0, description="Weight of the log-scaled recall count.")
    weight_freshness: float = Field(default=0.40, ge=0, description="Weight of freshness since last access.")
    weight_importance: float = Field(default=0.30, ge=0, description="Weight of caller-given importance.")
    weight_context: float = Field(
        default=0.25, ge=0, description="Weight of context similarity, when a context is given."
    )
    recall_saturation: int = Field(
        default=20, ge=1, description="Recall count at which the frequency term is 1."
    )
    half_life_days: float = Field(
        default=7.0, gt=0, description="Freshness half-life of an importance-0 memory."
    )
    half_life_importance_factor: float = Field(
        default=4.0, ge=0, description="Half-life grows by (1 + factor * importance)."
    )

    # --- zones: score thresholds and default capacities per namespace -----------------------
    core_threshold: float = Field(default=0.70, description="Lowest score in Core.")
    inner_threshold: float = Field(default=0.50, description="Lowest score in Inner.")
    outer_threshold: float = Field(default=0.30, description="Lowest score in Outer.")
    belt_threshold: float = Field(default=0.18, description="Lowest score in the Belt; below is Cloud.")
    core_capacity: int = Field(default=200, ge=0, description="Most memories in Core per namespace.")
    inner_capacity: int = Field(default=2_000, ge=0, description="Most memories in Inner per namespace.")
    outer_capacity: int = Field(default=20_000, ge=0, description="Most memories in Outer per namespace.")
    belt_capacity: int = Field(default=200_000, ge=0, description="Most memories in the Belt per namespace.")

    # --- forgetting ----------------------------------------------------------------------
    forget_after_days: float = Field(
        default=30.0,
        gt=0,
        description="Idle days in Cloud before an importance-0 memory is forgotten.",
    )
    forget_importance_factor: float = Field(
        default=5.0,
        ge=0,
        description="Idle time before forgetting grows by (1 + factor * importance).",
    )
    purge_after_days: float = Field(
        default=30.0, ge=0, description="Days a tombstone is kept before purging."
    )

    # --- recall --------------------------------------------------------------------------
    recall_candidates: int = Field(
        default=50, ge=1, description="Candidates taken from each index before fusion (at least 3 * k)."
    )  # 100 scored the same on LoCoMo and cost the lexical arm a third more at 1M (decision 0017)
    lexical_weight: float = Field(default=0.6, ge=0, description="Weight of the lexical arm in fusion.")
    vector_weight: float = Field(default=0.4, ge=0, description="Weight of the vector arm in fusion.")
    thread_context_weight: float = Field(
        default=0.35,
        ge=0,
        le=1,
        description="Weight of thread neighbours in a memory's searchable representation.",
    )
    thread_context_window: int = Field(
        default=2,
        ge=0,
        le=5,
        description="Thread neighbours on each side that form a memory's context.",
    )
    zone_boost: float = Field(
        default=0.06, ge=0, le=0.5, description="Largest relative boost for a Core memory."
    )
    recency_boost: float = Field(
        default=0.04, ge=0, le=0.5, description="Largest relative boost for a just-accessed memory."
    )
    graph_decay: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Recall expansion: a linked memory scores this share (times the link's weight) "
        "of the memory it was reached from, hop after hop.",
    )
    graph_floor: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Recall expansion spreads over links while a memory's score stays at or above this.",
    )
    hnsw_min_rows: int = Field(
        default=20_000,
        ge=1,
        description="Namespaces this large get an HNSW index; smaller ones exact search.",
    )
    stats_flush_seconds: float = Field(
        default=1.0, gt=0, description="How often batched recall statistics are written."
    )

    # --- sync between replicas (decision 0030) ----------------------------------------------
    sync_url: str | None = Field(
        default=None,
        description="Redis that carries change events between replicas (e.g. redis://hub:6379/1); "
        "unset: this database syncs with no other. It keeps streams: give it persistence (AOF).",
    )
    sync_background: bool = Field(
        default=False,
        description="Sync inside every StellarMemory (a publishing and a consuming thread), for agents "
        "that run no sync flow.",
    )
    sync_namespaces: list[str] = Field(
        default=[],
        description="Namespaces to replicate; empty: every one on the streams the principal may read.",
    )
    sync_batch: int = Field(default=500, ge=1, le=10_000, description="Events applied per transaction.")
    sync_block_ms: int = Field(
        default=1000, ge=1, description="How long a consumer waits on the streams for new events."
    )
    sync_claim_idle_seconds: float = Field(
        default=30.0, gt=0,
        description="Events a consumer read but did not acknowledge for this long are taken over by "
        "another (it died mid-batch); consumers idle longer do not count as alive.",
    )  # fmt: skip
    sync_retention_hours: float = Field(
        default=24.0,
        gt=0,
        description="Stream entries every replica has applied are trimmed after this long.",
    )
    sync_max_retention_hours: float = Field(
        default=168.0, gt=0,
        description="Stream entries older than this are trimmed even if a replica has not applied them "
        "(it bootstraps again from a snapshot).",
    )  # fmt: skip
    sync_secret: SecretStr | None = Field(
        default=None, description="Shared secret that signs events (HMAC-SHA256); an unsigned one is refused."
    )
    sync_snapshot_url: str | None = Field(
        default=None,
        description="Database a replica bootstraps from when it starts late or fell behind the streams' "
        "trim point (the hub's URL); unset: such a replica stops with an error saying so.",
    )
    sync_vectors: bool = Field(
        default=True, description="Send each memory's vector with its event (receivers need not embed)."
    )
    sync_prefix: str = Field(default="stellar:sync", description="Prefix of the Redis keys sync uses.")

    # --- dashboard -----------------------------------------------------------------------
    dashboard_orbit_sample: int = Field(
        default=300, ge=1, le=10_000, description="Dashboard: memories drawn per zone (the highest scored)."
    )
    dashboard_address: str = Field(
        default="127.0.0.1",
        description="Dashboard: the address it listens on; 0.0.0.0 offers it to the network.",
    )
    dashboard_port: int = Field(default=8501, ge=1, le=65535, description="Dashboard: its port.")
    dashboard_refresh_seconds: float = Field(
        default=2.0, gt=0, description="Dashboard: how often the live event feed refreshes."
    )

    # --- servers: the HTTP API (stellar serve; decision 0032) and the MCP server (0033) ------
    server_host: str = Field(
        default="127.0.0.1",
        description="HTTP API: the address it listens on; 0.0.0.0 offers it to the network.",
    )
    server_port: int = Field(default=8080, ge=1, le=65535, description="HTTP API: its port.")
    server_max_body_bytes: int = Field(
        default=1_048_576, ge=1024,
        description="Servers (HTTP API, MCP): largest request body (bytes); larger ones get 413.",
    )  # fmt: skip
    server_auth_cache_seconds: float = Field(
        default=2.0, ge=0,
        description="HTTP API: how long an API key, once checked, is trusted without asking the database "
        "(never longer than grants_refresh_seconds: a revoked key stops working within that).",
    )  # fmt: skip
    server_poll_seconds: float = Field(
        default=0.5, gt=0,
        description="HTTP API event stream: how often the change log is looked at for changes written by "
        "other processes (this process's own wake the stream at once).",
    )  # fmt: skip
    server_heartbeat_seconds: float = Field(
        default=15.0, gt=0, description="HTTP API event stream: a keep-alive comment after this long idle."
    )
    server_stream_batch: int = Field(
        default=500, ge=1, le=10_000,
        description="HTTP API event stream: events read (and held) at once per connection.",
    )  # fmt: skip

    @model_validator(mode="after")
    def _check(self) -> Settings:
        t = [self.core_threshold, self.inner_threshold, self.outer_threshold, self.belt_threshold]
        if not all(a > b for a, b in pairwise(t)) or not 0 < t[-1] < t[0] <= 1:
            raise ValueError("zone thresholds must fall strictly from core to belt, within (0, 1]")
        if self.weight_recall + self.weight_freshness + self.weight_importance <= 0:
            raise ValueError("memory-function weights must not all be zero")
        return self

    def agent(self, kind: str = "agent") -> str:
        """``agent_id``, or this process's own id: ``<kind>-<host>-<random>``. Vector clocks
        count changes per agent id, so two processes writing under one id would lose counts."""
        if self.agent_id:
            return self.agent_id
        global _PROCESS
        if _PROCESS[0] != os.getpid():  # a forked child is another agent
            _PROCESS = (os.getpid(), secrets.token_hex(3))
        return f"{kind}-{socket.gethostname()[:48]}-{_PROCESS[1]}"

    def sqlalchemy_url(self) -> str:
        """The database URL; the embedded default is a SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'stellar.db'}"
