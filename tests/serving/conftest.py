"""Store fixtures: every store test runs on SQLite (a temporary file) and on PostgreSQL.

PostgreSQL tests get a throw-away database, created once per session and dropped at the end;
each test starts from empty tables. Deselect them with `-m "not postgres"`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from serving.store import Store, metadata

if TYPE_CHECKING:
    from scoring_world import World

POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"


@contextmanager
def throwaway_postgres_database(template: str | None = None) -> Iterator[str]:
    """URL of a new database `retain_test_<id>` (a copy of `template` if given), dropped after."""
    name = f"retain_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{copy}')
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


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh database, dropped when the session ends."""
    with throwaway_postgres_database() as url:
        yield url


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


@pytest.fixture(scope="session")
def world_postgres_template() -> Iterator[str]:
    """Name of a PostgreSQL database holding the scoring world's store (see scoring_world.py),
    loaded once; each PostgreSQL scoring test gets a copy of it."""
    from scoring_world import trained_world

    with throwaway_postgres_database() as url:
        with Store.from_url(url) as loaded:
            loaded.create_all()
            loaded.load_dataset(trained_world().dataset)
        yield sa.make_url(url).database or ""


@pytest.fixture(scope="module")
def world() -> World:
    """The trained scoring world (built once per session, see `trained_world`)."""
    from scoring_world import trained_world

    return trained_world()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world_store(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings overrides that put a scoring test's store on each backend: none on SQLite (the
    world's settings copy its SQLite file), a fresh copy of the loaded database on PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    template: str = request.getfixturevalue("world_postgres_template")
    with throwaway_postgres_database(template=template) as url:
        yield {"database_url": url}
