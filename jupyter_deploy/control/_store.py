"""The control plane's state: one SQLite file, WAL, foreign keys on.

Every state change runs inside ``Store.tx()``, one transaction, so a crash
(even SIGKILL) leaves either all of a change or none of it. The schema has a
version; ``MIGRATIONS[i]`` takes a database from version i to i + 1 and runs
at open time, in the same transaction as the version bump.

Every committed change to a deployment or a replica is also announced: temporary
triggers record which rows a transaction touched, and ``Store.on_change`` gets the
list after the commit (the daemon's Watch stream is built on it), whoever wrote
the change.

Example::

    store = Store(home / "state.db")
    with store.tx() as db:
        db.execute("INSERT INTO apps (user_id, id, created_at) VALUES (?, ?, ?)", ("local", "x", now()))
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        digest TEXT NOT NULL UNIQUE,          -- a keyed hash of the token, never the token
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE apps (
        user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        id TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, id)
    );
    CREATE TABLE blobs (
        sha256 TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE models (
        user_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        id TEXT NOT NULL,
        visibility TEXT NOT NULL DEFAULT 'private',
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, app_id, id),
        FOREIGN KEY (user_id, app_id) REFERENCES apps(user_id, id)
    );
    CREATE TABLE versions (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        model_id TEXT NOT NULL,
        number INTEGER NOT NULL,
        sha256 TEXT NOT NULL REFERENCES blobs(sha256),
        description BLOB NOT NULL,            -- a serialized runner.ModelDescription
        config_json TEXT NOT NULL,
        python TEXT NOT NULL,                 -- the uploading interpreter
        created_at REAL NOT NULL,
        UNIQUE (user_id, app_id, model_id, number),
        FOREIGN KEY (user_id, app_id, model_id) REFERENCES models(user_id, app_id, id) ON DELETE CASCADE
    );
    CREATE TABLE compute_clusters (
        user_id TEXT NOT NULL REFERENCES users(id),
        id TEXT NOT NULL,
        config_json TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, id)
    );
    CREATE TABLE nodepools (
        user_id TEXT NOT NULL,
        compute_cluster_id TEXT NOT NULL,
        id TEXT NOT NULL,
        config_json TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (user_id, compute_cluster_id, id),
        FOREIGN KEY (user_id, compute_cluster_id) REFERENCES compute_clusters(user_id, id)
    );
    CREATE TABLE deployments (
        user_id TEXT NOT NULL,
        id TEXT NOT NULL,
        compute_cluster_id TEXT NOT NULL,
        nodepool_id TEXT NOT NULL,
        model_user_id TEXT NOT NULL,
        model_app_id TEXT NOT NULL,
        model_id TEXT NOT NULL,
        pinned_version_id TEXT REFERENCES versions(id),   -- NULL: follow the latest
        version_id TEXT NOT NULL REFERENCES versions(id), -- what it serves (or rolls out)
        config_json TEXT NOT NULL,
        is_default INTEGER NOT NULL DEFAULT 0,
        desired TEXT NOT NULL DEFAULT 'running',          -- 'running' or 'stopped'
        state TEXT NOT NULL DEFAULT 'CREATING',
        reason TEXT NOT NULL DEFAULT '',
        signing_key TEXT NOT NULL,                        -- hex salt of the route key (_tokens.RouteKeys)
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (user_id, id),
        UNIQUE (user_id, compute_cluster_id, nodepool_id, model_user_id, model_app_id, model_id),
        FOREIGN KEY (user_id, compute_cluster_id, nodepool_id)
            REFERENCES nodepools(user_id, compute_cluster_id, id),
        FOREIGN KEY (model_user_id, model_app_id, model_id) REFERENCES models(user_id, app_id, id)
    );
    CREATE TABLE replicas (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        deployment_id TEXT NOT NULL,
        version_id TEXT NOT NULL REFERENCES versions(id),
        pid INTEGER,
        address TEXT,
        gpus TEXT NOT NULL DEFAULT '',        -- comma-separated GPU indices it holds
        state TEXT NOT NULL,                  -- STARTING, READY, DRAINING, STOPPED, CRASHED
        restarts INTEGER NOT NULL DEFAULT 0,
        started_at REAL NOT NULL,
        FOREIGN KEY (user_id, deployment_id) REFERENCES deployments(user_id, id) ON DELETE CASCADE
    );
    """,
    # 1 -> 2: what each replica started with (_configs.replica_spec, and the runner settings to roll
    # back to), so that a settings change rolls out like a new version. '' for a replica started
    # before: the scheduler takes it to run the deployment's current settings.
    """
    ALTER TABLE replicas ADD COLUMN spec TEXT NOT NULL DEFAULT '';
    ALTER TABLE replicas ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';
    """,
    # 2 -> 3: the OS user a user's runners run as where the daemon is root (_sandbox); NULL until
    # its first replica starts. (deployments.signing_key now holds the salt the route key is
    # derived from with the daemon's secret: an old row's key simply becomes its salt.)
    """
    ALTER TABLE users ADD COLUMN runner_uid INTEGER;
    CREATE UNIQUE INDEX users_runner_uid ON users(runner_uid);
    """,
    # 3 -> 4: the model's own exception (JSON: step, type, message, traceback) when its first
    # replica's load_model() or test() raised; '' otherwise. Read with the reason it came with.
    """
    ALTER TABLE deployments ADD COLUMN failure_json TEXT NOT NULL DEFAULT '';
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)

# Temporary (this connection's own) triggers that note the deployments and replicas a transaction
# changes; tx() reads and clears the note before its COMMIT. Only the columns a watcher reports.
_CHANGES_TABLE = ("CREATE TEMP TABLE changes (kind TEXT NOT NULL, user_id TEXT NOT NULL, "
                  "id TEXT NOT NULL, deployment_id TEXT NOT NULL)")
_CHANGE_TRIGGERS = {table: [
    f"CREATE TEMP TRIGGER {table}_{op.split()[0].lower()} AFTER {op} ON main.{table} "
    f"BEGIN INSERT INTO changes VALUES ('{kind}', {row}.user_id, {row}.id, {row}.{dep}); END"
    for op, row in (("INSERT", "NEW"), (f"UPDATE OF {columns}", "NEW"), ("DELETE", "OLD"))]
    for table, kind, dep, columns in (
        ("deployments", "deployment", "id", "state, reason, version_id, desired"),
        ("replicas", "replica", "deployment_id", "state, address, version_id"))}

#: One changed row: (kind, user_id, id, deployment_id); kind is "deployment" or "replica".
Change = tuple[str, str, str, str]


def now() -> float:
    return time.time()


class Store:
    """A SQLite database shared by the daemon's threads (one connection, one lock)."""

    def __init__(self, path: str | Path, migrations: list[str] | None = None):
        self.path = Path(path)
        self.migrations = MIGRATIONS if migrations is None else migrations  # another file, another schema
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is
        # exactly the body of tx() and nothing is committed implicitly.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                   timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        self._db.execute(_CHANGES_TABLE)
        self._migrate()
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for statement in (s for table in tables & _CHANGE_TRIGGERS.keys() for s in _CHANGE_TRIGGERS[table]):
            self._db.execute(statement)
        #: Called after each commit that changed deployments or replicas, with the changed rows
        #: (under the store's lock, so listeners see changes in commit order; keep it quick).
        self.on_change: Callable[[list[Change]], None] | None = None

    def _migrate(self) -> None:
        with self.tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row["value"]) if row else 0
            if version > len(self.migrations):
                raise RuntimeError(
                    f"{self.path} has schema version {version}, newer than this jupyter_deploy "
                    f"understands ({len(self.migrations)}); upgrade jupyter_deploy")
            for step in self.migrations[version:]:
                for statement in _statements(step):
                    db.execute(statement)
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                       (str(len(self.migrations)),))

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            changed = self._db.execute("SELECT DISTINCT * FROM changes").fetchall()
            if changed:
                self._db.execute("DELETE FROM changes")
            self._db.execute("COMMIT")
            if changed and self.on_change is not None:
                self.on_change([tuple(row) for row in changed])

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query (a consistent snapshot)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _statements(script: str) -> Iterator[str]:
    # Not executescript(): it commits on its own, and a migration must share the
    # transaction of the version bump.
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer
            buffer = ""
    if buffer.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buffer.strip()[:80]}")


def row_dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return dict(row) if row is not None else None
