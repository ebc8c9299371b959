"""The appliance's own tables, created by numbered migrations.

Each migration runs once, in its own transaction, under an advisory lock, so
several processes starting together apply it exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NamedTuple

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

# Append only: a released migration is never edited.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "threads and api keys",
        """
        CREATE TABLE threads (
            thread_id   uuid PRIMARY KEY,
            tenant      text NOT NULL,
            metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
            status      text NOT NULL DEFAULT 'idle'
                        CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX threads_tenant_updated_idx ON threads (tenant, updated_at DESC);
        CREATE INDEX threads_metadata_idx ON threads USING gin (metadata jsonb_path_ops);

        CREATE TABLE api_keys (
            key_id      uuid PRIMARY KEY,
            tenant      text NOT NULL,
            name        text NOT NULL DEFAULT '',
            prefix      text NOT NULL,
            key_hash    bytea NOT NULL UNIQUE,
            is_admin    boolean NOT NULL DEFAULT false,
            created_at  timestamptz NOT NULL DEFAULT now(),
            revoked_at  timestamptz
        );
        CREATE INDEX api_keys_tenant_idx ON api_keys (tenant);

        -- The advisory lock that lets one run at a time work on a thread.
        CREATE FUNCTION thread_lock_key(uuid) RETURNS bigint
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$ SELECT hashtextextended($1::text, 7369) $$;
        """,
    ),
    (
        "knowledge bases, documents and their chunks",
        """
        CREATE TABLE knowledge_bases (
            knowledge_base_id uuid PRIMARY KEY,
            tenant      text NOT NULL,
            name        text NOT NULL,
            description text NOT NULL DEFAULT '',
            metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now(),
            UNIQUE (tenant, name)
        );

        -- One row a source file; generation counts its versions. The chunks
        -- table holds only the live generation's chunks, and it is the gate
        -- every query passes: vectors in Chroma that it does not list (an old
        -- generation, or a crashed ingestion's) are never returned.
        CREATE TABLE documents (
            document_id       uuid PRIMARY KEY,
            knowledge_base_id uuid NOT NULL REFERENCES knowledge_bases ON DELETE CASCADE,
            source       text NOT NULL,
            title        text NOT NULL DEFAULT '',
            media_type   text NOT NULL,
            content_hash text NOT NULL,
            size_bytes   bigint NOT NULL,
            pages        integer,
            chunk_count  integer NOT NULL DEFAULT 0,
            generation   integer NOT NULL DEFAULT 1,
            status       text NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
            error        text,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            UNIQUE (knowledge_base_id, source)
        );

        CREATE TABLE chunks (
            chunk_id          text PRIMARY KEY,
            document_id       uuid NOT NULL REFERENCES documents ON DELETE CASCADE,
            knowledge_base_id uuid NOT NULL,
            chunk_index  integer NOT NULL,
            heading      text NOT NULL DEFAULT '',
            page         integer,
            text         text NOT NULL,
            search       tsvector GENERATED ALWAYS AS
                         (to_tsvector('english', heading || ' ' || text)) STORED
        );
        CREATE INDEX chunks_document_idx ON chunks (document_id, chunk_index);
        CREATE INDEX chunks_knowledge_base_idx ON chunks (knowledge_base_id);
        CREATE INDEX chunks_search_idx ON chunks USING gin (search);
        """,
    ),
    (
        "durable runs, their stream events, and the workers that run them",
        """
        -- A worker is a process that executes runs. It holds a session advisory
        -- lock on worker_lock_key(worker_id) while alive, so a crashed worker is
        -- seen at once (PostgreSQL drops the lock with the connection); the
        -- heartbeat catches one that hangs.
        CREATE TABLE workers (
            worker_id    uuid PRIMARY KEY,
            host         text NOT NULL,
            pid          integer NOT NULL,
            started_at   timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE FUNCTION worker_lock_key(uuid) RETURNS bigint
            LANGUAGE sql IMMUTABLE PARALLEL SAFE
            AS $$ SELECT hashtextextended($1::text, 8191) $$;

        -- seq orders runs strictly first in, first out on a thread.
        CREATE TABLE runs (
            run_id       uuid PRIMARY KEY,
            seq          bigserial UNIQUE,
            thread_id    uuid NOT NULL REFERENCES threads ON DELETE CASCADE,
            tenant       text NOT NULL,
            assistant_id text NOT NULL,
            status       text NOT NULL CHECK (status IN
                         ('pending', 'running', 'success', 'error', 'timeout', 'interrupted')),
            kwargs       jsonb NOT NULL,
            metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
            multitask_strategy text NOT NULL,
            attempt      integer NOT NULL DEFAULT 0,
            worker_id    uuid,
            available_at timestamptz NOT NULL DEFAULT now(),
            cancel_action text CHECK (cancel_action IN ('interrupt', 'rollback')),
            error        jsonb,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            ended_at     timestamptz
        );
        CREATE INDEX runs_thread_idx ON runs (thread_id, seq);
        CREATE INDEX runs_pending_idx ON runs (seq) WHERE status = 'pending';
        CREATE INDEX runs_worker_idx ON runs (worker_id) WHERE status = 'running';
        -- At most one run executes per thread, whatever the number of processes.
        CREATE UNIQUE INDEX runs_one_running_per_thread ON runs (thread_id) WHERE status = 'running';

        -- A run's stream, kept for replay (Last-Event-ID) and for clients
        -- that join from another process. attempt restarts the count when a
        -- run is retried, so ids stay unique and ordered.
        -- No foreign key: events are written in batches across runs, and one
        -- run erased meanwhile must not fail the batch. Orphans are swept.
        CREATE TABLE run_events (
            run_id   uuid NOT NULL,
            attempt  integer NOT NULL,
            seq      integer NOT NULL,
            event    text NOT NULL,
            data     bytea NOT NULL,
            PRIMARY KEY (run_id, attempt, seq)
        );
        """,
    ),
    (
        "documents whose vectors Chroma does not hold yet",
        """
        -- false: published while Chroma was unreachable; lexical search finds
        -- the chunks already, and the reconciler indexes their vectors later.
        ALTER TABLE documents ADD COLUMN indexed boolean NOT NULL DEFAULT true;
        CREATE INDEX documents_unindexed_idx ON documents (updated_at) WHERE NOT indexed;
        """,
    ),
    (
        "rate limits and the audit log",
        """
        -- Which key queued a run, so runs in flight are counted per key too.
        ALTER TABLE runs ADD COLUMN key_id uuid;
        CREATE INDEX runs_inflight_tenant_idx ON runs (tenant, key_id) WHERE status IN ('pending', 'running');

        -- A tenant's own limits; a limit it does not name takes the appliance's setting.
        CREATE TABLE tenant_limits (
            tenant      text PRIMARY KEY,
            limits      jsonb NOT NULL,
            updated_at  timestamptz NOT NULL DEFAULT now()
        );

        -- Requests per minute, counted in fixed one-minute windows by every
        -- process alike; scope is 'key:<id>' or 'tenant:<name>'.
        CREATE TABLE request_counts (
            scope         text NOT NULL,
            window_start  timestamptz NOT NULL,
            n             integer NOT NULL,
            PRIMARY KEY (scope, window_start)
        );

        -- Uploads being ingested now; a row outlives a crashed process only until expires_at.
        CREATE TABLE uploads_in_flight (
            upload_id   uuid PRIMARY KEY,
            tenant      text NOT NULL,
            key_id      uuid,
            expires_at  timestamptz NOT NULL
        );
        CREATE INDEX uploads_in_flight_tenant_idx ON uploads_in_flight (tenant);

        -- Who did what, and when: never a secret, a document's text or a question.
        CREATE TABLE audit_log (
            event_id      bigserial PRIMARY KEY,
            at            timestamptz NOT NULL DEFAULT now(),
            action        text NOT NULL,
            tenant        text,
            target        text,
            actor         text NOT NULL,
            actor_key_id  uuid,
            actor_tenant  text,
            source        text,
            detail        jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE INDEX audit_log_at_idx ON audit_log (at);
        CREATE INDEX audit_log_tenant_at_idx ON audit_log (tenant, at);
        """,
    ),
    (
        "assistants and their versions",
        """
        -- An assistant, as its current version has it: the one runs use.
        CREATE TABLE assistants (
            assistant_id  uuid PRIMARY KEY,
            tenant        text NOT NULL,
            graph_id      text NOT NULL,
            name          text NOT NULL,
            version       integer NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (tenant, name)
        );
        -- Every version ever made, whole; versions are never changed, only added.
        CREATE TABLE assistant_versions (
            assistant_id  uuid NOT NULL REFERENCES assistants ON DELETE CASCADE,
            version       integer NOT NULL,
            graph_id      text NOT NULL,
            name          text NOT NULL,
            description   text,
            config        jsonb NOT NULL DEFAULT '{}'::jsonb,
            context       jsonb NOT NULL DEFAULT '{}'::jsonb,
            metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (assistant_id, version)
        );
        CREATE INDEX assistant_versions_metadata_idx ON assistant_versions USING gin (metadata jsonb_path_ops);
        """,
    ),
    (
        "tool servers and the tool call ledger",
        """
        -- An MCP server an admin registered. headers hold secrets: never shown.
        -- allowed_tools NULL is every tool the server lists; tenants ['*'] every tenant.
        CREATE TABLE tool_servers (
            server_id     uuid PRIMARY KEY,
            name          text NOT NULL UNIQUE,
            url           text NOT NULL,
            headers       jsonb NOT NULL DEFAULT '{}'::jsonb,
            allowed_tools text[],
            requires_approval text[] NOT NULL DEFAULT '{}',
            idempotent    text[] NOT NULL DEFAULT '{}',
            tenants       text[] NOT NULL DEFAULT '{*}',
            tools         jsonb NOT NULL DEFAULT '[]'::jsonb,
            discovered_at timestamptz,
            discovery_error text,
            created_at    timestamptz NOT NULL DEFAULT now(),
            updated_at    timestamptz NOT NULL DEFAULT now()
        );

        -- Every tool call a run sends, written before it is sent ('sent') and
        -- again with its result ('done'): a retried run reads what happened
        -- instead of sending a call with side effects twice.
        CREATE TABLE tool_calls (
            run_id         uuid NOT NULL,
            tool_call_id   text NOT NULL,
            thread_id      uuid NOT NULL REFERENCES threads ON DELETE CASCADE,
            tool           text NOT NULL,
            arguments_hash text NOT NULL,
            state          text NOT NULL CHECK (state IN ('sent', 'done')),
            result         jsonb,
            sent_at        timestamptz NOT NULL DEFAULT now(),
            done_at        timestamptz,
            PRIMARY KEY (run_id, tool_call_id)
        );
        CREATE INDEX tool_calls_thread_idx ON tool_calls (thread_id);
        """,
    ),
    (
        "the message archive",
        """
        -- Messages folded out of a conversation's checkpointed window, in
        -- immutable batches: each names the batch before it, and a checkpoint
        -- names its newest (state key archive_head), so a fork or a copy reads
        -- the archive as it was at its own checkpoint. thread_id is text, as
        -- in LangGraph's checkpoint tables (the conversation's other rows).
        CREATE TABLE message_archive (
            thread_id   text NOT NULL,
            batch_id    uuid NOT NULL,
            parent      uuid,
            first_index integer NOT NULL,
            size        integer NOT NULL,
            type        text NOT NULL,
            messages    bytea NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (thread_id, batch_id)
        );
        """,
    ),
    (
        "rendered thread states",
        """
        -- The latest state of a thread as GET /threads/{id}/state answers it,
        -- with the checkpoint it renders (store/state_renderings.py); served
        -- again only while that checkpoint is the thread's latest.
        CREATE TABLE thread_state_renderings (
            thread_id     uuid PRIMARY KEY REFERENCES threads (thread_id) ON DELETE CASCADE,
            checkpoint_id text NOT NULL,
            format        integer NOT NULL,
            body          bytea NOT NULL
        );
        """,
    ),
]

_LOCK_KEY = 0x6170706C69616E63  # "applianc"


class Migrated(NamedTuple):
    before: int
    after: int


@asynccontextmanager
async def schema_lock(pool: AsyncConnectionPool) -> AsyncIterator[AsyncConnection]:
    """One process at a time changes the schema: app hosts start together.

    Waiting polls a try-lock between statements, never inside one: LangGraph's
    migrations CREATE INDEX CONCURRENTLY, which waits for every transaction in
    flight, and a blocked pg_advisory_lock() call would be one (a deadlock the
    server cannot see, since the lock's holder is another session)."""
    async with pool.connection() as conn:
        while not (await (await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok", (_LOCK_KEY,))).fetchone())["ok"]:
            await asyncio.sleep(0.05)
        try:
            yield conn
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))


async def migrate(pool: AsyncConnectionPool) -> Migrated:
    """Apply what is missing; return the schema versions before and now."""
    async with schema_lock(pool) as conn:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS appliance_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        row = await (await conn.execute("SELECT coalesce(max(version), 0) AS v FROM appliance_migrations")).fetchone()
        current = before = row["v"]
        for version, (name, sql) in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            async with conn.transaction():
                await conn.execute(sql, prepare=False)
                await conn.execute("INSERT INTO appliance_migrations (version, name) VALUES (%s, %s)", (version, name))
            current = version
        return Migrated(before, current)
