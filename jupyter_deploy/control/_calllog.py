"""Access records and inference logs: collected from the runners' spool files, kept in ``logs.db``.

Runners write their records to ``home/telemetry/<user>/<deployment>/<replica>/*.jsonl``
off the request path (``runner._telemetry``); a background thread here reads what
is new every ``interval`` seconds and inserts it into a SQLite file of its own.
Each file's read offset is stored in the same transaction as the rows read from
it, so a daemon killed at any point neither loses nor repeats a record. A segment
is removed once it is read and either a newer one exists or its replica is gone.

Why a second SQLite file rather than tables in ``state.db``: records arrive in
the thousands per second under load, and ``state.db`` has one connection and one
lock shared by route resolution, the scheduler and every RPC. Bulk inserts and
retention deletes there would queue those behind log traffic; in ``logs.db``
they contend with nothing but log reads. Logs are not state: losing the file
loses history, never a deployment.

Retention, per deployment (``inference_logger.max_records``, ``max_age_seconds``):
the oldest records beyond the count, and all past the age, are deleted soon after
ingestion (checked when a tenth of the count has arrived, or every 10 s).
Records of deployments that no longer exist are deleted, and reads only return
records younger than the deployment, so a re-created id starts empty.

Example::

    calls = CallLog(home, state_store)
    calls.start()
    calls.records("local", "echo", created_at=row["created_at"], limit=100)
    calls.stop()
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import shutil
import sqlite3
import stat
import threading
import time
from pathlib import Path
from typing import Any

from .. import _wire
from .._wire import LOGGING_FILE, SEGMENT_SUFFIX, STATS_FILE
from ..proto import control_pb2 as cpb
from ..runner._telemetry import logging_settings
from ._store import Store

log = logging.getLogger("jupyter_deploy.calllog")

LOG_MIGRATIONS: list[str] = [
    # 0 -> 1: the first schema.
    """
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        user_id TEXT NOT NULL,
        deployment_id TEXT NOT NULL,
        replica_id TEXT NOT NULL,
        version_id TEXT NOT NULL,
        timestamp REAL NOT NULL,              -- when the runner received the call (epoch seconds)
        request_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        method TEXT NOT NULL,
        status TEXT NOT NULL,                 -- OK or a gRPC status name
        latency_ms REAL NOT NULL,
        bytes_in INTEGER NOT NULL,
        bytes_out INTEGER NOT NULL,
        error TEXT,                           -- JSON {code, type, message} of a failed call
        inputs TEXT,                          -- JSON, when the inference logger records inputs
        outputs TEXT                          -- JSON, when it records predictions
    );
    CREATE INDEX calls_by_time ON calls (user_id, deployment_id, timestamp);
    CREATE TABLE spool_offsets (
        path TEXT PRIMARY KEY,                -- a runner's spool segment
        offset INTEGER NOT NULL               -- bytes of it already stored
    );
    """,
]

#: Retention defaults per deployment (``inference_logger.max_records`` / ``max_age_seconds``).
DEFAULT_MAX_RECORDS = 100_000
DEFAULT_MAX_AGE = 7 * 86400.0
#: Seconds a runner's stats may be old and still count as its current load.
STATS_FRESH = 3.0
#: Latency percentiles are taken over this many of the latest calls.
LATENCY_SAMPLE = 1000
_READ_CHUNK = 16 << 20
_COLUMNS = ("timestamp", "request_id", "caller", "method", "status", "latency_ms", "bytes_in", "bytes_out")


def telemetry_root(home: Path) -> Path:
    return Path(home) / "telemetry"


def deployment_dir(home: Path, user_id: str, deployment_id: str) -> Path:
    return telemetry_root(home) / user_id / deployment_id


def replica_dir(home: Path, user_id: str, deployment_id: str, replica_id: str) -> Path:
    """The directory a replica's runner writes its records and stats to (``$JUPYTER_DEPLOY_TELEMETRY``)."""
    return deployment_dir(home, user_id, deployment_id) / replica_id


