"""Soak: mixed traffic at a fixed rate for minutes against `retain serve`, a reload half-way.

In a work directory (a fresh temporary one unless --workdir is given; bench/serve.py's layout,
so one work directory serves both benchmarks):

1. builds a demo world, trains the models and loads the store (skipped when already there), and
   registers a second version of the churn model, so that the reload swaps in another version;
2. starts `retain serve --workers N` and waits until every worker is warm;
3. sends an open-loop mix at a fixed rate (each request leaves at its scheduled time whether or
   not earlier ones have answered, so a slow service does not lower the offered load): churn
   scores, recommendations (logged decisions), outcomes of those decisions, event batches;
4. half-way, moves the `champion` alias of churn-risk to the other version and calls
   `POST /v1/admin/reload`;
5. samples every worker's resident memory (RSS) every few seconds.

Prints a table per minute (requests, errors, p50/p99 per route), checks the target (0 errors),
writes bench/results/soak.json and a plot of p99 latency and RSS over time (soak.png).

    .venv/bin/python -m bench.soak --minutes 5 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.serve import (
    KEY,
    environment,
    free_port,
    http,
    prepare,
    retain_warm,
    wait_until,
)

RESULTS = Path(__file__).parent / "results"
ROUTES = ("churn", "recommend", "outcome", "events")
MIX = {"churn": 0.4, "recommend": 0.3, "outcome": 0.1, "events": 0.2}
EVENTS_PER_BATCH = 5
WINDOW_SECONDS = 10  # p99 over time: one point per window
SAMPLE_SECONDS = 5  # RSS sampling period
RETAIN_SERVE = [str(Path(sys.executable).with_name("retain"))]  # the console script users run


@dataclass
class Result:
    route: str
    scheduled: float  # seconds since the start of the traffic
    lag_ms: float  # how late the generator sent it (the load generator's own health)
    latency_ms: float
    status: int  # 0: no response (connection error or timeout)
    detail: str = ""
    version: str | None = None  # churn-risk version that answered (churn route)


@contextmanager
def server(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The service in its own process group; stops exactly that group afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log.parent,
        )
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- memory --------------------------------------------------------------------------------------
def worker_pids(parent: int) -> list[int]:
    """uvicorn's worker processes under the supervisor `parent` (not multiprocessing helpers)."""
    try:
        import psutil

        children = psutil.Process(parent).children()
        return sorted(p.pid for p in children if "spawn_main" in " ".join(p.cmdline()))
    except ImportError:
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and "spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def sample_memory(
    parent: int, start: float, stop: asyncio.Event, samples: list[dict[str, Any]]
) -> None:
    while not stop.is_set():
        t = time.perf_counter() - start
        for pid in worker_pids(parent):
            rss = rss_mb(pid)
            if rss is not None:
                samples.append({"t": round(t, 1), "pid": pid, "rss_mb": round(rss, 1)})
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        except TimeoutError:
            pass


# --- traffic -------------------------------------------------------------------------------------
class Traffic:
    """Builds each request of the mix and records its result."""

    def __init__(self, customers: list[str], seed: int) -> None:
        self.customers = customers
        self.rng = random.Random(seed)
        self.decisions: list[str] = []
        self.results: list[Result] = []
        self.batches = itertools.count()

    def pick(self) -> str:
        route = self.rng.choices(list(MIX), weights=list(MIX.values()))[0]
        if route == "outcome" and not self.decisions:
            return "churn"
        return route

    def request(self, route: str) -> tuple[str, str, dict[str, Any] | None]:
        customer = self.rng.choice(self.customers)
        if route == "churn":
            return "GET", f"/v1/customers/{customer}/churn", None
        if route == "recommend":
            return "POST", "/v1/offers/recommend", {"customer_id": customer, "k": 3}
        if route == "outcome":
            decision = self.decisions.pop(self.rng.randrange(len(self.decisions)))
            kind = self.rng.choice(["redeemed", "declined", "retained", "churned"])
            return "POST", f"/v1/decisions/{decision}/outcome", {"kind": kind, "value": 1.0}
        stamp = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        batch = f"soak-{next(self.batches)}-{uuid.uuid4().hex[:8]}"
        events: list[dict[str, Any]] = [
            {
                "event_id": f"{batch}-{i}",
                "customer_id": self.rng.choice(self.customers),
                "timestamp": stamp,
                "event_type": self.rng.choice(["visit", "email_open", "purchase"]),
                "channel": "web",
            }
            for i in range(EVENTS_PER_BATCH)
        ]
        for event in events:
            if event["event_type"] == "purchase":
                event["amount"] = round(self.rng.uniform(5, 120), 2)
        return "POST", "/v1/events", {"events": events}


