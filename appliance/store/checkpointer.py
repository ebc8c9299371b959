"""LangGraph's PostgreSQL checkpointer, adapted to a connection pool.

``AsyncPostgresSaver`` takes one asyncio lock around every call, even when it
is given a pool (langgraph issue 7259), so all threads' reads and writes queue
behind each other. With a pool each call gets its own connection, so the lock
guards nothing; ``PooledPostgresSaver`` skips it (bench/checkpointer_lock.py
measures the difference).

It also writes a checkpoint with its blobs, and a task's writes, in one
statement each: LangGraph sends a statement a row (``executemany`` in a
pipeline), and a turn writes about thirty rows over seven calls. Within a run
(``writes_with_next_checkpoint``) a step's writes go into the statement of the
checkpoint that follows the step, and the run's input checkpoint waits for the
turn's first node's: a plain turn's seven calls are one statement. A run's
last checkpoint can wait for its end, and go in the transaction that records it.
And it serialises them on the event loop, where LangGraph hops to a thread for
each call: a thread's state is bounded by its memory window, so the largest
snapshot takes about a millisecond to encode, less than seven hops a turn cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
)
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.serde.types import _DeltaSnapshot
from langgraph.constants import TASKS
from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from appliance.store.arrays import ByteaArray, Int4Array, TextArray, as_columns
from appliance.store.database import UNFLUSHED_COMMIT, Statement
from appliance.store.migrations import schema_lock
from appliance.store.serde import CheckpointSerializer
from appliance.store.windows import Windows

# Where a conversation's rows live: LangGraph's tables and the message archive.
CONVERSATION_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes", "message_archive")
# Every row of a thread's conversation, in one statement: one wait on PostgreSQL
# where a transaction of a statement a table waited six times (a stateless
# run, as each OpenAI chat completion is, ends by deleting its thread).
_DELETE_CONVERSATION = (
    "WITH "
    + ", ".join(
        f"gone_{n} AS (DELETE FROM {t} WHERE thread_id = %(thread_id)s)" for n, t in enumerate(CONVERSATION_TABLES)
    )
    + " SELECT 1"
)


# Channels whose value stored apart (``store_apart``) this process knows is stored, at most.
APART_KNOWN = 4096
# How many checkpoints the walk to a DeltaChannel's last snapshot reads at a time.
DELTA_PAGE = 64
# Where a walk stops at a window this process has kept (store/windows.py), as at a stored value.
_KEPT = object()
_NO_SEED = object()

# One channel's writes at each checkpoint of a chain, each found through the
# writes' primary key (OFFSET 0 keeps the lateral lookup from being flattened).
_CHAIN_WRITES = """
SELECT 'w'::text AS _kind, w.checkpoint_id, w.channel, w.type, w.blob, w.task_id, w.task_path, w.idx,
       NULL::text AS version
FROM unnest(%s::text[]) AS chain(checkpoint_id)
CROSS JOIN LATERAL (
    SELECT * FROM checkpoint_writes cw
    WHERE cw.thread_id = %s AND cw.checkpoint_ns = %s AND cw.checkpoint_id = chain.checkpoint_id AND cw.channel = %s
    OFFSET 0
) w"""
# The snapshot the chain starts from.
_SEED_BLOB = """
SELECT 'b'::text AS _kind, NULL::text AS checkpoint_id, channel, type, blob, NULL::text AS task_id,
       NULL::text AS task_path, NULL::int AS idx, version
FROM checkpoint_blobs WHERE thread_id = %s AND checkpoint_ns = %s AND channel = %s AND version = %s"""


def _stage1_sql(channels: int, *, first_page: bool) -> str:
    """LangGraph's first stage of the walk (``_build_delta_stage1_sql``: each
    checkpoint's version of each channel, and whether a value is stored for
    it), the same columns and parameters, with the probe for a stored value as
    a scalar subquery. LangGraph's EXISTS was planned as a hashed subplan: a
    scan of every blob of that channel in the database, on every read, so a
    read grew with the whole database."""
    columns = "".join(
        f""", c.checkpoint -> 'channel_versions' ->> %s AS ver_{i},
        (SELECT true FROM checkpoint_blobs b
         WHERE b.thread_id = c.thread_id AND b.checkpoint_ns = c.checkpoint_ns AND b.channel = %s
           AND b.version = c.checkpoint -> 'channel_versions' ->> %s AND b.type <> 'empty'
         LIMIT 1) IS NOT NULL AS hb_{i},
        c.checkpoint -> 'channel_values' -> %s AS inline_{i}"""
        for i in range(channels)
    )
    return f"""SELECT c.checkpoint_id, c.parent_checkpoint_id{columns}