def write_logging_settings(home: Path, user_id: str, deployment_id: str, config: dict,
                           previous: str | None = None) -> str:
    """Write the inference logger settings the deployment's runners read (unless they are ``previous``).

    Returns the text, to pass as ``previous`` next time.
    """
    text = json.dumps(logging_settings(config.get("inference_logger")), sort_keys=True)
    folder = deployment_dir(home, user_id, deployment_id)
    if text == previous and (folder / LOGGING_FILE).exists():  # (a deleted deployment's folder goes)
        return text
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{LOGGING_FILE}.tmp"
    tmp.write_text(text)
    tmp.chmod(0o644)  # runners read it, also as an OS user of their own (_sandbox); nothing secret
    tmp.replace(folder / LOGGING_FILE)  # atomic: a runner never reads half of it
    return text


def read_stats(home: Path, user_id: str, deployment_id: str, replica_id: str) -> dict | None:
    """A replica's latest load figures, or None when there are none or they are stale."""
    try:
        stats = json.loads(_read_runner_file(replica_dir(home, user_id, deployment_id, replica_id) / STATS_FILE))
    except (OSError, ValueError):
        return None
    return stats if time.time() - float(stats.get(_wire.STAT_TIME, 0)) <= STATS_FRESH else None


#: Bytes of a runner's failure record read at most (the runner cuts its own well below this).
MAX_FAILURE_BYTES = 64 << 10


def take_failure(home: Path, user_id: str, deployment_id: str, replica_id: str) -> dict | None:
    """The model failure a replica's runner recorded before it exited (``runner._telemetry.write_failure``),
    removed as it is read; None when there is none, or it is not one (a link, a FIFO, bad JSON).

    Example::

        take_failure(home, "local", "echo", "3f2a9c1b0e4d")
        # {'step': 'load_model', 'type': 'TypeError', 'message': '...', 'traceback': '...'}
    """
    path = replica_dir(home, user_id, deployment_id, replica_id) / _wire.FAILURE_FILE
    try:
        with open(_open_runner_file(path), "rb") as f:
            data = f.read(MAX_FAILURE_BYTES + 1)
    except OSError:
        return None
    finally:
        forget_failure(home, user_id, deployment_id, replica_id)
    try:
        record = json.loads(data) if len(data) <= MAX_FAILURE_BYTES else None
    except ValueError:
        return None
    fields = (_wire.FAIL_STEP, _wire.FAIL_TYPE, _wire.FAIL_MESSAGE, _wire.FAIL_TRACEBACK)
    if not isinstance(record, dict) or not all(isinstance(record.get(k, ""), str) for k in fields) \
            or not record.get(_wire.FAIL_STEP) or not record.get(_wire.FAIL_TYPE):
        return None
    return {k: record.get(k, "") for k in fields}


def read_step(home: Path, user_id: str, deployment_id: str, replica_id: str) -> dict | None:
    """What a starting replica's runner does now: ``{"step": "load_model", "seconds": 12.3}``, or None."""
    try:
        with open(_open_runner_file(replica_dir(home, user_id, deployment_id, replica_id) / _wire.STEP_FILE),
                  "rb") as f:
            record = json.loads(f.read(4096))
        step, since = record["step"], float(record["since"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(step, str) or len(step) > 32:
        return None
    return {"step": step, "seconds": round(max(0.0, time.time() - since), 1)}


def forget_failure(home: Path, user_id: str, deployment_id: str, replica_id: str) -> None:
    """Remove a replica's failure record (before it starts again: a new run must not read an old one)."""
    try:
        (replica_dir(home, user_id, deployment_id, replica_id) / _wire.FAILURE_FILE).unlink()
    except OSError:
        pass


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    k = max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))
    return round(values[k], 3)


