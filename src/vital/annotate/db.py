"""The annotation database: tables, a versioned schema, and safe transactions.

SQLite (WAL mode) by default, PostgreSQL by URL; both through SQLAlchemy.

Two invariants carry the app's guarantees and are enforced by the database
itself, so they hold with any number of server threads or processes:

* ``tasks (item_id, user_id)`` is unique: nobody gets the same item twice;
* ``items.assigned`` is only ever raised by a conditional
  ``UPDATE ... WHERE assigned < overlap``: an item goes to at most ``overlap``
  annotators (and ``tasks (item_id, slot)`` is unique besides).

An answer lives on its task row (one row per annotator and item), so a
retried or doubled submission can only overwrite it, never add a second one.

Images are served only from the folders recorded in ``image_folders`` when the
corpus was loaded (see :mod:`vital.annotate.images`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DatabaseError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from vital.errors import InputError

#: Bump when the tables change, and add the step that upgrades the previous version to MIGRATIONS.
SCHEMA_VERSION = 2

KINDS = ("compare", "demos")


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class SchemaInfo(Base):
    __tablename__ = "vital_schema"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class FigureRow(Base):
    """A figure of the loaded corpus; ``record`` is the full figure record (image path absolute)."""

    __tablename__ = "figures"

    id: Mapped[str] = mapped_column(String(512), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer)
    image: Mapped[str | None] = mapped_column(Text, nullable=True)
    record: Mapped[dict[str, Any]]


class ImageFolder(Base):
    """A folder images may be served from (symlinks resolved): one the corpus was loaded with."""

    __tablename__ = "image_folders"

    path: Mapped[str] = mapped_column(Text, primary_key=True)


class CandidateRow(Base):
    __tablename__ = "candidates"

    id: Mapped[str] = mapped_column(String(512), primary_key=True)
    figure_id: Mapped[str] = mapped_column(ForeignKey("figures.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    record: Mapped[dict[str, Any]]


class Item(Base):
    """Something to annotate (a pair to compare, or a figure's candidates to choose from).

    ``candidate_ids`` is the canonical order; each annotator sees their own shuffled order.
    """

    __tablename__ = "items"
    __table_args__ = (Index("ix_items_routing", "kind", "assigned", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    figure_id: Mapped[str] = mapped_column(ForeignKey("figures.id"), index=True)
    candidate_ids: Mapped[list[str]]
    seq: Mapped[int] = mapped_column(Integer)
    assigned: Mapped[int] = mapped_column(Integer, default=0)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class LoginToken(Base):
    """A one-time login link; only the SHA-256 of the token is stored."""

    __tablename__ = "login_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    used_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class SessionRow(Base):
    __tablename__ = "sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


class Task(Base):
    """One item given to one annotator, with their display order and (once given) their answer.

    ``label`` is the answer in display-independent form, for agreement: for a
    comparison the preferred candidate id, ``"tie"`` or ``"both_bad"``; for
    demonstrations the best candidate id or ``"none"``.
    """

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_tasks_item_user"),
        UniqueConstraint("item_id", "slot", name="uq_tasks_item_slot"),
        Index("ix_tasks_user_kind", "user_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(16))
    slot: Mapped[int] = mapped_column(Integer)
    display_order: Mapped[list[str]]
    assigned_at: Mapped[float] = mapped_column(Float)
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    label: Mapped[str | None] = mapped_column(String(512), nullable=True)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    answered_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    revisions: Mapped[int] = mapped_column(Integer, default=0)


def _add_image_folders(session: Session) -> None:
    """Version 2 adds ``image_folders`` (``create_all`` makes the table).

    It stays empty: the folders a version-1 database was loaded from are not
    known, so it serves no image until its corpus is loaded again.
    """


#: version -> function upgrading a database from ``version - 1``.
MIGRATIONS: dict[int, Any] = {2: _add_image_folders}


def database_url(value: str | Path) -> str:
    """A SQLAlchemy URL; a plain path means a SQLite file, and ``postgresql://`` uses psycopg 3."""
    text = str(value)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser()}"
    if text.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + text.split("://", 1)[1]
    return text