async def one(
    client: Any,
    traffic: Traffic,
    route: str,
    call: tuple[str, str, dict[str, Any] | None],
    scheduled: float,
    start: float,
) -> None:
    method, path, body = call
    sent = time.perf_counter()
    lag = (sent - start - scheduled) * 1000
    status, detail, version = 0, "", None
    try:
        response = await client.request(method, path, json=body)
        status = response.status_code
        if response.is_success:
            answer = response.json()
            if route == "recommend":
                traffic.decisions.append(answer["decision_id"])
            elif route == "churn":
                version = answer["models"].get("churn-risk")
        else:
            detail = response.text[:300]
    except Exception as error:  # every failure is a counted error, never a crash of the bench
        detail = f"{type(error).__name__}: {error}"[:300]
    latency = (time.perf_counter() - sent) * 1000
    traffic.results.append(Result(route, scheduled, lag, latency, status, detail, version))


async def reload_midway(base: str, at: float, start: float, swap: Any, log: dict[str, Any]) -> None:
    await asyncio.sleep(max(0.0, at - (time.perf_counter() - start)))
    log["at_s"] = round(time.perf_counter() - start, 1)
    log["alias"] = await asyncio.to_thread(swap)
    began = time.perf_counter()
    status, text = await asyncio.to_thread(http, "POST", f"{base}/v1/admin/reload")
    log["status"] = status
    log["took_s"] = round(time.perf_counter() - began, 2)
    log["models"] = json.loads(text).get("models") if status == 200 else text[:300]


