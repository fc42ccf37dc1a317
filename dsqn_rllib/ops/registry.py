"""The run registry: what must outlive a training process, in Redis or in a local SQLite file.

    registry = open_registry(RegistryConfig(url="redis://127.0.0.1:6379/0"))  # url=None: local
    registry.start_run(record)                                   # status running, config, run dir
    registry.heartbeat(run_id, env_steps=..., updates=..., ...)  # once per training iteration
    registry.record_checkpoint(run_id, CheckpointKind.LATEST, path, env_steps)
    registry.record_evaluation(run_id, evaluation)               # step, game, seed, mean/std/max
    registry.finish(run_id, RunStatus.FINISHED)                  # STOPPED, or FAILED + error
    for run in registry.list_runs():                             # what `dsqn runs` prints
        run.status_at(time.time(), stale_after_s=120)            # RUNNING turns LOST when silent

A run killed with -9 writes no final status: it shows as ``lost`` once its last heartbeat is
older than ``stale_after_s`` (computed by the reader; heartbeats carry the writer's clock).

Redis key layout (prefix P, ``dsqn`` by default; every key of a registry starts with ``P:``)::

    P:runs             sorted set   run id -> started_at (the listing)
    P:run:<id>         hash         RunRecord fields, each value JSON (config is a JSON object)
    P:run:<id>:evals   hash         "<env_steps:015d>:<attempt>" -> evaluation record (JSON)

The local store mirrors that layout in one SQLite file (``<run root>/registry.sqlite3``, next to
the run directories): tables ``runs``, ``run_fields`` (run id, field, value) and
``evaluations`` (run id, key, record). Each write is one transaction (WAL journal, busy timeout),
so concurrent writers from several processes serialize and a process killed with -9 leaves
either the whole write or none of it.

Evaluations are keyed by (env_steps, attempt): ``attempt`` counts the processes that have
trained the run (0, then +1 per resume). A resumed run continues from its latest checkpoint,
which is the source of truth for the step count; evaluations an earlier attempt made after that
checkpoint evaluated weights the resumed run never had. They are kept, marked
``superseded: true`` (see ``reconcile_evaluations``), and are not part of the run's history.

A final record that cannot be written (the registry is down when the run ends) is not lost:
``defer_record`` keeps it as a JSON file in ``<run root>/registry-outbox/``, and the next
``open_registry`` of that registry from that run root (``dsqn runs``, ``dsqn train --resume``,
a new run) writes it, unless the registry has heard of a later attempt of the run since.

The Redis password is never part of a URL or a config: it comes from ``DSQN_REDIS_PASSWORD``
(or ``REDISCLI_AUTH``, redis-cli's variable) when the connection is opened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

URL_ENV = "DSQN_REDIS_URL"
PASSWORD_ENVS = ("DSQN_REDIS_PASSWORD", "REDISCLI_AUTH")
LOCAL_STORE_FILE = "registry.sqlite3"
DEFAULT_PREFIX = "dsqn"
_PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_.:-]+")


class RegistryError(RuntimeError):
    """The registry cannot be reached or written; the message is one line without secrets."""


class RunStatus(str, Enum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"
    """Stopped on request (SIGINT / SIGTERM) after a final checkpoint: resumable as it is."""
    LOST = "lost"
    """Never written: a RUNNING run whose heartbeat is older than the reader's threshold."""


class CheckpointKind(str, Enum):
    LATEST = "latest"
    BEST = "best"