FROM checkpoints c
WHERE c.thread_id = %s AND c.checkpoint_ns = %s AND c.checkpoint_id {"<=" if first_page else "<"} %s
ORDER BY c.checkpoint_id DESC LIMIT %s"""


# A checkpoint, the blobs of its new channel versions and (within a run, see
# ``writes_with_next_checkpoint``) the writes of the step before it, in one
# statement: a data-modifying WITH runs once, whether or not the rest reads it.
# The columns and conflict rules are LangGraph's (UPSERT_CHECKPOINT_BLOBS_SQL,
# UPSERT_CHECKPOINTS_SQL, UPSERT_ and INSERT_CHECKPOINT_WRITES_SQL).
def _put_checkpoint_sql(p: str = "") -> str:
    """A checkpoint's row, its parameters named with the prefix ``p``."""
    return f"""
INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, checkpoint, metadata)
VALUES (%(thread_id)s, %(ns)s, %({p}checkpoint_id)s, %({p}parent_id)s, %({p}checkpoint)s, %({p}metadata)s)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id)
DO UPDATE SET checkpoint = EXCLUDED.checkpoint, metadata = EXCLUDED.metadata"""


_PUT_BLOBS = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %(thread_id)s, %(ns)s, b.channel, b.version, b.type, b.blob
FROM unnest(%(channels)s::text[], %(versions)s::text[], %(types)s::text[], %(blobs)s::bytea[])
    AS b(channel, version, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING"""


# The prefix of the arrays of writes that replace what is there (True) or keep it (False).
_WRITES_PREFIX = {True: "r_", False: "k_"}


def _put_writes_sql(replace: bool) -> str:
    """Writes of any checkpoints of one thread, of any tasks: ``replace``, a
    batch of special channels only (LangGraph upserts those), else the rows
    already there stay. Its arrays are named with its ``_WRITES_PREFIX``."""
    p = _WRITES_PREFIX[replace]
    return f"""
INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob)
SELECT %(thread_id)s, %(ns)s, w.checkpoint_id, w.task_id, w.task_path, w.idx, w.channel, w.type, w.blob
FROM unnest(%({p}checkpoint_ids)s::text[], %({p}task_ids)s::text[], %({p}task_paths)s::text[], %({p}idx)s::int[],
            %({p}channels)s::text[], %({p}types)s::text[], %({p}blobs)s::bytea[])
    AS w(checkpoint_id, task_id, task_path, idx, channel, type, blob)
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO """ + (
        "UPDATE SET channel = EXCLUDED.channel, type = EXCLUDED.type, blob = EXCLUDED.blob" if replace else "NOTHING"
    )


_REPLACE_WRITES, _KEEP_WRITES = _put_writes_sql(True), _put_writes_sql(False)


def _with(statement: str, **ctes: str) -> str:
    """``statement`` after the data-modifying ``ctes`` (name: statement) given."""
    if not ctes:
        return statement
    return "WITH " + ",\n".join(f"{name} AS ({cte})" for name, cte in ctes.items()) + statement


# A step's writes as ``_dump_writes`` makes them (their thread, namespace and
# checkpoint, the task's id and path, then idx, channel, type and blob), and
# whether they replace what is there (``_put_writes_sql``).
WriteRows = tuple[list[tuple[Any, ...]], bool]


def _writes(batches: Sequence[WriteRows]) -> tuple[dict[str, str], dict[str, Any]]:
    """``batches`` as the statements storing them (``_put_writes_sql``, a WITH
    each: name, statement) and their arrays. Several upserts of one row leave
    the last; of the rows kept as they are, the first stays."""
    ctes: dict[str, str] = {}
    params: dict[str, Any] = {}
    for name, replace in (("replaced", True), ("kept", False)):
        rows = [row for batch, kind in batches if kind == replace for row in batch]
        if not rows:
            continue
        if replace:
            rows = list({(row[2], row[3], row[5]): row for row in rows}.values())
        p = _WRITES_PREFIX[replace]
        ctes[name] = _REPLACE_WRITES if replace else _KEEP_WRITES
        params |= as_columns(
            rows,
            **{
                f"{p}checkpoint_ids": (2, TextArray),
                f"{p}task_ids": (3, TextArray),
                f"{p}task_paths": (4, TextArray),
                f"{p}idx": (5, Int4Array),
                f"{p}channels": (6, TextArray),
                f"{p}types": (7, TextArray),
                f"{p}blobs": (8, ByteaArray),
            },
        )
    return ctes, params


class CheckpointRow(NamedTuple):
    """A checkpoint as ``aput`` stores it: its row, the blobs of its new
    versions, and the values stored apart it carries (by channel, their version)."""

    thread_id: str
    ns: str
    checkpoint_id: str
    parent_id: str | None
    checkpoint: Jsonb
    metadata: Jsonb
    blobs: list[tuple[Any, ...]]
    apart: dict[str, str]
    source: str | None
    # The channels its step updated (LangGraph's ``updated_channels``), when it says.
    updated: frozenset[str] | None = None


def _statement(
    checkpoints: Sequence[CheckpointRow], writes: Sequence[WriteRows], *, unflushed: bool = False
) -> tuple[str, dict[str, Any]]:
    """Checkpoints of one thread (oldest first) with their blobs, and writes
    of its checkpoints, as one statement and its parameters; ``unflushed``,
    committed without waiting for the disk (``UNFLUSHED_COMMIT``)."""
    ctes: dict[str, str] = {}
    params: dict[str, Any] = {}
    blobs: dict[tuple[str, str], tuple[Any, ...]] = {}
    for i, row in enumerate(checkpoints):
        p = "" if i == len(checkpoints) - 1 else f"c{i}_"
        params |= {
            f"{p}checkpoint_id": row.checkpoint_id,
            f"{p}parent_id": row.parent_id,
            f"{p}checkpoint": row.checkpoint,
            f"{p}metadata": row.metadata,
        }
        if p:
            ctes[f"checkpoint_{i}"] = _put_checkpoint_sql(p)
        for blob in row.blobs:
            blobs.setdefault((blob[2], blob[3]), blob)
    if blobs:
        rows = list(blobs.values())
        params |= as_columns(
            rows, channels=(2, TextArray), versions=(3, TextArray), types=(4, TextArray), blobs=(5, ByteaArray)
        )
        ctes["blobs"] = _PUT_BLOBS
    written, columns = _writes(writes)
    ctes |= written
    if unflushed:  # every write a WITH of its own, which runs whether or not it is read
        if checkpoints:
            ctes["checkpoint"] = _put_checkpoint_sql()
        return _with(f" SELECT {UNFLUSHED_COMMIT}", **ctes), params | columns
    return _with(_put_checkpoint_sql() if checkpoints else " SELECT 1", **ctes), params | columns


# The task that maps a run's input onto the state (LangGraph's path for START's node).
_START_TASK_PATH = "~__pregel_pull, __start__"


@dataclass
class Waiting:
    """Within a run (``writes_with_next_checkpoint``): what waits for the
    statement of the next checkpoint of its thread. Writes by the checkpoint
    they are of; checkpoints by (thread, namespace), oldest first."""

    writes: dict[tuple[str, str, str], list[WriteRows]] = field(default_factory=dict)
    checkpoints: dict[tuple[str, str], list[CheckpointRow]] = field(default_factory=dict)
    # The last checkpoint stored of each (thread, namespace).
    stored: dict[tuple[str, str], CheckpointRow] = field(default_factory=dict)
    # The run's final state, as its graph gave it (``ended_with``).
    final: dict[str, Any] | None = None
    # A thread the run knows has no checkpoint yet: the run's read of its
    # latest answers None without asking PostgreSQL (once).
    blank: str | None = None
    # The channels that start a step of the run's graph (each node's triggers,
    # and LangGraph's channel of Sends), when its last checkpoint waits for the
    # run's end (``writes_with_next_checkpoint(until_end=...)``).
    triggers: frozenset[str] | None = None
    # The rows stored with the run's end (``end_statements``), for ``end_committed``.
    with_end: list[CheckpointRow] = field(default_factory=list)

    def ended_with(self, values: dict[str, Any] | None) -> None:
        """The run came to its end with these values (its graph's last "values"):
        the state of the last checkpoint it stores, kept for its next turn."""
        self.final = values

    def may_wait(self, row: CheckpointRow) -> bool:
        """The run's input checkpoint, and the one after its step, when that
        step only mapped the input onto the state (START's task alone), wait
        for the next: a process that dies before then loses only what the run
        itself holds (its input, applied again on retry: ``ahas_run``).
        The run's last checkpoint (its step started none: no channel it updated
        starts a node) waits for the run's end, when ``triggers`` are known; a
        checkpoint after it, had there been one, would have taken it along."""
        if row.source == "input":
            return True
        if self.triggers is not None and row.source == "loop" and row.ns == "" and row.updated:
            if not row.updated & self.triggers:
                return True
        held = self.checkpoints.get((row.thread_id, row.ns))
        if not held or held[-1].source != "input" or held[-1].checkpoint_id != row.parent_id:
            return False
        batches = self.writes.get((row.thread_id, row.ns, row.parent_id))
        return bool(batches) and all(write[4] == _START_TASK_PATH for batch, _ in batches for write in batch)

    def take(self, thread_id: str, ns: str) -> tuple[list[CheckpointRow], list[WriteRows]]:
        """The thread's waiting checkpoints, and the writes of each one's parent (of the step that made it)."""
        rows = self.checkpoints.pop((thread_id, ns), [])
        writes = [batch for row in rows for batch in self.writes.pop((thread_id, ns, row.parent_id), [])]
        if rows:
            self.stored[(thread_id, ns)] = rows[-1]
        return rows, writes


_waiting: ContextVar[Waiting | None] = ContextVar("waiting", default=None)


def thread_config(thread_id: uuid.UUID, checkpoint_id: str | None = None) -> dict[str, Any]:
    """The config that addresses a thread's checkpoints (its latest, or ``checkpoint_id``)."""
    configurable: dict[str, Any] = {"thread_id": str(thread_id)}
    if checkpoint_id:
        configurable |= {"checkpoint_ns": "", "checkpoint_id": checkpoint_id}
    return {"configurable": configurable}


class PooledPostgresSaver(AsyncPostgresSaver):
    # LangGraph's query joins a checkpoint's channel versions to its thread's
    # blobs. PostgreSQL often hashes every blob of the thread for that (it
    # guesses one per thread until ANALYZE says otherwise, and the guess is an
    # average), so reading a state cost more each turn. Each version is looked
    # up by the blobs' primary key instead: LIMIT 1 keeps the lookup a
    # parameterised index probe per channel (the planner cannot flatten it).
    SELECT_SQL = """
select
    thread_id,
    checkpoint,
    checkpoint_ns,
    checkpoint_id,
    parent_checkpoint_id,
    metadata,
    (
        select array_agg(array[bl.channel::bytea, bl.type::bytea, bl.blob])
        from jsonb_each_text(checkpoint -> 'channel_versions') version
        cross join lateral (
            select b.channel, b.type, b.blob from checkpoint_blobs b
            where b.thread_id = checkpoints.thread_id
                and b.checkpoint_ns = checkpoints.checkpoint_ns
                and b.channel = version.key
                and b.version = version.value
            limit 1
        ) bl
    ) as channel_values,
    (
        select
        array_agg(array[cw.task_id::text::bytea, cw.channel::bytea, cw.type::bytea, cw.blob,
                        convert_to(cw.task_path, 'UTF8'), cw.idx::text::bytea])
        from checkpoint_writes cw
        where cw.thread_id = checkpoints.thread_id
            and cw.checkpoint_ns = checkpoints.checkpoint_ns
            and cw.checkpoint_id = checkpoints.checkpoint_id
    ) as pending_writes
from checkpoints """

    def __init__(self, conn: Any, serde: SerializerProtocol | None = None) -> None:
        super().__init__(conn, serde=serde or CheckpointSerializer())
        self.windows = Windows()
        self._rebuilt: dict[str, DeltaChannel] = {}
        self._apart: frozenset[str] = frozenset()
        # The version of each value stored apart that this process has stored (or offered), kept as a window is.
        self.stored_apart = Windows(size=APART_KNOWN)
        # The channel versions of the checkpoints this process last read (``aget_tuple``),
        # by checkpoint id: a run reads its thread's last checkpoint, then its history.
        self.versions_read = Windows()

    def keep_windows(self, channels: Mapping[str, Any]) -> None:
        """Keep the values this process rebuilds of these channels of its graph
        (its ``DeltaChannel``s; store/windows.py), and start the next read of
        each from the newest one kept on its checkpoint's chain."""
        self._rebuilt = {name: spec for name, spec in channels.items() if isinstance(spec, DeltaChannel)}

    def store_apart(self, channels: Iterable[str]) -> None:
        """Store these channels' values as blobs of their versions, never inline.
        LangGraph inlines a string or a number in the checkpoint, so a value
        that stays the same over many turns (the memory's summary and archive
        head, changed only by a fold) rode in every checkpoint until it changed;
        a blob is written once, with the version that made it."""
        self._apart = frozenset(channels)

    async def setup(self) -> None:
        """LangGraph's own migrations, under the appliance's schema lock: without
        it two app hosts starting together race on CREATE TABLE (the multi-host
        droplet test saw one of them fail)."""
        if not isinstance(self.conn, AsyncConnectionPool):
            return await super().setup()
        async with schema_lock(self.conn):
            await super().setup()

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with conn.transaction(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """LangGraph's ``aput`` (the same rows: primitive values inline, the
        others, and those ``store_apart`` names, as blobs of their new
        versions) in one statement; within a run, with the writes of the step
        before it and the checkpoints that waited for it (``Waiting``)."""
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            return await super().aput(config, checkpoint, metadata, new_versions)
        row = self._checkpoint_row(config, checkpoint, metadata, new_versions)
        stored = {
            "configurable": {"thread_id": row.thread_id, "checkpoint_ns": row.ns, "checkpoint_id": row.checkpoint_id}
        }
        waiting = _waiting.get()
        if waiting is None:
            await self._store(row.thread_id, row.ns, [row], [])
            return stored
        ready = not waiting.may_wait(row)  # decided before the row joins those waiting
        waiting.checkpoints.setdefault((row.thread_id, row.ns), []).append(row)
        if ready:
            await self._store(row.thread_id, row.ns, *waiting.take(row.thread_id, row.ns), in_run=True)
        return stored

    def _checkpoint_row(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> CheckpointRow:
        configurable = config["configurable"]
        thread_id, ns = configurable["thread_id"], configurable["checkpoint_ns"]
        inline = dict(checkpoint["channel_values"])
        blob_values = {}
        for key, value in checkpoint["channel_values"].items():
            if isinstance(value, _DeltaSnapshot):
                blob_values[key] = inline.pop(key)
                inline[key] = True  # the marker LangGraph reads a snapshot's blob by
            elif key in self._apart and value is not None:
                blob_values[key] = inline.pop(key)
            elif not (value is None or isinstance(value, (str, int, float, bool))):
                blob_values[key] = inline.pop(key)
        blob_versions = {k: v for k, v in new_versions.items() if k in blob_values}
        # A value stored apart is offered (the row already there stays) until
        # this process has stored its version: a thread written before kept it
        # inline, with no blob of that version.
        apart = {k: checkpoint["channel_versions"][k] for k in self._apart if k in blob_values}
        blob_versions |= {k: v for k, v in apart.items() if self.stored_apart.version((thread_id, ns, k)) != v}
        return CheckpointRow(
            thread_id=thread_id,
            ns=ns,
            checkpoint_id=checkpoint["id"],
            parent_id=configurable.get("checkpoint_id"),
            checkpoint=Jsonb({**checkpoint, "channel_values": inline}),
            metadata=Jsonb(get_serializable_checkpoint_metadata(config, metadata)),
            blobs=self._dump_blobs(thread_id, ns, blob_values, blob_versions) if blob_versions else [],
            apart=apart,
            source=metadata.get("source"),
            updated=frozenset(updated) if (updated := checkpoint.get("updated_channels")) is not None else None,
        )

    async def _store(
        self,
        thread_id: str,
        ns: str,
        checkpoints: Sequence[CheckpointRow],
        writes: Sequence[WriteRows],
        *,
        in_run: bool = False,
    ) -> None:
        """Checkpoints of one thread, oldest first, and writes of its checkpoints,
        in one statement. ``in_run``: a run's, whose end is recorded after them
        and waits for the disk, taking them with it; they do not wait for it
        themselves (a crash of the machine before that end loses its last steps,
        and the run goes on from the step before them)."""
        if not checkpoints and not writes:
            return
        statement, params = _statement(checkpoints, writes, unflushed=in_run)
        async with self.conn.connection() as conn:
            await conn.execute(statement, params | {"thread_id": thread_id, "ns": ns}, binary=True)
        self._stored(checkpoints)

    def _stored(self, checkpoints: Iterable[CheckpointRow]) -> None:
        """These checkpoints are committed: the values stored apart they carry are known stored."""
        for row in checkpoints:
            for key, version in row.apart.items():
                self.stored_apart.keep((row.thread_id, row.ns, key), version, None)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        """LangGraph's ``aput_writes`` (the same rows and conflict rules) in one statement."""
        if not isinstance(self.conn, AsyncConnectionPool) or self.pipe is not None:
            return await super().aput_writes(config, writes, task_id, task_path)
        if not writes:
            return
        where = config["configurable"]
        thread_id, ns, checkpoint_id = where["thread_id"], where["checkpoint_ns"], where["checkpoint_id"]
        replace = all(channel in WRITES_IDX_MAP for channel, _ in writes)
        batch = (self._dump_writes(thread_id, ns, checkpoint_id, task_id, task_path, writes), replace)
        if (waiting := _waiting.get()) is not None:
            waiting.writes.setdefault((thread_id, ns, checkpoint_id), []).append(batch)
            return
        await self._store(thread_id, ns, [], [batch])

    @staticmethod
    def _take_all(waiting: Waiting) -> Iterator[tuple[str, str, list[CheckpointRow], list[WriteRows]]]:
        """All that waits, by thread and namespace: the checkpoints with the
        writes of the steps that made them, then the writes left."""
        for thread_id, ns in list(waiting.checkpoints):
            yield thread_id, ns, *waiting.take(thread_id, ns)
        for (thread_id, ns, _), batches in list(waiting.writes.items()):
            yield thread_id, ns, [], batches
        waiting.writes.clear()

    async def _store_waiting(self, waiting: Waiting) -> None:
        """What no checkpoint followed, stored (each its own statement, not waiting for the disk)."""
        for thread_id, ns, rows, writes in self._take_all(waiting):
            await self._store(thread_id, ns, rows, writes, in_run=True)

    @asynccontextmanager
    async def writes_with_next_checkpoint(self, *, until_end: Iterable[str] | None = None) -> AsyncIterator[Waiting]:
        """A run's graph within it: a step's writes wait for the checkpoint that
        follows the step and go into its statement, so a checkpoint is never
        stored without the writes it rests on; and the run's input checkpoint
        (with the one after START's step) waits for the next (``Waiting.may_wait``):
        a plain turn's three checkpoints are one statement, where they were three.
        What no checkpoint followed (a node that paused for a person, a run
        stopped or failed mid-step) is stored on the way out. A process that
        dies in the moment between a step's end and its checkpoint loses that
        step's writes, and its tasks run again on resume. A run that tells how
        it ended (``Waiting.ended_with``) leaves its final state as the windows
        of its last checkpoint: its thread's next turn reads none of it back.

        ``until_end``: the channels that start a step of the run's graph
        (``Pregel.trigger_to_nodes``). Its last checkpoint then waits, with
        whatever else waits when the graph returns, for the transaction that
        records the run's end (``end_statements``, then ``end_committed``).
        An end not recorded (the database gone, the run cancelled meanwhile)
        loses them as a step cut off is lost: a next attempt goes on from the
        checkpoint before."""
        waiting = Waiting(triggers=None if until_end is None else frozenset(until_end) | {TASKS})
        token = _waiting.set(waiting)
        ended = False
        try:
            yield waiting
            ended = True
        finally:
            _waiting.reset(token)
            if ended and until_end is None:
                await self._store_waiting(waiting)
                self._keep_final(waiting)
            elif not ended and (waiting.checkpoints or waiting.writes):
                # What the run did before it stopped is kept, as it was when each was stored alone.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._store_waiting(waiting))

    def end_statements(self, waiting: Waiting) -> list[Statement]:
        """What waits for the run's end, as statements for the transaction that
        records it (whose commit waits for the disk)."""
        statements = []
        for thread_id, ns, rows, writes in self._take_all(waiting):
            waiting.with_end.extend(rows)
            statement, params = _statement(rows, writes)
            statements.append((statement, params | {"thread_id": thread_id, "ns": ns}))
        return statements

    def end_committed(self, waiting: Waiting) -> None:
        """The transaction with ``end_statements`` committed: what they stored is known, and the final state kept."""
        self._stored(waiting.with_end)
        self._keep_final(waiting)

    def _keep_final(self, waiting: Waiting) -> None:
        """Each rebuilt channel's value in the run's final state, kept as the
        window of its thread's last checkpoint (the value at that version)."""
        roots = [row for (_, ns), row in waiting.stored.items() if ns == ""]
        if waiting.final is None or len(roots) != 1:
            return
        row = roots[0]
        versions = row.checkpoint.obj["channel_versions"]
        for channel in self._rebuilt:
            if channel in waiting.final and channel in versions:
                self.windows.keep((row.thread_id, "", channel), versions[channel], copy.copy(waiting.final[channel]))

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """LangGraph's, noting the channel versions of the checkpoint read
        (``versions_read``) for the history read that follows it in a run.
        Not a history's listing: its checkpoints would push those out. A run
        on a thread it knows has none (``Waiting.blank``) is told so at once."""
        asked = config["configurable"]
        waiting = _waiting.get()
        if waiting is not None and waiting.blank == str(asked["thread_id"]) and not asked.get("checkpoint_ns"):
            waiting.blank = None  # once: the run's first read; later ones see what it wrote
            return None
        found = await super().aget_tuple(config)
        if found is not None:
            where = found.config["configurable"]
            read = (str(where["thread_id"]), where["checkpoint_ns"], where["checkpoint_id"])
            self.versions_read.keep(read, "", found.checkpoint.get("channel_versions") or {})
        return found

    async def _load_checkpoint_tuple(self, value: DictRow) -> CheckpointTuple:
        """LangGraph's, with the pending writes decoded on the loop like the
        blobs beside them: LangGraph hops to a thread for them, even for none,
        on every checkpoint a run starts from or a history lists."""
        row = {"thread_id": value["thread_id"], "checkpoint_ns": value["checkpoint_ns"]}
        parent = value["parent_checkpoint_id"]
        return CheckpointTuple(
            {"configurable": row | {"checkpoint_id": value["checkpoint_id"]}},
            {
                **value["checkpoint"],
                "channel_values": {
                    **(value["checkpoint"].get("channel_values") or {}),
                    **self._load_blobs(value["channel_values"]),
                },
            },
            value["metadata"],
            {"configurable": row | {"checkpoint_id": parent}} if parent else None,
            self._load_writes(value["pending_writes"]),
        )

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        """LangGraph's own walk (``AsyncPostgresSaver.aget_delta_channel_history``)
        with three changes, so that rebuilding a state costs what was written
        since its last snapshot, not what the thread (or the database) holds:
        - the probe for a stored value is a lookup per checkpoint (``_stage1_sql``);
        - the walk back to the snapshot reads DELTA_PAGE checkpoints at a time,
          not 1,024 (a snapshot is at most a few dozen checkpoints back);
        - the writes are fetched checkpoint by checkpoint through the writes'
          primary key. LangGraph's ``checkpoint_id = ANY(...)`` is planned as a
          filter over every write of the thread;
        - with ``keep_windows``, a walk also stops at a version this process
          has kept, and the channel comes back rebuilt (``seed``, no writes).
        """
        if not channels:
            return {}
        channels = list(channels)
        thread_id = config["configurable"]["thread_id"]
        checkpoint_ns = config["configurable"].get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)
        if not checkpoint_id:
            target = await self.aget_tuple(config)
            if target is None:
                return {ch: {"writes": []} for ch in channels}
            checkpoint_id = target.config["configurable"]["checkpoint_id"]

        parent_of: dict[str, str | None] = {}
        ver_by_i_by_cid: list[dict[str, str | None]] = [{} for _ in channels]
        hb_by_i_by_cid: list[dict[str, bool]] = [{} for _ in channels]
        inline_by_i_by_cid: list[dict[str, Any]] = [{} for _ in channels]
        chain_by_ch: dict[str, list[str]] = {ch: [] for ch in channels}
        seed_ver_by_ch: dict[str, str | None] = {ch: None for ch in channels}
        seed_inline_by_ch: dict[str, Any] = {}
        walk_cursor_by_ch: dict[str, str | None] = {}
        seeded: set[str] = set()
        # The window this process kept of each channel: (its version, its value), where a walk may stop.
        kept = {ch: self.windows.get((str(thread_id), checkpoint_ns, ch)) for ch in channels if ch in self._rebuilt}
        key = (str(thread_id), checkpoint_ns)
        read = self.versions_read.get((*key, checkpoint_id))
        if read is not None and len(kept) == len(channels):
            at = {ch: window for ch, window in kept.items() if window is not None and read[1].get(ch) == window[0]}
            if len(at) == len(channels):  # the checkpoint just read shows each channel as kept: nothing to walk
                seeded_here = {"seed": _KEPT, "writes": []}
                return {ch: self._rebuild((*key, ch), w[0], seeded_here, w) for ch, w in at.items()}
        cursor: str | None = checkpoint_id
        stage1_sql = _stage1_sql(len(channels), first_page=True)
        async with self._cursor() as cur:
            while True:
                params: list[Any] = [p for ch in channels for p in (ch, ch, ch, ch)]
                await cur.execute(stage1_sql, [*params, thread_id, checkpoint_ns, cursor, DELTA_PAGE])
                page = await cur.fetchall()
                if not page:
                    break
                oldest = self._ingest_stage1_page(
                    page, channels, parent_of, ver_by_i_by_cid, hb_by_i_by_cid, inline_by_i_by_cid
                )
                for i, ch in enumerate(channels):
                    if kept.get(ch) is None or ch in seeded:
                        continue
                    version = kept[ch][0]
                    for row in page:  # the kept version reads as a stored value, where the walk stops
                        cid = row["checkpoint_id"]
                        if ver_by_i_by_cid[i].get(cid) != version:
                            continue
                        hb_by_i_by_cid[i][cid], inline_by_i_by_cid[i][cid] = False, _KEPT
                        if cid == checkpoint_id:  # the target's own: nothing to walk
                            seed_ver_by_ch[ch], seed_inline_by_ch[ch] = version, _KEPT
                            seeded.add(ch)
                            break
                self._try_advance_walks(
                    checkpoint_id, channels, parent_of, ver_by_i_by_cid, hb_by_i_by_cid, inline_by_i_by_cid,
                    chain_by_ch, seed_ver_by_ch, seed_inline_by_ch, walk_cursor_by_ch, seeded,
                )  # fmt: skip
                if len(seeded) == len(channels) or len(page) < DELTA_PAGE:
                    break
                cursor = oldest
                stage1_sql = _stage1_sql(len(channels), first_page=False)

        branches, params = [], []
        for ch in channels:
            if chain_by_ch[ch]:
                branches.append(_CHAIN_WRITES)
                params += [chain_by_ch[ch], thread_id, checkpoint_ns, ch]
        for ch in channels:
            if seed_ver_by_ch[ch] is not None and seed_inline_by_ch.get(ch) is not _KEPT:
                branches.append(_SEED_BLOB)
                params += [thread_id, checkpoint_ns, ch, seed_ver_by_ch[ch]]
        rows: list[Any] = []
        if branches:
            async with self._cursor() as cur:
                await cur.execute(" UNION ALL ".join(branches), params)
                rows = await cur.fetchall()
        histories = self._build_delta_channels_writes_history(
            channels=channels,
            chain_by_ch=chain_by_ch,
            seed_ver_by_ch=seed_ver_by_ch,
            seed_inline_by_ch=seed_inline_by_ch,
            stage2_rows=rows,
        )
        for i, ch in enumerate(channels):
            version = ver_by_i_by_cid[i].get(checkpoint_id)
            if ch in kept and version is not None:
                histories[ch] = self._rebuild((str(thread_id), checkpoint_ns, ch), version, histories[ch], kept[ch])
        return histories

    def _rebuild(
        self, channel: tuple[str, str, str], version: str, history: DeltaChannelHistory, kept: tuple[str, Any] | None
    ) -> DeltaChannelHistory:
        """The channel's value at the target (``version``), replayed here from
        ``history`` (its seed the ``kept`` window when the walk stopped there)
        and kept; handed to LangGraph as a seed with nothing to replay."""
        spec = self._rebuilt[channel[2]]
        seed = history.get("seed", _NO_SEED)
        if seed is _KEPT and kept is not None:
            seed = copy.copy(kept[1])  # a reducer must not change the kept list
        rebuilt = spec.from_checkpoint(spec.typ() if seed is _NO_SEED else seed)
        rebuilt.replay_writes(history["writes"])
        self.windows.keep(channel, version, rebuilt.value)
        return {"seed": copy.copy(rebuilt.value), "writes": []}

    async def ahas_run(self, thread_id: str, run_id: str) -> bool:
        """Whether a run has written any checkpoint (a retried run goes on from there)."""
        async with self.conn.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT 1 FROM checkpoints WHERE thread_id = %s AND metadata->>'run_id' = %s LIMIT 1",
                    (thread_id, run_id),
                )
            ).fetchone()
        return row is not None

    async def acopy_thread(self, source: str, target: str) -> None:
        """Every checkpoint, blob, pending write and archived message of one thread, under another id."""
        async with self.conn.connection() as conn, conn.transaction():
            for table in CONVERSATION_TABLES:
                rows = await (
                    await conn.execute(
                        """SELECT column_name FROM information_schema.columns
                           WHERE table_schema = current_schema() AND table_name = %s AND column_name <> 'thread_id'
                           ORDER BY ordinal_position""",
                        (table,),
                    )
                ).fetchall()
                columns = ", ".join(f'"{r["column_name"]}"' for r in rows)
                await conn.execute(
                    f"INSERT INTO {table} (thread_id, {columns}) "
                    f"SELECT %s, {columns} FROM {table} WHERE thread_id = %s",
                    (target, source),
                )

    async def adelete_thread(self, thread_id: str) -> None:
        """Every row of the thread's conversation (its archived messages too), in one statement."""
        async with self.conn.connection() as conn:
            await conn.execute(_DELETE_CONVERSATION, {"thread_id": str(thread_id)})
        self.windows.forget_thread(str(thread_id))
        self.stored_apart.forget_thread(str(thread_id))

    async def adelete_run(self, thread_id: str, run_id: str) -> int:
        """Remove every checkpoint a run wrote (a failed turn leaves nothing
        half-written behind). Returns how many checkpoints were removed."""
        async with self.conn.connection() as conn, conn.transaction():
            cur = await conn.execute(
                """DELETE FROM checkpoints
                   WHERE thread_id = %(t)s AND metadata->>'run_id' = %(r)s
                   RETURNING checkpoint_ns, checkpoint_id""",
                {"t": thread_id, "r": run_id},
            )
            removed = await cur.fetchall()
            if not removed:
                return 0
            await conn.execute(
                """DELETE FROM checkpoint_writes
                   WHERE thread_id = %s AND checkpoint_id = ANY(%s)""",
                (thread_id, [row["checkpoint_id"] for row in removed]),
            )
            # Channel values only the removed checkpoints pointed at.
            await conn.execute(
                """DELETE FROM checkpoint_blobs b
                   WHERE b.thread_id = %s AND NOT EXISTS (
                       SELECT 1 FROM checkpoints c
                       WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
                         AND c.checkpoint->'channel_versions'->>b.channel = b.version)""",
                (thread_id,),
            )
            return len(removed)
