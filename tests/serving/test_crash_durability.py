"""Crash durability (issue #8, item 3): what `retain serve` acknowledged survives a SIGKILL.

A real `retain serve` (two worker processes in a process group of their own) takes concurrent
event batches, recommendations (each one a logged decision) and outcomes; the whole group is
killed with SIGKILL in the middle of that traffic and started again on the same store. Every
write that was acknowledged (a 2xx response received in full) must then be stored exactly once,
and sending it again must store nothing more. Writes in flight at the kill may or may not be
there, but only whole (an event batch is all or nothing) and only once. On SQLite (WAL,
synchronous=FULL) and PostgreSQL (synchronous_commit=on).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from serving.store import OUTCOME_KINDS, Store, decisions, events, outcomes
from tests.serving.scoring_world import KEYS, World

RETAIN_SERVE = [str(Path(sys.executable).with_name("retain"))]  # the console script users run
POSTGRES_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
WORKERS = 2  # while the traffic runs; restarted with one (it only has to answer the checks)
LOAD_SECONDS = 2.0  # of traffic before the kill, at the least …
MIN_ACKED = {"event batches": 10, "decisions": 20, "outcomes": 10}  # … and until this is acked
BATCH = 10  # events per request
EVENT_THREADS = 2
DECISION_THREADS = 3
PREFIX = "crash-"


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.slow),
        pytest.param("postgresql", marks=[pytest.mark.slow, pytest.mark.postgres]),
    ]
)
def store_url(request: pytest.FixtureRequest, world: World, tmp_path: Path) -> Iterator[str]:
    """The world's store (customers and their events), on each backend, for this test alone."""
    if request.param == "sqlite":
        database = tmp_path / "retain.db"
        shutil.copy(world.template_db, database)
        yield f"sqlite:///{database}"
        return
    name = f"retain_crash_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = f"{POSTGRES_SERVER}/{name}"
        with Store(url) as store:
            store.create_all()
            store.load_dataset(world.dataset)
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


# --- the service as a process group --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(world: World, url: str, workdir: Path) -> dict[str, str]:
    keys = [{"name": scope, "key": key, "scopes": [scope]} for scope, key in KEYS.items()]
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("RETAIN_")}
    return inherited | {
        "RETAIN_DATABASE_URL": url,
        "RETAIN_MLFLOW_TRACKING_URI": world.tracking_uri,
        "RETAIN_MLFLOW_ARTIFACT_ROOT": str(world.root / "mlruns" / "artifacts"),
        "RETAIN_OFFERS_PATH": str(world.offers_path),
        "RETAIN_DATA_DIR": str(workdir / "data"),
        "RETAIN_API_KEYS": json.dumps(keys),
        "RETAIN_FEATURE_REFRESH_SECONDS": "0",  # no background warm-up competing for the CPUs
    }