@dataclass(frozen=True)
class RegistryConfig:
    """Where runs are recorded, and how readers judge them."""

    url: str | None = None
    """redis://host:port/db (or rediss://) of a Redis server; None: the local SQLite store.
    A user name may be in the URL, the password never (DSQN_REDIS_PASSWORD)."""
    prefix: str = DEFAULT_PREFIX
    """Namespace of every Redis key, so teams, experiments and tests never collide."""
    local_path: Path = Path("runs") / LOCAL_STORE_FILE
    """The local store's SQLite file (used when url is None)."""
    stale_after_s: float = 120.0
    """A running run whose last heartbeat (one per ~2 s iteration) is older shows as lost."""
    connect_timeout_s: float = 5.0
    """Seconds to wait for Redis to answer before giving up with one line."""

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        prefix: str | None = None,
        run_root: str | Path = "runs",
        **options: Any,
    ) -> RegistryConfig:
        """``url``, else $DSQN_REDIS_URL, else the local store under ``run_root``; validated."""
        url = url or os.environ.get(URL_ENV) or None
        return cls(
            url=url,
            prefix=prefix or DEFAULT_PREFIX,
            local_path=Path(run_root).expanduser() / LOCAL_STORE_FILE,
            **options,
        ).validate()

    def validate(self) -> RegistryConfig:
        if self.url is not None:
            check_registry_url(self.url)
        if not _PREFIX_PATTERN.fullmatch(self.prefix):
            raise _config_error(
                f"registry_prefix must be letters, digits and _.:- only, got {self.prefix!r}"
            )
        for name in ("stale_after_s", "connect_timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise _config_error(f"{name} must be a number > 0, got {value!r}")
        return self

    @property
    def where(self) -> str:
        """The store in words (no password: none can be in the URL)."""
        return self.url if self.url is not None else str(self.local_path)


def check_registry_url(url: str) -> None:
    """One-line ConfigError unless ``url`` is a password-free redis:// or rediss:// URL."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (parsing the port raises ValueError when it is not a number)
    except ValueError:
        raise _config_error(f"registry_url is not a valid URL: {url!r}") from None
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise _config_error(
            f"registry_url must look like redis://host:6379/0 (or rediss://), got {url!r}"
        )
    if parts.password:
        # The URL is saved in train_config.json and printed: the password must not be in it.
        raise _config_error(
            "registry_url must not contain a password; put it in DSQN_REDIS_PASSWORD"
        )


def _config_error(message: str) -> Exception:
    # Imported on use: dsqn_rllib.config pulls in torch, and recording a run should not.
    from dsqn_rllib.errors import ConfigError

    return ConfigError(message)


def password_from_env() -> str | None:
    for name in PASSWORD_ENVS:
        if os.environ.get(name):
            return os.environ[name]
    return None


# --------------------------------------------------------------------------------------------
# Records


@dataclass
class RunRecord:
    """One run as the registry holds it (every field is stored; None where not known yet)."""

    run_id: str
    run_dir: str = ""
    """Absolute path of the run directory (what ``dsqn train --resume RUN_ID`` continues)."""
    env: str = ""
    """Atari game short name or Gymnasium env id."""
    model: str = ""
    status: str = RunStatus.RUNNING.value
    config: dict[str, Any] = field(default_factory=dict)
    """The TrainConfig as JSON (no secrets: a registry URL in it carries no password)."""
    started_at: float = 0.0
    heartbeat_at: float = 0.0
    finished_at: float | None = None
    env_steps: int = 0
    total_steps: int = 0
    updates: int = 0
    episodes: int = 0
    attempt: int = 0
    """0 for the first process, +1 per resume."""
    latest_checkpoint: str | None = None
    latest_checkpoint_steps: int | None = None
    best_checkpoint: str | None = None
    best_checkpoint_steps: int | None = None
    best_eval_return: float | None = None
    error: str | None = None
    warning: str | None = None
    """A health warning of the running job, e.g. a spiking network whose layers never fire
    (``dsqn_rllib.snn.spike_health``); None while all is well."""
    host: str = ""
    pid: int = 0

    def to_fields(self) -> dict[str, str]:
        return {k: json.dumps(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> RunRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: json.loads(v) for k, v in fields.items() if k in names})

    def status_at(self, now: float, stale_after_s: float) -> RunStatus:
        """The status a reader should show: RUNNING turns LOST when the heartbeat is older than
        ``stale_after_s``, or at once when the writer was a process on this host that is gone."""
        status = RunStatus(self.status)
        if status is not RunStatus.RUNNING:
            return status
        if now - self.heartbeat_at > stale_after_s:
            return RunStatus.LOST
        if self.host == this_host() and self.pid > 0 and not _process_alive(self.pid):
            return RunStatus.LOST
        return status


def evaluation_key(evaluation: dict[str, Any]) -> str:
    """Identity of an evaluation within a run; sorts by step, then attempt."""
    return f"{int(evaluation['env_steps']):015d}:{int(evaluation.get('attempt', 0))}"


def merge_evaluations(*sources: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The union of evaluation records by key; ``superseded`` is sticky (once set, stays)."""
    merged: dict[str, dict[str, Any]] = {}
    for source in sources:
        for record in source:
            record = {"attempt": 0, **record}
            key = evaluation_key(record)
            if key in merged:
                superseded = bool(merged[key].get("superseded") or record.get("superseded"))
                record = {**merged[key], **record}
                if superseded:
                    record["superseded"] = True
            merged[key] = record
    return sorted(merged.values(), key=lambda r: (r["attempt"], r["env_steps"]))


def reconcile_evaluations(
    records: Sequence[dict[str, Any]], checkpoint_steps: int, attempt: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Evaluations of a run about to be resumed as ``attempt`` from a checkpoint at
    ``checkpoint_steps`` env steps.

    Returns (all records in the order they were made, earlier attempts' evaluations past the
    checkpoint marked ``superseded``; the run's history: the others, by env step). Nothing is
    dropped: an evaluation that finished after the checkpoint was written but is of weights
    from before it (env_steps <= checkpoint_steps) stays in the history.
    """
    every = []
    for record in merge_evaluations(records):
        if record["attempt"] < attempt and record["env_steps"] > checkpoint_steps:
            record = {**record, "superseded": True}
        every.append(record)
    history = sorted(
        (r for r in every if not r.get("superseded") and r["env_steps"] <= checkpoint_steps),
        key=lambda r: r["env_steps"],
    )
    return every, history


# --------------------------------------------------------------------------------------------
# The interface


class RunRegistry(ABC):
    """Run records with two back ends; the semantics live here, storage in the subclasses.

    Storage is a hash of fields per run, an index of run ids, and a hash of evaluations per
    run: exactly what Redis offers, and three small tables in SQLite.
    """

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self.flushed: list[str] = []
        """Run ids whose deferred records ``open_registry`` wrote (see ``defer_record``)."""

    @property
    def where(self) -> str:
        return self.config.where

    # --- what a training run writes ----------------------------------------------------------

    def start_run(self, record: RunRecord) -> None:
        """Create (or, on resume, overwrite) the run's whole record."""
        self._write_fields(record.run_id, record.to_fields(), index_score=record.started_at)

    def heartbeat(
        self,
        run_id: str,
        *,
        env_steps: int,
        updates: int,
        episodes: int,
        total_steps: int,
        warning: str | None = None,
    ) -> None:
        """Progress, liveness and the current health warning (None: none) in one write (call
        once per iteration, not per step)."""
        self._write_fields(
            run_id,
            _encode(
                heartbeat_at=time.time(),
                env_steps=int(env_steps),
                updates=int(updates),
                episodes=int(episodes),
                total_steps=int(total_steps),
                warning=warning,
            ),
        )

    def record_checkpoint(
        self,
        run_id: str,
        kind: CheckpointKind,
        path: str | Path,
        env_steps: int,
        best_eval_return: float | None = None,
    ) -> None:
        values: dict[str, Any] = {
            f"{kind.value}_checkpoint": str(path),
            f"{kind.value}_checkpoint_steps": int(env_steps),
        }
        if best_eval_return is not None:
            values["best_eval_return"] = float(best_eval_return)
        self._write_fields(run_id, _encode(**values))

    def record_evaluation(self, run_id: str, evaluation: dict[str, Any]) -> None:
        """Add (or replace: same env_steps and attempt) one evaluation record."""
        self.put_evaluations(run_id, [evaluation])

    def put_evaluations(self, run_id: str, evaluations: Sequence[dict[str, Any]]) -> None:
        if evaluations:
            self._write_evaluations(run_id, {evaluation_key(e): json.dumps(e) for e in evaluations})

    def finish(self, run_id: str, status: RunStatus, error: str | None = None) -> None:
        self._write_fields(
            run_id,
            _encode(status=status.value, finished_at=time.time(), error=error),
        )

    # --- what readers ask ------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        fields = self._read_fields(run_id)
        return RunRecord.from_fields(fields) if fields.get("run_id") else None

    def list_runs(self) -> list[RunRecord]:
        """Every run with a full record, oldest first."""
        runs = [self.get_run(run_id) for run_id in self._run_ids()]
        return [r for r in runs if r is not None]

    def evaluations(self, run_id: str) -> list[dict[str, Any]]:
        """Every evaluation of the run (superseded ones included), in the order made."""
        return merge_evaluations([json.loads(v) for v in self._read_evaluations(run_id).values()])

    # --- storage (the back ends) -----------------------------------------------------------

    @abstractmethod
    def _write_fields(
        self, run_id: str, fields: dict[str, str], index_score: float | None = None
    ) -> None:
        """Set some fields of the run's hash (and index the run when a score is given)."""

    @abstractmethod
    def _read_fields(self, run_id: str) -> dict[str, str]: ...

    @abstractmethod
    def _run_ids(self) -> list[str]: ...

    @abstractmethod
    def _write_evaluations(self, run_id: str, items: dict[str, str]) -> None: ...

    @abstractmethod
    def _read_evaluations(self, run_id: str) -> dict[str, str]: ...

    @abstractmethod
    def delete_run(self, run_id: str) -> None:
        """Forget a run (its files stay where they are)."""

    def close(self) -> None:  # noqa: B027 (a back end without resources has nothing to close)
        pass


def _encode(**values: Any) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in values.items()}


# --------------------------------------------------------------------------------------------
# Redis


def _redis_reason(err: Exception) -> str:
    """redis-py's 'Error 111 connecting to host:port. Connection refused.' -> the reason."""
    text = str(err).strip() or type(err).__name__
    match = re.match(r"Error -?\d+ connecting to \S+?\. (.+?)\.?$", text)
    return match.group(1) if match else text.splitlines()[0].rstrip(".")


class RedisRunRegistry(RunRegistry):
    """Runs in Redis under ``config.prefix`` (key layout: module docstring)."""

    def __init__(self, config: RegistryConfig) -> None:
        import redis

        super().__init__(config)
        assert config.url is not None
        self._password = password_from_env()
        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self._redis = redis.Redis.from_url(
            config.url,
            password=self._password,
            socket_connect_timeout=config.connect_timeout_s,
            socket_timeout=max(config.connect_timeout_s, 10.0),
            decode_responses=True,
        )
        with self._guard():
            self._redis.ping()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as err:
            reason = _redis_reason(err)
            if self._password:
                reason = reason.replace(self._password, "***")
            message = f"cannot reach the run registry at {self.where}: {reason}"
            raise RegistryError(message) from None

    def _key(self, *parts: str) -> str:
        return ":".join((self.config.prefix, *parts))

    def _write_fields(
        self, run_id: str, fields: dict[str, str], index_score: float | None = None
    ) -> None:
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._key("run", run_id), mapping=fields)
            if index_score is not None:
                pipe.zadd(self._key("runs"), {run_id: index_score})
            pipe.execute()

    def _read_fields(self, run_id: str) -> dict[str, str]:
        with self._guard():
            return dict(self._redis.hgetall(self._key("run", run_id)))  # type: ignore[arg-type]

    def _run_ids(self) -> list[str]:
        with self._guard():
            return list(self._redis.zrange(self._key("runs"), 0, -1))  # type: ignore[arg-type]

    def _write_evaluations(self, run_id: str, items: dict[str, str]) -> None:
        with self._guard():
            self._redis.hset(self._key("run", run_id, "evals"), mapping=items)

    def _read_evaluations(self, run_id: str) -> dict[str, str]:
        with self._guard():
            return dict(self._redis.hgetall(self._key("run", run_id, "evals")))  # type: ignore[arg-type]

    def delete_run(self, run_id: str) -> None:
        with self._guard():
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(self._key("run", run_id), self._key("run", run_id, "evals"))
            pipe.zrem(self._key("runs"), run_id)
            pipe.execute()

    def close(self) -> None:
        self._redis.close()


# --------------------------------------------------------------------------------------------
# Local store (SQLite)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (run_id TEXT PRIMARY KEY, started_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS run_fields (
    run_id TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, field));
