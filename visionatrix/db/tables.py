"""The tables: ``tasks``, ``task_files``, ``workers``, ``worker_commands``, ``node_sets``, ``users``, ``auth_tokens``
and ``server_secrets``.

The queue runs Core statements against these tables (``Task.__table__``); the ORM classes are the schema's one
definition, which the migrations must reproduce (a test compares them on every database).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from visionatrix.db.types import UTCDateTime, json_type

TASK_STATUSES = ("pending", "running", "finished", "failed", "cancelled")
"""The values ``tasks.status`` may hold (the queue's ``TaskStatus``; a unit test keeps the two equal)."""
FILE_KINDS = ("input", "output", "temp")
"""``task_files.kind``: a task's inputs, its outputs and its temporary outputs (previews; see ``storage.files``)."""

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}

# A 64-bit id everywhere but SQLite, where only INTEGER PRIMARY KEY is the auto-incrementing rowid.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: json_type()}


class Task(Base):
    """One run of a flow. Its lifecycle is in ``visionatrix.queue``; its files are rows of ``task_files``."""

    __tablename__ = "tasks"
    __table_args__ = (
        CheckConstraint(_in("status", TASK_STATUSES), name="status"),
        # AUTOINCREMENT: SQLite never reuses the id of a deleted task (ids name the task's folders on disk).
        {"sqlite_autoincrement": True, **MYSQL_TABLE_ARGS},
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]]
    graph: Mapped[dict[str, Any]]
    progress: Mapped[float] = mapped_column(Double())
    current_node: Mapped[str | None] = mapped_column(String(255))
    worker_id: Mapped[str | None] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer)
    cancel_requested: Mapped[bool] = mapped_column(Boolean())
    error: Mapped[dict[str, Any] | None]
    timings: Mapped[dict[str, Any]]
    lease_token: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    prompt_id: Mapped[str | None] = mapped_column(String(36))
    """A task queued through ComfyUI's ``POST /prompt``: its prompt id (a UUID); None for a flow's task."""
    client_id: Mapped[str | None] = mapped_column(String(255))
    """The ComfyUI client (WebSocket ``clientId``) that queued the prompt, whose socket gets its events."""
    prompt_extra: Mapped[dict[str, Any] | None]
    """The prompt's ``number``, ``extra_data`` (secrets removed) and output nodes."""
    peak_vram_bytes: Mapped[int | None] = mapped_column(BigInteger())
    """The most bytes torch held allocated on the worker's GPU during the run, as the worker measured it; None on a
    CPU worker, before the run ends, or when the failure came before it was measured."""
    owner_id: Mapped[int | None] = mapped_column(BigInteger())
    """The ``users.id`` of whoever created the task; None when sign-in was off (the single person's own server)."""
    webhook: Mapped[dict[str, Any] | None]
    """``{"url": ..., "headers": {...}}`` called when the task finishes, fails or is cancelled; None: no webhook."""


# The claim takes the first pending task by (priority desc, id); with the affinity leg, by flow first. Both walk an
# index in order and stop at the first row they can lock. Listing by status, newest first, walks the third.
# On PostgreSQL the two claim indexes hold pending tasks only and the prompt index prompted tasks only
# (``PENDING_ONLY``, ``PROMPTED_ONLY``; migration 0009): every claim and finish writes a new row version, which
# enters each index whose condition it meets, so a task no longer costs an entry in them once it is claimed
# (``docs/queue.md``, "Depth"). The claims name ``status = 'pending'`` as a constant, which the planner needs to
# use a partial index.
PENDING_ONLY = text("status = 'pending'")
PROMPTED_ONLY = text("prompt_id IS NOT NULL")
Index("ix_tasks_claim", Task.status, Task.priority.desc(), Task.id, postgresql_where=PENDING_ONLY)
Index("ix_tasks_claim_flow", Task.flow, Task.status, Task.priority.desc(), Task.id, postgresql_where=PENDING_ONLY)
Index("ix_tasks_status_id", Task.status, Task.id)
Index("ix_tasks_prompt_id", Task.prompt_id, unique=True, postgresql_where=PROMPTED_ONLY)
Index("ix_tasks_owner_status", Task.owner_id, Task.status, Task.id)


