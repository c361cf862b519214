"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


def utc_datetime_impl() -> TypeEngine[datetime]:
    """The storage type of :class:`UTCDateTime`: ``timestamptz`` on PostgreSQL, ``DATETIME(6)`` on MySQL/MariaDB
    (microseconds), SQLite's ISO text elsewhere. The first migration spells the same types."""
    return (DateTime(timezone=True)
            .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
            .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"))


class UTCDateTime(TypeDecorator[datetime]):
    """A tz-aware UTC ``datetime`` in Python, whatever the database keeps.

    PostgreSQL stores ``timestamptz``; SQLite and MySQL/MariaDB store the naive UTC value, and this type adds
    ``tzinfo=UTC`` back when reading. A naive datetime given to it is refused: it would be ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.TIMESTAMP(timezone=True))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"a naive datetime cannot be stored (give it a timezone): {value!r}")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def json_type() -> JSON:
    """JSON where Python ``None`` is SQL ``NULL`` (not the JSON literal ``null``)."""
    return JSON(none_as_null=True)