@dataclass
class Service:
    """`retain serve` in its own session (process group), so that one signal reaches it all."""

    env: dict[str, str]
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    log: Path | None = None
    starts: int = 0

    def start(self, workers: int) -> None:
        self.starts += 1
        self.port = free_port()
        self.log = self.workdir / f"serve-{self.starts}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*RETAIN_SERVE, "serve", "--port", str(self.port), "--workers", str(workers)],
                env=self.env,
                cwd=self.workdir,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 240.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"retain serve exited ({self.process.returncode}): {self.log_tail()}")
            try:
                status, _ = request(self.connect(), "GET", "/readyz")
                # Both workers answer on one port: ready twice in a row is very likely both.
                if status == 200 and request(self.connect(), "GET", "/readyz")[0] == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"retain serve not ready within {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.2)

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def kill(self) -> None:
        """SIGKILL to the whole group: the supervisor and every worker, mid-request."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self.process = None

    def log_tail(self) -> str:
        return "" if self.log is None else self.log.read_text(errors="replace")[-3000:]


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: Any = None, scope: str = "crm"
) -> tuple[int, Any]:
    """One request on a kept-alive connection; raises OSError / HTTPException if it breaks."""
    headers = {"X-API-Key": KEYS[scope], "Content-Type": "application/json"}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else None


# --- the traffic ---------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Concurrent writers; they record what was sent and what was acknowledged."""

    port: int
    customers: list[str]
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sent_batches: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    acked_batches: list[str] = field(default_factory=list)
    recommends_sent: int = 0
    acked_decisions: dict[str, tuple[str, str]] = field(default_factory=dict)
    acked_outcomes: list[tuple[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    killed_at: float = float("inf")
    cut_off: int = 0  # requests sent before the kill that it left without an answer

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                "event batches": len(self.acked_batches),
                "decisions": len(self.acked_decisions),
                "outcomes": len(self.acked_outcomes),
            }

    def run(self, work: Any, seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            while not self.stop.is_set():
                work(conn, rng, seed)
        except (OSError, http.client.HTTPException):
            pass  # the service is gone: this thread is done
        finally:
            conn.close()

    def call(
        self,
        conn: http.client.HTTPConnection,
        method: str,
        path: str,
        body: Any,
        scope: str = "crm",
    ) -> tuple[int, Any]:
        sent = time.monotonic()
        try:
            return request(conn, method, path, body, scope)
        except (OSError, http.client.HTTPException):
            if sent < self.killed_at:
                with self.lock:
                    self.cut_off += 1
            raise

    def send_events(self, conn: http.client.HTTPConnection, rng: random.Random, n: int) -> None:
        batch_id = f"{PREFIX}{n}-{uuid.uuid4().hex[:8]}"
        stamp = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        rows = [(f"{batch_id}-{i}", rng.choice(self.customers)) for i in range(BATCH)]
        body = {
            "events": [
                {"event_id": e, "customer_id": c, "timestamp": stamp, "event_type": "visit"}
                for e, c in rows
            ]
        }
        with self.lock:
            self.sent_batches[batch_id] = rows
        status, answer = self.call(conn, "POST", "/v1/events", body)
        with self.lock:
            if status == 200 and answer == {"inserted": BATCH, "duplicates": 0}:
                self.acked_batches.append(batch_id)
            else:
                self.unexpected.append(f"events {status} {answer}")

    def send_decision(self, conn: http.client.HTTPConnection, rng: random.Random, _: int) -> None:
        customer = rng.choice(self.customers)
        with self.lock:
            self.recommends_sent += 1
        body = {"customer_id": customer, "context": {"channel": "email"}}
        status, answer = self.call(conn, "POST", "/v1/offers/recommend", body, "marketing")
        if status != 200:
            with self.lock:
                self.unexpected.append(f"recommend {status} {answer}")
            return
        decision_id = answer["decision_id"]
        with self.lock:
            self.acked_decisions[decision_id] = (customer, answer["offer_id"])
        if rng.random() < 0.5:
            return
        kind = rng.choice(OUTCOME_KINDS)
        path = f"/v1/decisions/{decision_id}/outcome"
        status, answer = self.call(conn, "POST", path, {"kind": kind}, "marketing")
        with self.lock:
            if status == 200 and answer["recorded"] is True:
                self.acked_outcomes.append((decision_id, kind))
            else:
                self.unexpected.append(f"outcome {status} {answer}")


def drive_until_killed(service: Service, customers: list[str]) -> Traffic:
    """Traffic for LOAD_SECONDS (and until MIN_ACKED), then SIGKILL while it still runs."""
    traffic = Traffic(service.port, customers)
    threads = [
        threading.Thread(target=traffic.run, args=(traffic.send_events, i))
        for i in range(EVENT_THREADS)
    ] + [
        threading.Thread(target=traffic.run, args=(traffic.send_decision, 100 + i))
        for i in range(DECISION_THREADS)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    try:
        while True:
            time.sleep(0.1)
            counts = traffic.counts()
            enough = all(counts[k] >= v for k, v in MIN_ACKED.items())
            if enough and time.monotonic() - started >= LOAD_SECONDS:
                break
            if time.monotonic() - started > 120 or not any(t.is_alive() for t in threads):
                pytest.fail(
                    f"traffic too slow or broken: acknowledged {counts}, "
                    f"unexpected {traffic.unexpected[:3]}: {service.log_tail()}"
                )
        traffic.killed_at = time.monotonic()
        service.kill()
    finally:
        traffic.stop.set()
        for thread in threads:
            thread.join(timeout=60)
    return traffic


# --- what the store holds ----------------------------------------------------------------------


@dataclass
class Stored:
    events: list[tuple[str, str]]  # (event_id, customer_id) of the traffic's events
    decisions: list[tuple[str, str, str]]  # (decision_id, customer_id, offer_id)
    outcomes: list[tuple[str, str]]  # (decision_id, kind)


def read_store(url: str) -> Stored:
    with Store(url) as store, store.engine.connect() as conn:
        if store.engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        ours = events.c.event_id.startswith(PREFIX, autoescape=True)
        event_rows = conn.execute(sa.select(events.c.event_id, events.c.customer_id).where(ours))
        decision_rows = conn.execute(
            sa.select(decisions.c.decision_id, decisions.c.customer_id, decisions.c.offer_id)
        )
        outcome_rows = conn.execute(sa.select(outcomes.c.decision_id, outcomes.c.kind))
        return Stored(
            events=[(r.event_id, r.customer_id) for r in event_rows],
            decisions=[(r.decision_id, r.customer_id, r.offer_id) for r in decision_rows],
            outcomes=[(r.decision_id, r.kind) for r in outcome_rows],
        )


def assert_acknowledged_stored_once(traffic: Traffic, stored: Stored, before: Stored) -> None:
    repeated = [k for k, n in Counter(e for e, _ in stored.events).items() if n > 1]
    assert not repeated, f"events stored twice: {repeated[:5]}"
    sent = {e: c for rows in traffic.sent_batches.values() for e, c in rows}
    held = dict(stored.events)
    assert held.items() <= sent.items(), "the store holds events that were never sent as such"
    for batch_id in traffic.acked_batches:
        rows = traffic.sent_batches[batch_id]
        missing = [e for e, c in rows if held.get(e) != c]
        assert not missing, f"acknowledged events lost in the crash: {missing}"
    for batch_id, rows in traffic.sent_batches.items():
        present = sum(e in held for e, _ in rows)
        assert present in (0, len(rows)), f"batch {batch_id} stored in part: {present}"

    new = [d for d in stored.decisions if d not in before.decisions]
    repeated = [k for k, n in Counter(d for d, _, _ in stored.decisions).items() if n > 1]
    assert not repeated, f"decisions stored twice: {repeated[:5]}"
    held_decisions = {d: (c, o) for d, c, o in new}
    lost = {
        d: answer
        for d, answer in traffic.acked_decisions.items()
        if held_decisions.get(d) != answer
    }
    assert not lost, f"{len(lost)} acknowledged decisions lost or altered: {list(lost)[:5]}"
    assert len(new) <= traffic.recommends_sent  # none written twice, none out of thin air

    assert len(set(stored.outcomes)) == len(stored.outcomes)
    missing_outcomes = set(traffic.acked_outcomes) - set(stored.outcomes)
    assert not missing_outcomes, f"acknowledged outcomes lost: {sorted(missing_outcomes)[:5]}"


def test_acknowledged_writes_survive_sigkill_exactly_once(
    world: World, store_url: str, tmp_path: Path
) -> None:
    customers = sorted(world.dataset.customers["customer_id"])
    before = read_store(store_url)
    service = Service(service_env(world, store_url, tmp_path), tmp_path)
    try:
        service.start(WORKERS)
        service.wait_ready()
        traffic = drive_until_killed(service, customers)
        assert not traffic.unexpected, traffic.unexpected[:5]
        assert traffic.cut_off >= 1  # the kill cut requests off: it came in mid-traffic

        service.start(workers=1)  # on the store as the crash left it
        service.wait_ready()
        crashed = read_store(store_url)
        assert_acknowledged_stored_once(traffic, crashed, before)

        # Through the restarted service: every acknowledged write is known and sending it again
        # stores nothing.
        conn = service.connect()
        for batch_id in traffic.acked_batches:
            body = {
                "events": [
                    {
                        "event_id": e,
                        "customer_id": c,
                        "timestamp": datetime.now(UTC).isoformat(),
                        "event_type": "visit",
                    }
                    for e, c in traffic.sent_batches[batch_id]
                ]
            }
            status, answer = request(conn, "POST", "/v1/events", body)
            assert (status, answer) == (200, {"inserted": 0, "duplicates": BATCH})
        for decision_id, kind in traffic.acked_outcomes:
            path = f"/v1/decisions/{decision_id}/outcome"
            status, answer = request(conn, "POST", path, {"kind": kind}, "marketing")
            assert status == 200 and answer["recorded"] is False, answer
        # A kept-alive connection idle past uvicorn's default keep-alive (5 s, the same as
        # httpx's pool) is still open: a client reusing it must not race the server's close.
        time.sleep(6)
        status, fresh = request(
            conn, "POST", "/v1/offers/recommend", {"customer_id": customers[0]}, "marketing"
        )
        assert status == 200, fresh
        conn.close()
        service.stop()

        after = read_store(store_url)
        assert sorted(after.events) == sorted(crashed.events)
        assert sorted(after.outcomes) == sorted(crashed.outcomes)
        assert sorted(after.decisions) == sorted(
            [*crashed.decisions, (fresh["decision_id"], customers[0], fresh["offer_id"])]
        )
    finally:
        service.stop()