class TaskFile(Base):
    """An input or output file of a task; ``name`` is relative to the task's ``input/`` or ``output/`` folder."""

    __tablename__ = "task_files"
    __table_args__ = (
        CheckConstraint(_in("kind", FILE_KINDS), name="kind"),
        UniqueConstraint("task_id", "kind", "name"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                         ForeignKey("tasks.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(512))
    node_id: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger())
    sha256: Mapped[str] = mapped_column(String(64))
    param: Mapped[str | None] = mapped_column(String(255))


class Worker(Base):
    """The last heartbeat of a worker: what it runs, where, and when it was last seen."""

    __tablename__ = "workers"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    worker_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(String(64))
    installed_flows: Mapped[list[str]] = mapped_column(json_type())
    current_task_id: Mapped[int | None] = mapped_column(BigInteger())
    last_seen_at: Mapped[datetime]
    allowed_flows: Mapped[list[str] | None] = mapped_column(json_type())
    """Set by an admin only (None: every flow the worker has installed); a worker's own report never writes it."""
    resources: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    """The device's and the host's memory as the worker last measured them (``WorkerRecord.resources``)."""
    stopped_at: Mapped[datetime | None]
    """When the worker reported that it was shutting down; None while it runs."""
    models: Mapped[dict[str, Any] | None] = mapped_column(json_type())
    """The worker's models as it last reported them (``WorkerRecord.models``)."""


class WorkerCommand(Base):
    """Something an admin asked one worker to do (install models, free memory); the worker takes (and deletes) its
    commands with its next report."""

    __tablename__ = "worker_commands"
    __table_args__ = (Index("ix_worker_commands_worker_id", "worker_id"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    worker_id: Mapped[str] = mapped_column(String(255))
    command: Mapped[dict[str, Any]] = mapped_column(json_type())
    created_at: Mapped[datetime]


class NodeSet(Base):
    """The node types of one kind of ad-hoc graph (a ComfyUI prompt): its tasks' ``flow`` is ``NodeSet.flow``, and a
    worker takes them when it has every one of ``node_types``."""

    __tablename__ = "node_sets"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    flow: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_types: Mapped[list[str]] = mapped_column(json_type())
    created_at: Mapped[datetime]


NAME_TYPE = String(64).with_variant(mysql.VARCHAR(64, collation="utf8mb4_bin"), "mysql", "mariadb")
TOKEN_KINDS = ("session", "api", "worker")
"""``auth_tokens.kind``: a web UI sign-in, a user's API token, a worker's token."""


class User(Base):
    """Someone who may sign in: an admin (everything) or a user (their own tasks)."""

    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("name"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(NAME_TYPE)
    """Case-sensitive on every database (MySQL/MariaDB compare text ignoring case unless told otherwise)."""
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean())
    disabled: Mapped[bool] = mapped_column(Boolean())
    created_at: Mapped[datetime]


class AuthToken(Base):
    """A bearer secret, stored as its SHA-256: a web UI session, a user's API token or a worker's token."""

    __tablename__ = "auth_tokens"
    __table_args__ = (
        CheckConstraint(_in("kind", TOKEN_KINDS), name="kind"),
        UniqueConstraint("token_hash"),
        Index("ix_auth_tokens_user_id", "user_id"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"),
                                                ForeignKey("users.id", ondelete="CASCADE"))
    """The owner of a session or API token; None for a worker's token."""
    name: Mapped[str] = mapped_column(String(255))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ServerSecret(Base):
    """A secret the server generated once and keeps (the webhooks' signing key)."""

    __tablename__ = "server_secrets"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
