"""Store fixtures: every store test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL tests get a throw-away database, created once per session and dropped at the end;
each test starts from empty tables. Deselect them with `-m "not postgres"`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from serving.store import Store, metadata

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh database `retain_test_<id>`, dropped when the session ends."""
    name = f"retain_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_SERVER} ({exc.orig}); "
            'run without it with -m "not postgres"'
        )
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'retain.db'}"
    url: str = request.getfixturevalue("postgres_database")
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A store with its tables created, closed after the test."""
    with Store.from_url(database_url) as opened:
        opened.create_all()
        yield opened


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A store on a SQLite file only (for SQLite-specific settings)."""
    with Store.from_url(f"sqlite:///{tmp_path / 'retain.db'}") as opened:
        opened.create_all()
        yield opened