CREATE TABLE IF NOT EXISTS evaluations (
    run_id TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL,
    PRIMARY KEY (run_id, key));
"""


class LocalRunRegistry(RunRegistry):
    """Runs in one SQLite file: no server, safe for several writing processes, survives -9."""

    def __init__(self, config: RegistryConfig) -> None:
        super().__init__(config)
        path = config.local_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: every write below is one explicit BEGIN IMMEDIATE ... COMMIT.
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            # WAL: readers (`dsqn runs`) never block the trainer; NORMAL sync loses nothing
            # when a process dies, only (at worst) the last commits on a power cut.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise RegistryError(f"cannot open the run registry at {self.where}: {err}") from None

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as err:
            raise RegistryError(f"cannot write the run registry at {self.where}: {err}") from None

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise RegistryError(f"cannot read the run registry at {self.where}: {err}") from None

    def _write_fields(
        self, run_id: str, fields: dict[str, str], index_score: float | None = None
    ) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO run_fields (run_id, field, value) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, field) DO UPDATE SET value = excluded.value",
                [(run_id, k, v) for k, v in fields.items()],
            )
            if index_score is not None:
                db.execute(
                    "INSERT INTO runs (run_id, started_at) VALUES (?, ?) "
                    "ON CONFLICT (run_id) DO UPDATE SET started_at = excluded.started_at",
                    (run_id, index_score),
                )

    def _read_fields(self, run_id: str) -> dict[str, str]:
        rows = self._query("SELECT field, value FROM run_fields WHERE run_id = ?", (run_id,))
        return dict(rows)

    def _run_ids(self) -> list[str]:
        return [r[0] for r in self._query("SELECT run_id FROM runs ORDER BY started_at", ())]

    def _write_evaluations(self, run_id: str, items: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO evaluations (run_id, key, record) VALUES (?, ?, ?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET record = excluded.record",
                [(run_id, k, v) for k, v in items.items()],
            )

    def _read_evaluations(self, run_id: str) -> dict[str, str]:
        return dict(self._query("SELECT key, record FROM evaluations WHERE run_id = ?", (run_id,)))

    def delete_run(self, run_id: str) -> None:
        with self._transaction() as db:
            for table in ("runs", "run_fields", "evaluations"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

    def close(self) -> None:
        self._db.close()


def open_registry(config: RegistryConfig) -> RunRegistry:
    """The back end ``config`` names, connected (RegistryError, one line, when it cannot be).
    Records deferred while it was unreachable (``defer_record``) are written now; their run ids
    are in ``registry.flushed``."""
    config.validate()
    registry: RunRegistry = (
        RedisRunRegistry(config) if config.url is not None else LocalRunRegistry(config)
    )
    registry.flushed = flush_outbox(registry)
    return registry


# --------------------------------------------------------------------------------------------
# Outbox: final records that waited for the registry to come back

OUTBOX_DIR = "registry-outbox"


def outbox_dir(config: RegistryConfig) -> Path:
    """Where records for ``config``'s registry wait: next to the run directories."""
    return config.local_path.parent / OUTBOX_DIR


