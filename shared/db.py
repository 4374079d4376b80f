"""One SQLAlchemy engine per service database, transactions, and Alembic migrations.

PostgreSQL in production; SQLite in the embedded mode, where every transaction starts with
BEGIN IMMEDIATE so the threads of one process queue for the write lock instead of failing with
"database is locked" when a reader later writes.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Callable, Iterator

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)


def normalise_url(url: str) -> str:
    """postgresql:// means psycopg 3 here (the only driver installed)."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://"):]
    return url


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, name: str = "tierline"):
        self.url = normalise_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 30})
            _sqlite_setup(self.engine)
        else:
            # No pool_pre_ping: it cost one round trip of the 5-10 in every transaction. A
            # connection the server dropped (restart) fails its first statement instead; SQLAlchemy
            # then refreshes the whole pool, consumers retry such errors as transient and HTTP
            # answers 503 + Retry-After (shared/http.py). application_name shows in pg_stat_activity.
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                                        connect_args={"application_name": name[:63]})
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._after_commit: list[Callable[[Session], None]] = []

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def on_commit(self, callback: Callable[[Session], None]) -> None:
        """Call back after every committed transaction (the outbox relay uses it to wake up)."""
        self._after_commit.append(callback)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: commit on success, rollback on any exception."""
        session = self._sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for callback in self._after_commit:
            callback(session)

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception as exc:  # readiness: any failure means not ready
            log.warning("database not reachable: %s", exc)
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_setup(engine: Engine) -> None:
    # pysqlite's own transaction handling is switched off so that BEGIN IMMEDIATE can be issued.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def insert_ignoring_duplicates(session: Session, table: Table, values: dict) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True if the row was inserted. A concurrent inserter of
    the same key makes this wait for its commit and then skip, instead of failing the transaction.
    (RETURNING, because the driver's rowcount is not reliable for a skipped row.)"""
    key = next(iter(table.primary_key.columns)).name
    return bool(inserted_keys(session, table, key, [values]))


def inserted_keys(session: Session, table: Table, key: str, rows: list[dict]) -> set:
    """A multi-row `insert_ignoring_duplicates`: the values of `key` of the rows inserted."""
    if not rows:
        return set()
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(table).values(rows).on_conflict_do_nothing().returning(table.c[key])
    return {row[0] for row in session.execute(statement)}


_migrate_lock = threading.Lock()


def migrate(db: Database, package: str) -> None:
    """Upgrade the service's database to the newest revision of `<package>/migrations`.

    On PostgreSQL an advisory lock keeps replicas that start together from racing.
    """
    location = str(resources.files(package) / "migrations")
    cfg = Config()
    cfg.set_main_option("script_location", location)
    lock_id = int.from_bytes(hashlib.sha256(package.encode()).digest()[:7], "big")
    with _migrate_lock, db.engine.begin() as conn:
        if db.is_postgres:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def run_migrations_online() -> None:
    """The body of every service's migrations/env.py (one copy, here)."""
    from alembic import context

    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=None,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