def _make_engine(url: str) -> Engine:
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ArgumentError, ImportError) as exc:
        raise InputError(f"cannot use database URL ({exc})", field="--db") from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    """WAL journal, enforced foreign keys, and SQLAlchemy-controlled transactions.

    pysqlite's own transaction handling begins transactions lazily, at the
    first write; SQLite then cannot upgrade a reader to a writer when another
    connection wrote meanwhile and fails with "database is locked".  We emit
    BEGIN ourselves instead: ``BEGIN IMMEDIATE`` (take the write lock up
    front, waiting up to the busy timeout) for sessions opened for writing.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get("vital_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


class AnnotationDB:
    """An open annotation database.

    >>> db = AnnotationDB("sqlite:///annotations.db")
    >>> with db.write() as session: ...
    """

    def __init__(self, url: str | Path = "sqlite:///annotations.db", *, create: bool = True) -> None:
        """``create=False`` (for exports and statistics) refuses a SQLite file that does not exist yet,
        so a mistyped ``--db`` is an error instead of a new, empty database."""
        self.url = database_url(url)
        if self.url.startswith("sqlite:///") and not self.url.startswith("sqlite:///:memory:"):
            path = Path(self.url.removeprefix("sqlite:///")).expanduser()
            if not create and not path.is_file():
                raise InputError("no annotation database here (check --db)", path=path, field="--db")
            if not create and path.stat().st_size == 0:
                raise InputError("an empty file, not an annotation database (check --db)", path=path, field="--db")
            path.parent.mkdir(parents=True, exist_ok=True)
        self.engine = _make_engine(self.url)
        self._writer = self.engine.execution_options(vital_write=True)
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else nullcontext()
        self._ensure_schema()

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages."""
        return self.engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"AnnotationDB({self.display_url!r})"

    @contextmanager
    def read(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success; on SQLite it holds the write lock from the start.

        SQLite admits one writer at a time, and a writer that finds the lock
        taken sleeps in growing steps (up to 100 ms) before retrying; threads of
        this process therefore queue on a Python lock instead, which wakes the
        next one as soon as the previous commits.
        """
        with self._write_lock, Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def _ensure_schema(self) -> None:
        try:
            Base.metadata.create_all(self.engine)
        except DatabaseError as exc:  # also a file that is not a database
            reason = " ".join(str(exc.orig).split())  # drivers' messages span lines
            raise InputError(f"cannot open the database ({reason})", path=self.display_url) from None
        with self.write() as session:
            info = session.get(SchemaInfo, 1)
            if info is None:
                session.add(SchemaInfo(id=1, version=SCHEMA_VERSION))
                return
            if info.version > SCHEMA_VERSION:
                raise InputError(
                    f"the database has schema version {info.version}, newer than this vital "
                    f"understands ({SCHEMA_VERSION}); upgrade vital",
                    path=self.display_url,
                )
            for version in range(info.version + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](session)
            info.version = SCHEMA_VERSION

    def close(self) -> None:
        self.engine.dispose()


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (bulk inserts, conditional updates with RETURNING)."""
    return cast(Table, model.__table__)


def image_folders(session: Session) -> list[str]:
    """The folders images may be served from (resolved paths)."""
    return list(session.scalars(select(ImageFolder.path)))


#: An open database, or where one is: a SQLite file path or a database URL.
Database = AnnotationDB | str | Path


@contextmanager
def opened(db: Database, *, create: bool = True) -> Iterator[AnnotationDB]:
    """``db`` itself if it is open; else the database it names, opened for the block and closed after.

    ``create=False`` refuses a SQLite file that does not exist (see :class:`AnnotationDB`).
    """
    if isinstance(db, AnnotationDB):
        yield db
        return
    database = AnnotationDB(db, create=create)
    try:
        yield database
    finally:
        database.close()