async def run_traffic(
    base: str,
    parent: int,
    customers: list[str],
    *,
    rate: float,
    seconds: float,
    reload_at: float,
    swap: Any,
    seed: int,
) -> tuple[Traffic, list[dict[str, Any]], dict[str, Any]]:
    import httpx2

    traffic = Traffic(customers, seed)
    samples: list[dict[str, Any]] = []
    reload_log: dict[str, Any] = {}
    limits = httpx2.Limits(max_connections=512, max_keepalive_connections=64)
    headers = {"X-API-Key": KEY}
    timeout = httpx2.Timeout(30.0)
    async with httpx2.AsyncClient(
        base_url=base, limits=limits, headers=headers, timeout=timeout
    ) as client:
        start = time.perf_counter()
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_memory(parent, start, stop, samples))
        reloader = asyncio.create_task(reload_midway(base, reload_at, start, swap, reload_log))
        tasks: set[asyncio.Task[None]] = set()
        total = int(rate * seconds)
        last_report = 0
        for i in range(total):
            scheduled = i / rate
            delay = start + scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            route = traffic.pick()  # and its request now: an outcome takes a decision off the list
            call = traffic.request(route)
            task = asyncio.create_task(one(client, traffic, route, call, scheduled, start))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            minute = int(scheduled // 60)
            if minute > last_report:
                last_report = minute
                print_minute(traffic.results, minute - 1)
        await asyncio.gather(*tasks)
        await reloader
        stop.set()
        await sampler
    return traffic, samples, reload_log


# --- figures -------------------------------------------------------------------------------------
def quantiles(values: pd.Series) -> tuple[float, float]:
    if values.empty:
        return float("nan"), float("nan")
    return float(values.quantile(0.5)), float(values.quantile(0.99))


def minute_rows(results: list[Result]) -> list[dict[str, Any]]:
    frame = pd.DataFrame([asdict(r) for r in results])
    frame["minute"] = (frame["scheduled"] // 60).astype(int)
    frame["error"] = ~frame["status"].between(200, 299)
    rows = []
    for _, group in frame.groupby("minute"):
        row: dict[str, Any] = {
            "minute": int(group["minute"].iloc[0]) + 1,
            "requests": len(group),
            "errors": int(group["error"].sum()),
        }
        for route in ROUTES:
            ok = group[(group["route"] == route) & ~group["error"]]["latency_ms"]
            p50, p99 = quantiles(ok)
            row[f"{route}_n"] = int((group["route"] == route).sum())
            row[f"{route}_p50_ms"] = round(p50, 2)
            row[f"{route}_p99_ms"] = round(p99, 2)
        row["generator_lag_p99_ms"] = round(float(group["lag_ms"].quantile(0.99)), 2)
        rows.append(row)
    return rows


def print_minute(results: list[Result], minute: int) -> None:
    done = [r for r in results if int(r.scheduled // 60) == minute]
    if not done:
        return
    row = minute_rows(done)[0]
    cells = "  ".join(
        f"{route} {row[f'{route}_p50_ms']:.1f}/{row[f'{route}_p99_ms']:.1f}" for route in ROUTES
    )
    print(
        f"  minute {minute + 1}: {row['requests']} requests, {row['errors']} errors; "
        f"p50/p99 ms {cells}  (load {os.getloadavg()[0]:.1f})",
        flush=True,
    )


def window_series(results: list[Result]) -> list[dict[str, Any]]:
    frame = pd.DataFrame([asdict(r) for r in results])
    frame = frame[frame["status"].between(200, 299)]
    frame["window"] = (frame["scheduled"] // WINDOW_SECONDS).astype(int)
    series = []
    for (_, route), group in frame.groupby(["window", "route"]):
        series.append(
            {
                "t": int(group["window"].iloc[0]) * WINDOW_SECONDS + WINDOW_SECONDS / 2,
                "route": route,
                "n": len(group),
                "p99_ms": round(float(group["latency_ms"].quantile(0.99)), 2),
            }
        )
    return series


def memory_summary(samples: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    frame = pd.DataFrame(samples)
    if frame.empty:
        return {"workers": {}, "worker_pids_seen": 0}
    workers = {}
    for pid, group in frame.groupby("pid"):
        group = group.sort_values("t")
        after_first_minute = group[group["t"] >= min(60.0, seconds / 4)]
        base = after_first_minute if len(after_first_minute) >= 2 else group
        slope = np.polyfit(base["t"], base["rss_mb"], 1)[0] if len(base) >= 2 else float("nan")
        workers[str(pid)] = {
            "first_mb": float(group["rss_mb"].iloc[0]),
            "last_mb": float(group["rss_mb"].iloc[-1]),
            "max_mb": float(group["rss_mb"].max()),
            "growth_mb": round(float(group["rss_mb"].iloc[-1] - group["rss_mb"].iloc[0]), 1),
            "growth_after_first_minute_mb": round(
                float(base["rss_mb"].iloc[-1] - base["rss_mb"].iloc[0]), 1
            ),
            "trend_mb_per_hour": round(float(slope) * 3600, 1),
            "seen_from_s": float(group["t"].iloc[0]),
            "seen_until_s": float(group["t"].iloc[-1]),
        }
    return {"workers": workers, "worker_pids_seen": len(workers)}


def plot(
    series: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    reload_at: float | None,
    path: Path,
    title: str,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    points = pd.DataFrame(series)
    for route in ROUTES:
        part = points[points["route"] == route] if not points.empty else points
        if not part.empty:
            top.plot(part["t"], part["p99_ms"], marker=".", label=route)
    top.set_ylabel(f"p99 latency, ms (per {WINDOW_SECONDS} s)")
    top.set_yscale("log")
    top.legend(loc="upper left", fontsize="small")
    top.set_title(title)
    memory = pd.DataFrame(samples)
    if not memory.empty:
        for pid, group in memory.groupby("pid"):
            bottom.plot(group["t"], group["rss_mb"], label=f"worker {pid}")
    bottom.set_ylabel("RSS, MB")
    bottom.set_xlabel("seconds since the traffic started")
    bottom.legend(loc="upper left", fontsize="small")
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
        if reload_at is not None:
            axis.axvline(reload_at, color="grey", linestyle="--")
    if reload_at is not None:
        top.annotate("reload", (reload_at, 1), xycoords=("data", "axes fraction"), va="top")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- set-up --------------------------------------------------------------------------------------
def second_churn_version(env: dict[str, str]) -> tuple[str, str]:
    """Versions (champion, other) of churn-risk. With one version only, registers the champion's
    artifacts again as a new version: the reload then loads and swaps in a different version,
    without a training run in the set-up."""
    import mlflow
    from mlflow import MlflowClient

    uri = env["RETAIN_MLFLOW_TRACKING_URI"]
    # create_model_version looks the logged model up through the global tracking URI.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("churn-risk", "champion")
    versions = [v.version for v in client.search_model_versions("name='churn-risk'")]
    others = sorted((int(v) for v in versions if str(v) != str(champion.version)), reverse=True)
    if others:
        return str(champion.version), str(others[0])
    copy = client.create_model_version(
        "churn-risk", str(champion.source), run_id=champion.run_id, tags=champion.tags
    )
    return str(champion.version), str(copy.version)


def alias_mover(env: dict[str, str], version: str) -> Any:
    from mlflow import MlflowClient

    uri = env["RETAIN_MLFLOW_TRACKING_URI"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def move() -> dict[str, str]:
        before = str(client.get_model_version_by_alias("churn-risk", "champion").version)
        client.set_registered_model_alias("churn-risk", "champion", version)
        return {"model": "churn-risk", "from": before, "to": version}

    return move


def restore_alias(env: dict[str, str], version: str) -> None:
    alias_mover(env, version)()


def cache_statuses(base: str, tries: int = 12) -> list[dict[str, Any]]:
    """The feature cache's counters as the workers report them (a request reaches one worker,
    so several are asked; distinct answers kept)."""
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(tries):
        status, text = http("GET", f"{base}/v1/admin/status")
        if status == 200:
            features = json.loads(text)["features"]
            seen[json.dumps(features, sort_keys=True)] = features
    return list(seen.values())


# --- main ----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="duration of the traffic")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second, fixed")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--customers", type=int, default=3_000, help="demo world size")
    parser.add_argument(
        "--reload-at", type=float, default=0.5, help="when to reload, as a share of the run"
    )
    parser.add_argument(
        "--workdir", type=Path, help="reuse (or create) this work directory; default: a temp one"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "soak.json", help="JSON results")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="retain-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = environment(workdir)
    print(
        f"work directory {workdir}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    prepare(workdir, args.customers, env)
    champion, other = second_churn_version(env)
    customers = pd.read_parquet(workdir / "data" / "demo" / "customers.parquet")["customer_id"]
    seconds = args.minutes * 60

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [*RETAIN_SERVE, "serve", "--port", str(port), "--workers", str(args.workers)]
    print(f"retain serve ({args.workers} workers) on {base}")
    load_at_start = os.getloadavg()
    try:
        with server(command, env, workdir / "retain-serve.log") as process:
            started = time.perf_counter()
            wait_until(lambda: http("GET", f"{base}/readyz")[0] == 200, "retain to load", 600)
            wait_until(lambda: retain_warm(base), "retain to warm its feature cache", 1800)
            print(f"  ready and warm in {time.perf_counter() - started:.0f}s")
            parent = process.pid
            workers_before = worker_pids(parent)
            print(
                f"  {args.rate:g} requests/s for {args.minutes:g} min, mix {MIX}; reload of "
                f"churn-risk v{champion} -> v{other} at {args.reload_at * seconds:.0f}s"
            )
            traffic, samples, reload_log = asyncio.run(
                run_traffic(
                    base,
                    parent,
                    customers.tolist(),
                    rate=args.rate,
                    seconds=seconds,
                    reload_at=args.reload_at * seconds,
                    swap=alias_mover(env, other),
                    seed=args.seed,
                )
            )
            workers_after = worker_pids(parent)
            caches = cache_statuses(base)
    finally:
        restore_alias(env, champion)  # leave the work directory as it was found
    load_at_end = os.getloadavg()

    results = traffic.results
    rows = minute_rows(results)
    print_minute(results, rows[-1]["minute"] - 1)
    errors = [r for r in results if not 200 <= r.status < 300]
    by_kind: dict[str, int] = defaultdict(int)
    for r in errors:
        by_kind[f"{r.route} {r.status}"] += 1
    frame = pd.DataFrame([asdict(r) for r in results])
    ok = frame[frame["status"].between(200, 299)]
    overall = {}
    for route in ROUTES:
        p50, p99 = quantiles(ok[ok["route"] == route]["latency_ms"])
        overall[route] = {
            "requests": int((frame["route"] == route).sum()),
            "errors": int(((frame["route"] == route) & ~frame["status"].between(200, 299)).sum()),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
        }
    reload_at = reload_log.get("at_s")
    churn = frame[(frame["route"] == "churn") & frame["version"].notna()]
    stale = churn[(churn["scheduled"] > (reload_at or 0) + reload_log.get("took_s", 0))]
    stale = stale[stale["version"] != other]
    reload_log["old_version_answers_after_reload"] = int(len(stale))
    reload_log["last_old_version_answer_s"] = (
        None if stale.empty else round(float(stale["scheduled"].max()), 1)
    )
    memory = memory_summary(samples, seconds)
    memory["worker_pids_before"] = workers_before
    memory["worker_pids_after"] = workers_after
    memory["worker_restarts"] = len(set(workers_after) - set(workers_before))
    # By the actual send times: a starved generator sends late, and the rate it offered drops.
    sent_at = frame["scheduled"] + frame["lag_ms"] / 1000
    achieved = len(results) / max(float(sent_at.max() - sent_at.min()), 1e-9)

    print()
    header = f"{'min':>3}{'req':>7}{'err':>5}" + "".join(
        f"{route + ' p50/p99 ms':>24}" for route in ROUTES
    )
    print(header)
    for row in rows:
        cells = "".join(
            f"{row[f'{route}_p50_ms']:>11.1f} /{row[f'{route}_p99_ms']:>9.1f}  " for route in ROUTES
        )
        print(f"{row['minute']:>3}{row['requests']:>7}{row['errors']:>5}  {cells}")
    print()
    print(
        f"reload at {reload_at}s: HTTP {reload_log.get('status')}, {reload_log.get('took_s')}s, "
        f"{reload_log.get('alias')}; answers from the old version after it: "
        f"{reload_log['old_version_answers_after_reload']}"
    )
    for pid, summary in memory["workers"].items():
        print(
            f"worker {pid}: RSS {summary['first_mb']:.0f} -> {summary['last_mb']:.0f} MB "
            f"(max {summary['max_mb']:.0f}; after the first minute "
            f"{summary['growth_after_first_minute_mb']:+.1f} MB, "
            f"trend {summary['trend_mb_per_hour']:+.0f} MB/h)"
        )
    print(f"worker restarts during the run: {memory['worker_restarts']}")
    for features in caches:
        print(
            f"feature cache: {features['cached_customers']} rows in {features['blocks']} blocks; "
            f"{features['compute_runs']} runs, {features['waited_customers']} rows waited for, "
            f"{features['refreshed_customers']} refreshed after ingestion, "
            f"{features['compactions']} merges"
        )
    print(
        f"offered {achieved:.1f} requests/s (target {args.rate:g}); the generator sent "
        f"p99 {frame['lag_ms'].quantile(0.99):.0f} ms late"
    )
    print(
        f"load average {load_at_start[0]:.1f} at the start, {load_at_end[0]:.1f} at the end "
        f"(1-min; {os.cpu_count()} CPUs)"
    )
    verdict = "PASS" if not errors else "FAIL"
    print(f"{verdict}  errors = {len(errors)} of {len(results)} (target 0) {dict(by_kind)}")
    for r in errors[:5]:
        print(f"  {r.route} at {r.scheduled:.1f}s: {r.status} {r.detail}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.with_suffix(".png")
    plot(
        window_series(results),
        samples,
        reload_at,
        png,
        f"retain serve, {args.workers} workers, {args.rate:g} req/s open loop "
        f"(load avg {load_at_start[0]:.1f} → {load_at_end[0]:.1f} on {os.cpu_count()} CPUs)",
    )
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "soak",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "load_average": {"start": load_at_start, "end": load_at_end},
                "customers": int(len(customers)),
                "workers": args.workers,
                "minutes": args.minutes,
                "rate": args.rate,
                "achieved_rate": round(achieved, 1),
                "generator_lag_p99_ms": round(float(frame["lag_ms"].quantile(0.99)), 1),
                "mix": MIX,
                "requests": len(results),
                "errors": len(errors),
                "errors_by_kind": dict(by_kind),
                "error_samples": [asdict(r) for r in errors[:20]],
                "overall": overall,
                "minutes_table": rows,
                "p99_over_time": window_series(results),
                "reload": reload_log,
                "memory": memory,
                "feature_caches": caches,
                "rss_samples": samples,
                "checks": {"errors": {"value": len(errors), "target": 0, "passed": not errors}},
            },
            indent=1,
            default=str,
        )
    )
    print(f"-> {args.out}, {png}")
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
