"""``appliance backup`` / ``appliance restore``: PostgreSQL and Chroma in one
archive, restorable onto a fresh host.

The database goes through ``pg_dump``'s custom format; the vectors through
Chroma's API (ids, embeddings, metadata), so the archive does not depend on
where either store runs or on Chroma's files on disk. A restore goes only onto
an empty database and an empty collection: it never merges into live data.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from appliance import __version__
from appliance.settings import Settings
from appliance.store.database import database_in_use
from appliance.store.vectors import ChunkIndex, open_chroma

FORMAT = 1
PAGE = 1000


class BackupError(RuntimeError):
    """The backup or restore cannot go on; the message says why and what to do."""


class BackupManifest(msgspec.Struct, frozen=True):
    format: int
    appliance_version: str
    created_at: str
    schema_version: int
    postgres_version: str
    collection: str
    vectors: int


def _server_facts(url: str) -> tuple[int, str, int, int]:
    """Server major version, its version text, the schema version, and how many tables public holds."""
    with psycopg.connect(url, autocommit=True) as conn:
        number = int(conn.execute("SHOW server_version_num").fetchone()[0])
        text = conn.execute("SHOW server_version").fetchone()[0]
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
        schema = 0
        if conn.execute("SELECT to_regclass('public.appliance_migrations')").fetchone()[0]:
            schema = conn.execute("SELECT coalesce(max(version), 0) FROM appliance_migrations").fetchone()[0]
    return number // 10000, text, schema, tables


def pg_tool(name: str, server_major: int) -> str:
    """``pg_dump`` or ``pg_restore`` of the server's major version (an older one refuses a newer server)."""
    candidates = [Path(f"/usr/lib/postgresql/{server_major}/bin/{name}")]
    try:
        import pgserver

        candidates.append(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)
    except ImportError:
        pass
    if found := shutil.which(name):
        candidates.append(Path(found))
    for path in candidates:
        if not path.is_file():
            continue
        version = subprocess.run([str(path), "--version"], capture_output=True, text=True).stdout
        major = int(version.split()[-1].split(".")[0]) if version else 0
        if major >= server_major:
            return str(path)
    raise BackupError(f"no {name} for PostgreSQL {server_major} or newer; install postgresql-client-{server_major}")


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode:
        raise BackupError(f"{Path(argv[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}")


def _export_vectors(index: ChunkIndex, path: Path) -> int:
    count = 0
    with path.open("w") as out:
        for page in index.pages(["embeddings", "metadatas"], PAGE):
            for i, chunk_id in enumerate(page["ids"]):
                embedding = [float(x) for x in page["embeddings"][i]]
                out.write(json.dumps({"id": chunk_id, "embedding": embedding, "metadata": page["metadatas"][i]}))
                out.write("\n")
            count += len(page["ids"])
    return count


def _import_vectors(index: ChunkIndex, path: Path) -> int:
    count = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if batch:
            index.upsert_blocking(
                [r["id"] for r in batch], [r["embedding"] for r in batch], [r["metadata"] for r in batch]
            )
            batch.clear()

    with path.open() as lines:
        for line in lines:
            batch.append(json.loads(line))
            count += 1
            if len(batch) == PAGE:
                flush()
    flush()
    return count


def backup(settings: Settings, output: Path) -> BackupManifest:
    """Write the archive to ``output`` (readable by this user only)."""
    with database_in_use(settings) as (url, _):
        major, version, schema, _ = _server_facts(url)
        if not schema:
            raise BackupError("the database holds no appliance schema: is APPLIANCE_DATABASE_URL the right one?")
        with tempfile.TemporaryDirectory(prefix="appliance-backup-") as tmp:
            folder = Path(tmp)
            _run([pg_tool("pg_dump", major), "--format=custom", "--no-owner", "--no-privileges",
                  f"--file={folder / 'database.dump'}", f"--dbname={url}"])  # fmt: skip
            index = ChunkIndex(open_chroma(settings), settings.chroma_collection)
            vectors = _export_vectors(index, folder / "vectors.jsonl")
            manifest = BackupManifest(
                format=FORMAT,
                appliance_version=__version__,
                created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                schema_version=schema,
                postgres_version=version,
                collection=settings.chroma_collection,
                vectors=vectors,
            )
            (folder / "manifest.json").write_bytes(msgspec.json.format(msgspec.json.encode(manifest)))
            output.parent.mkdir(parents=True, exist_ok=True)
            partial = output.with_name(output.name + ".partial")
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for name in ("manifest.json", "database.dump", "vectors.jsonl"):
                    tar.add(folder / name, arcname=name)
            partial.replace(output)
        return manifest


def _undo(url: str, index: ChunkIndex) -> None:
    """Leave the database and the collection empty again, as restore found them."""
    if ids := index.collection.get(include=[])["ids"]:
        index.collection.delete(ids=ids)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


def read_manifest(archive: Path) -> BackupManifest:
    try:
        with tarfile.open(archive) as tar:
            member = tar.extractfile("manifest.json")
            data = member.read() if member else b""
        manifest = msgspec.json.decode(data, type=BackupManifest)
    except (OSError, tarfile.TarError, KeyError, msgspec.DecodeError) as exc:
        raise BackupError(f"{archive} is not an appliance backup ({exc})") from None
    if manifest.format != FORMAT:
        raise BackupError(f"{archive} is backup format {manifest.format}; this appliance reads format {FORMAT}")
    return manifest


def restore(settings: Settings, archive: Path) -> BackupManifest:
    """Restore ``archive`` onto an empty database and an empty Chroma collection."""
    manifest = read_manifest(archive)
    with database_in_use(settings) as (url, _):
        major, _, _, tables = _server_facts(url)
        if tables:
            raise BackupError(
                f"the database already holds {tables} tables; restore onto an empty database "
                "(create a new one, or drop and recreate this one, and run restore before the appliance starts)"
            )
        index = ChunkIndex(open_chroma(settings), settings.chroma_collection)
        if existing := index.collection.count():
            raise BackupError(
                f"the Chroma collection {settings.chroma_collection!r} already holds {existing} vectors; "
                "restore onto an empty one (a fresh Chroma, or another APPLIANCE_CHROMA_COLLECTION)"
            )
        with tempfile.TemporaryDirectory(prefix="appliance-restore-") as tmp:
            folder = Path(tmp)
            with tarfile.open(archive) as tar:
                tar.extractall(folder, members=[tar.getmember("database.dump"), tar.getmember("vectors.jsonl")],
                               filter="data")  # fmt: skip
            _run([pg_tool("pg_restore", major), "--no-owner", "--no-privileges", "--single-transaction",
                  "--exit-on-error", f"--dbname={url}", str(folder / "database.dump")])  # fmt: skip
            try:
                restored = _import_vectors(index, folder / "vectors.jsonl")
                if restored != manifest.vectors:
                    raise BackupError(f"restored {restored} vectors, but the backup lists {manifest.vectors}")
            except Exception:
                _undo(url, index)
                raise
        return manifest