def _open_runner_file(path: Path) -> int:
    """A file descriptor of a regular file a runner wrote, opened without following links and
    without blocking: where runners run as an OS user of their own (``_sandbox``), that user owns
    the folder and could put there a link to another replica's records, or a FIFO that would
    hang this thread. Anything but a regular file: OSError EINVAL."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return fd


def _read_runner_file(path: Path) -> bytes:
    with open(_open_runner_file(path), "rb") as f:
        return f.read()


def _open(path: Path) -> tuple[Store, dict[str, int]]:
    """The call-log database at ``path`` and its spool offsets.

    A file SQLite cannot read (garbage, a truncated copy) is moved aside to
    ``<path>.corrupt-<time>``, with a warning, and a new one is made: logs are not
    state, and a damaged one must not keep the control plane from starting. (The
    runners' spool files still on disk are then read again from their start.)
    """
    db = None
    try:
        db = Store(path, migrations=LOG_MIGRATIONS)
        return db, {r["path"]: r["offset"] for r in db.query("SELECT path, offset FROM spool_offsets")}
    except sqlite3.DatabaseError as e:
        if db is not None:
            db.close()
        if isinstance(e, sqlite3.OperationalError):  # locked, I/O: the file may be fine, keep it
            raise
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{path}{suffix}").replace(f"{aside}{suffix}")
        log.warning("%s is damaged (%s): moved it aside to %s and started a new call log", path, e, aside)
    return Store(path, migrations=LOG_MIGRATIONS), {}


class CallLog:
    """The daemon's store of call records, fed by a background thread.

    Args:
        home: the control plane's home (``telemetry/`` and ``logs.db`` live there).
        state: the control plane's store (deployments and replicas are read from it).
        interval: seconds between ingestion passes.
    """

    def __init__(self, home: Path, state: Store, *, interval: float = 0.5):
        self.home, self.state, self.interval = Path(home), state, interval
        self.root = telemetry_root(self.home)
        self.db, self._offsets = _open(self.home / "logs.db")
        self._lock = threading.Lock()  # one ingestion at a time (the thread, or a read that catches up)
        self._since_retention: dict[tuple[str, str], tuple[int, float]] = {}
        self._orphans_checked = 0.0
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="jupyter_deploy-calllog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._halt.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.ingest()
        finally:
            self.db.close()

    def _loop(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.ingest()
            except Exception:  # keep collecting; the next pass retries
                log.exception("call log ingestion failed; retrying")

    # ------------------------------------------------------------ ingestion

    def ingest(self, only: tuple[str, str] | None = None) -> int:
        """Store what the runners wrote since the last pass (of one deployment with ``only``); rows added."""
        with self._lock:
            added = 0
            keys = [only] if only else [(u.name, d.name) for u in _dirs(self.root) for d in _dirs(u)]
            for key in keys:
                added += self._ingest_deployment(key)
            if only is None and time.monotonic() - self._orphans_checked > 60:
                self._drop_orphans()
            return added

    def _ingest_deployment(self, key: tuple[str, str]) -> int:
        row = self.state.one("SELECT config_json FROM deployments WHERE user_id = ? AND id = ?", key)
        folder = deployment_dir(self.home, *key)
        if row is None:  # deleted: its records and files go with it
            self._forget(key, folder)
            return 0
        live = {r["id"] for r in self.state.query(
            "SELECT id FROM replicas WHERE user_id = ? AND deployment_id = ?", key)}
        added = 0
        for rdir in _dirs(folder):
            running = rdir.name in live  # read before the files: a gone replica writes no more
            segments = sorted(p for p in rdir.glob("*" + SEGMENT_SUFFIX) if p.stem.isdigit())
            for i, seg in enumerate(segments):
                n, complete = self._ingest_file(key, rdir.name, seg, running)
                added += n
                if complete and (i < len(segments) - 1 or not running):
                    self._drop_segment(seg)
            if not running and not any(rdir.glob("*" + SEGMENT_SUFFIX)):
                shutil.rmtree(rdir, ignore_errors=True)
        self._retain(key, json.loads(row["config_json"]), added)
        return added

    def _ingest_file(self, key: tuple[str, str], replica_id: str, path: Path, running: bool) -> tuple[int, bool]:
        """``(rows stored, whether the file is read to its end)``; a partial last line waits for the rest."""
        name = str(path)
        offset = self._offsets.get(name, 0)
        try:
            with open(_open_runner_file(path), "rb") as f:
                size = os.fstat(f.fileno()).st_size
                f.seek(offset)
                data = f.read(min(size - offset, _READ_CHUNK)) if size > offset else b""
        except OSError as e:  # gone, or a link (not a runner's records: dropped like a finished segment)
            if not isinstance(e, FileNotFoundError) and e.errno not in (errno.ELOOP, errno.EINVAL):
                raise
            return 0, True
        end = data.rfind(b"\n") + 1
        rows = _rows(key, replica_id, data[:end])
        if end:
            with self.db.tx() as db:
                db.executemany(
                    "INSERT INTO calls (user_id, deployment_id, replica_id, version_id, timestamp, request_id, "
                    "caller, method, status, latency_ms, bytes_in, bytes_out, error, inputs, outputs) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.execute("INSERT OR REPLACE INTO spool_offsets (path, offset) VALUES (?, ?)",
                           (name, offset + end))
            self._offsets[name] = offset + end
        # A runner killed in the middle of a line leaves a fragment no newline will ever end.
        return len(rows), offset + end >= size or not running

    def _drop_segment(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        with self.db.tx() as db:
            db.execute("DELETE FROM spool_offsets WHERE path = ?", (str(path),))
        self._offsets.pop(str(path), None)

    def _forget(self, key: tuple[str, str], folder: Path) -> None:
        prefix = str(folder) + "/"
        with self.db.tx() as db:
            db.execute("DELETE FROM calls WHERE user_id = ? AND deployment_id = ?", key)
            db.execute("DELETE FROM spool_offsets WHERE substr(path, 1, ?) = ?", (len(prefix), prefix))
        for name in [n for n in self._offsets if n.startswith(prefix)]:
            del self._offsets[name]
        shutil.rmtree(folder, ignore_errors=True)
        self._since_retention.pop(key, None)

    def _drop_orphans(self) -> None:
        self._orphans_checked = time.monotonic()
        for r in self.db.query("SELECT DISTINCT user_id, deployment_id FROM calls"):
            key = (r["user_id"], r["deployment_id"])
            if self.state.one("SELECT 1 FROM deployments WHERE user_id = ? AND id = ?", key) is None:
                self._forget(key, deployment_dir(self.home, *key))

    def _retain(self, key: tuple[str, str], config: dict, added: int) -> None:
        """Apply the deployment's retention once enough has arrived, or a while has passed."""
        logger = config.get("inference_logger") or {}
        max_records = int(logger.get("max_records", DEFAULT_MAX_RECORDS))
        max_age = float(logger.get("max_age_seconds", DEFAULT_MAX_AGE))
        count, checked = self._since_retention.get(key, (0, 0.0))
        count += added
        if count < max(1, max_records // 10) and time.monotonic() - checked < 10:
            self._since_retention[key] = (count, checked)
            return
        self._since_retention[key] = (0, time.monotonic())
        with self.db.tx() as db:
            db.execute("DELETE FROM calls WHERE user_id = ? AND deployment_id = ? AND timestamp < ?",
                       (*key, time.time() - max_age))
            cut = db.execute("SELECT timestamp FROM calls WHERE user_id = ? AND deployment_id = ? "
                             "ORDER BY timestamp DESC LIMIT 1 OFFSET ?", (*key, max_records)).fetchone()
            if cut is not None:
                db.execute("DELETE FROM calls WHERE user_id = ? AND deployment_id = ? AND timestamp <= ?",
                           (*key, cut["timestamp"]))

    # ------------------------------------------------------------ reading

    def records(self, user_id: str, deployment_id: str, *, created_at: float, since: float = 0.0,
                limit: int = 1000, inference: bool = False) -> list[cpb.CallRecord]:
        """The newest ``limit`` records at or after ``since``, oldest first.

        Example::

            calls.records("local", "echo", created_at=0, since=time.time() - 60, inference=True)
        """
        key = (user_id, deployment_id)
        self.ingest(only=key)  # what the runners flushed a moment ago is included
        rows = self.db.query(
            "SELECT * FROM calls WHERE user_id = ? AND deployment_id = ? AND timestamp >= ? "
            "ORDER BY timestamp DESC, id DESC LIMIT ?", (*key, max(since, created_at), limit or 1000))
        out = []
        for r in reversed(rows):
            record = cpb.CallRecord(**{c: r[c] for c in _COLUMNS}, replica_id=r["replica_id"],
                                    version_id=r["version_id"])
            if inference:
                record.inputs_json = r["inputs"] or ""
                record.outputs_json = r["outputs"] or ""
            out.append(record)
        return out

    def metrics(self, user_id: str, deployment_id: str, *, created_at: float, replicas: list[str]) -> dict:
        """Requests, errors and latency from the records; in flight and queue depth from the runners' stats."""
        key = (user_id, deployment_id)
        self.ingest(only=key)
        now = time.time()
        where = "user_id = ? AND deployment_id = ? AND timestamp >= ?"
        total = self.db.one(f"SELECT COUNT(*) AS n, COALESCE(SUM(status != 'OK'), 0) AS errors FROM calls "
                            f"WHERE {where}", (*key, created_at))
        recent = self.db.one(f"SELECT COUNT(*) AS n, COALESCE(SUM(status != 'OK'), 0) AS errors FROM calls "
                             f"WHERE {where}", (*key, max(created_at, now - 60)))
        latencies = sorted(r["latency_ms"] for r in self.db.query(
            f"SELECT latency_ms FROM calls WHERE {where} ORDER BY timestamp DESC LIMIT ?",
            (*key, created_at, LATENCY_SAMPLE)))
        in_flight = queued = 0
        reporting = 0
        for rid in replicas:
            stats = read_stats(self.home, user_id, deployment_id, rid)
            if stats is not None:
                reporting += 1
                in_flight += int(stats.get(_wire.STAT_IN_FLIGHT, 0))
                queued += int(stats.get(_wire.STAT_QUEUED, 0))
        return {"requests": total["n"], "errors": total["errors"],
                "requests_last_minute": recent["n"], "errors_last_minute": recent["errors"],
                "p50_ms": _percentile(latencies, 50), "p99_ms": _percentile(latencies, 99),
                "latency_sample": len(latencies), "in_flight": in_flight, "queue_depth": queued,
                "replicas_reporting": reporting}


def _dirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _rows(key: tuple[str, str], replica_id: str, data: bytes) -> list[tuple]:
    """Spool lines as ``calls`` rows, leaving out what is not a record (a fragment, say)."""
    text = data.decode("utf-8", "replace")
    try:  # all lines at once: one parse in C instead of one per line
        records = json.loads("[" + ",".join(text.splitlines()) + "]")
    except ValueError:  # some line is broken: parse them one by one, dropping the bad ones
        records = []
        for line in text.splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    rows = []
    for r in records:
        row = _row(key, replica_id, r)
        if row is not None:
            rows.append(row)
    return rows


def _row(key: tuple[str, str], replica_id: str, r: Any) -> tuple | None:
    """A spool record as a ``calls`` row; None for one that is not a record."""
    try:
        return (*key, replica_id, str(r.get(_wire.REC_VERSION, "")), float(r[_wire.REC_TIME]),
                str(r[_wire.REC_ID]), str(r.get(_wire.REC_CALLER, "")),
                str(r.get(_wire.REC_METHOD, "")), str(r[_wire.REC_STATUS]),
                float(r[_wire.REC_LATENCY]), int(r.get(_wire.REC_BYTES_IN, 0)),
                int(r.get(_wire.REC_BYTES_OUT, 0)), _json(r.get(_wire.REC_ERROR)),
                _json(r.get(_wire.REC_INPUTS)), _json(r.get(_wire.REC_OUTPUTS)))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