def defer_record(
    config: RegistryConfig,
    record: RunRecord,
    evaluations: Sequence[dict[str, Any]] = (),
    *,
    status: RunStatus | None = None,
    error: str | None = None,
) -> Path:
    """Keep ``record`` (with its final ``status`` and ``error`` when given) and the run's
    ``evaluations`` for the next ``open_registry`` of ``config``'s registry: call it when the
    final registry write of a run failed. Returns the file (written atomically)."""
    if status is not None:
        record = dataclasses.replace(
            record, status=status.value, finished_at=time.time(), error=error
        )
    folder = outbox_dir(config)
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "url": config.url,
        "prefix": config.prefix,
        "record": dataclasses.asdict(record),
        "evaluations": list(evaluations),
        "deferred_at": time.time(),
    }
    path = folder / f"{config.prefix}.{record.run_id}.json"
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(entry, indent=2))
    os.replace(staging, path)  # a reader sees the whole entry or none
    return path


def flush_outbox(registry: RunRegistry) -> list[str]:
    """Write the deferred records of ``registry`` (same URL and prefix) and remove their files;
    returns their run ids. A record the registry has since moved past (a later attempt, or a
    final status of the same attempt) is dropped, not written over it. Failures leave the file
    for the next try, silently: this runs inside commands that have work of their own."""
    folder = outbox_dir(registry.config)
    if not folder.is_dir():
        return []
    flushed = []
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            if (entry.get("url"), entry.get("prefix")) != (
                registry.config.url,
                registry.config.prefix,
            ):
                continue
            record = RunRecord(**entry["record"])
            current = registry.get_run(record.run_id)
            if current is None or _outbox_is_newer(record, current):
                registry.start_run(record)
                registry.put_evaluations(record.run_id, entry.get("evaluations", []))
                flushed.append(record.run_id)
            path.unlink()
        except (RegistryError, OSError, ValueError, TypeError, KeyError):
            continue
    return flushed


def _outbox_is_newer(deferred: RunRecord, current: RunRecord) -> bool:
    if deferred.attempt != current.attempt:
        return deferred.attempt > current.attempt
    # Same process: its final status is news unless a write got through after all.
    return current.status == RunStatus.RUNNING.value


def this_host() -> str:
    return socket.gethostname()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: dead for us
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
