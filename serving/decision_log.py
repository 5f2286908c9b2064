"""Decisions logged durably before the response, many per commit (group commit).

`Store.record_decision` commits each decision on its own, and a durable commit is an fsync
(SQLite `synchronous=FULL`), ~5 ms on an ordinary disk; with every worker process taking the
one SQLite write lock in turn, that caps offers at ~200 a second and queues each request behind
all the others. Here a writer thread takes every decision waiting at that moment and inserts
them in one transaction: one fsync for all of them. Each caller still returns only after its own
decision is committed, exactly as with `record_decision`, and the stored rows are the same.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Final

from serving.store import Decision, Store, decisions, write_turn

MAX_BATCH: Final = 256
LOCK_TIMEOUT_SECONDS: Final = 30.0
_INSERT: Final = decisions.insert()


@dataclass(eq=False)
class _Pending:
    decision: Decision
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    # Set for a caller awaiting on an event loop instead of blocking a thread.
    loop: asyncio.AbstractEventLoop | None = None
    future: asyncio.Future[None] | None = None

    def finish(self) -> None:
        self.done.set()
        if self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(_settle, self.future, self.error)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class DecisionLog:
    """Per-process group commit of decisions (see the module docstring)."""

    def __init__(self, store: Store, *, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def record(self, decision: Decision, timeout: float = 30.0) -> Decision:
        """Store `decision`; returns once it is committed (raises what the insert raised)."""
        self._ensure_writer()
        pending = _Pending(decision)
        self._queue.put(pending)
        if not pending.done.wait(timeout):
            raise TimeoutError(f"the decision log did not commit within {timeout} s")
        if pending.error is not None:
            raise pending.error
        return decision

    async def record_async(self, decision: Decision, timeout: float = 30.0) -> Decision:
        """`record` for a coroutine: awaits the commit without holding a thread."""
        self._ensure_writer()
        loop = asyncio.get_running_loop()
        pending = _Pending(decision, loop=loop, future=loop.create_future())
        self._queue.put(pending)
        assert pending.future is not None
        try:
            await asyncio.wait_for(pending.future, timeout)
        except TimeoutError:
            raise TimeoutError(f"the decision log did not commit within {timeout} s") from None
        return decision

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._start_lock:
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._run, name="retain-decision-log", daemon=True
                )
                self._writer.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit(batch)
            if stop:
                return

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        # A prepared insert: SQLAlchemy's per-execution work held the GIL longer than the insert
        # itself, stalling the event loop that serves the requests. On SQLite, in turn with
        # this process's other writers (`write_turn`), as one multi-row INSERT that polls the
        # write lock (`Prepared.write_many`).
        insert = self.store.prepared(_INSERT)
        url = self.store.engine.url
        sqlite = url.get_backend_name() == "sqlite"
        with write_turn(url, LOCK_TIMEOUT_SECONDS) if sqlite else nullcontext():
            insert.write_many(rows, timeout=LOCK_TIMEOUT_SECONDS)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            self._insert([vars(p.decision) for p in batch])
        except BaseException as exc:  # every waiter learns why, none hangs
            for pending in batch:
                pending.error = exc
        for pending in batch:
            pending.finish()

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join(timeout=10)
            self._writer = None
