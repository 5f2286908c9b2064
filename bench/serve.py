"""Benchmark: `retain serve` against `mlflow models serve` on the same registered churn model.

In one go, in a work directory (a fresh temporary one unless --workdir is given):

1. builds a demo world (`retain demo-data`, `features build`, `train churn|clv|next-offer`) and
   loads it into the online store (SQLite), unless the work directory already holds it;
2. serves `models:/churn-risk@champion` with `mlflow models serve --env-manager local` (the
   pyfunc returns probabilities; the client sends the features) and measures `/invocations`;
3. serves the API with `retain serve` (features computed online from the store) and measures
   `GET /v1/customers/{id}/churn` and `POST /v1/offers/recommend` on random customers;

each at concurrency 1, 8 and 64, with the same number of worker processes, one server at a time,
on loopback only. Load comes from `wrk` when installed, else from an asyncio + httpx generator.
Prints a table, checks the targets, writes bench/results/serve.json.

    .venv/bin/python bench/serve.py --customers 20000 --workers 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
# Run as `python bench/serve.py`, bench/ comes first on sys.path and bench/features.py would
# shadow the `features` package.
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)

RESULTS = Path(__file__).parent / "results" / "serve.json"
BIN = Path(sys.executable).parent
KEY = "bench-secret-key"
CONCURRENCY = (1, 8, 64)
TARGETS = {  # (name, concurrency) -> limit
    "churn_vs_mlflow_rps_at_8": 10.0,
    "churn_p99_ms_at_8": 15.0,
    "recommend_p99_ms_at_8": 25.0,
}


@dataclass
class Cell:
    target: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    load_before: float  # 1-minute load average: other work on the machine skews the numbers


# --- setup ---------------------------------------------------------------------------------


def environment(workdir: Path) -> dict[str, str]:
    keys = [{"name": "bench", "key": KEY, "scopes": ["crm", "marketing", "admin"]}]
    return os.environ | {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RETAIN_DATA_DIR": str(workdir / "data"),
        "RETAIN_MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}",
        "RETAIN_MLFLOW_ARTIFACT_ROOT": str(workdir / "mlruns" / "artifacts"),
        "RETAIN_DATABASE_URL": f"sqlite:///{workdir / 'data' / 'retain.db'}",
        "RETAIN_OFFERS_PATH": str(workdir / "data" / "demo" / "offers.yaml"),
        "RETAIN_API_KEYS": json.dumps(keys),
        "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}",
    }


def step(title: str, command: list[str], env: dict[str, str], log: Path) -> None:
    started = time.perf_counter()
    print(f"  {title} …", end="", flush=True)
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"\n{title} failed (exit {done.returncode}); see {log}")
    print(f" {time.perf_counter() - started:.0f}s")


def prepare(workdir: Path, customers: int, env: dict[str, str]) -> None:
    """Demo world, trained models and a loaded store (each skipped when already there)."""
    log = workdir / "setup.log"
    data = workdir / "data"
    retain = str(BIN / "retain")
    if not (data / "demo" / "events.parquet").exists():
        step(
            f"demo world of {customers:,} customers",
            [retain, "demo-data", "--customers", str(customers), "--out", str(data / "demo")],
            env,
            log,
        )
    if not (data / "panel.parquet").exists():
        # 24 monthly cutoffs: the CLV model needs a 365-day gap between training and test.
        step(
            "training panel",
            [retain, "features", "build", str(data / "demo"), "--cutoffs", "24"],
            env,
            log,
        )
    marker = workdir / "models.done"
    if not marker.exists():
        step("train churn-risk", [retain, "train", "churn"], env, log)
        step("train clv", [retain, "train", "clv"], env, log)
        step("train next-offer", [retain, "train", "next-offer", str(data / "demo")], env, log)
        marker.touch()
    store_marker = workdir / "store.done"
    if not store_marker.exists():
        step(
            "load the store",
            [
                sys.executable,
                "-c",
                (
                    "import os, pathlib\n"
                    "from features.io import load_directory\n"
                    "from serving.store import Store\n"
                    "with Store(os.environ['RETAIN_DATABASE_URL']) as store:\n"
                    "    store.create_all()\n"
                    f"    dataset = load_directory(pathlib.Path({str(data / 'demo')!r}))\n"
                    "    print(store.load_dataset(dataset))\n"
                ),
            ],
            env,
            log,
        )
        store_marker.touch()


def mlflow_payloads(workdir: Path, n: int) -> list[str]:
    """`/invocations` bodies: one customer's features each, as the client would send them."""
    from features.engine import build_features
    from training.registry import serving_input_example

    demo = workdir / "data" / "demo"
    customers = pd.read_parquet(demo / "customers.parquet").sample(n, random_state=0)
    events = pd.read_parquet(demo / "events.parquet")
    entities = pd.DataFrame({"customer_id": customers["customer_id"], "cutoff": pd.Timestamp.now()})
    features = build_features(events, customers, entities).drop(columns=["customer_id", "cutoff"])
    categorical = [c for c in features if pd.api.types.is_string_dtype(features[c])]
    rows = serving_input_example(features, categorical, rows=n)
    bodies = []
    for i in range(len(rows)):
        split = json.loads(rows.iloc[[i]].to_json(orient="split", index=False))
        bodies.append(json.dumps({"dataframe_split": split}))
    return bodies


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    request.add_header("X-API-Key", KEY)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


@contextmanager
def server(command: list[str], env: dict[str, str], log: Path) -> Iterator[None]:
    """Run a server in its own process group; stop exactly that group afterwards."""
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=log.parent,
        )
        try:
            yield
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(1.0)


def retain_warm(base: str) -> bool:
    """Every worker (requests land on either) reports a finished warm-up, reasons included."""
    for _ in range(12):
        status, text = http("GET", f"{base}/v1/admin/status")
        if status != 200:
            return False
        features = json.loads(text)["features"]
        done = features["rounds_completed"] >= 1 and not features["warming"]
        if not done or features["reasons_missing"] > 0:
            return False
    return True


# --- load generation -------------------------------------------------------------------------

LUA_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout + e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lua_script(
    path: Path, method: str, url_path: str, bodies: list[str] | None, ids: list[str] | None
) -> Path:
    lines = [
        f'wrk.headers["X-API-Key"] = "{KEY}"',
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines.append("math.randomseed(os.time())")
    if ids is not None:
        lines.append("local ids = {" + ",".join(json.dumps(i) for i in ids) + "}")
    if bodies is not None:
        lines.append(
            "local bodies = {" + ",".join(json.dumps(b, ensure_ascii=False) for b in bodies) + "}"
        )
    lines.append("request = function()")
    if ids is not None:
        lines.append("  local id = ids[math.random(#ids)]")
    target = json.dumps(url_path).replace("{id}", '" .. id .. "')
    if bodies is not None:
        lines.append(
            f'  return wrk.format("{method}", {target}, nil, bodies[math.random(#bodies)])'
        )
    elif method == "POST":
        body = (
            '"{\\"customer_id\\": \\"" .. id .. "\\", \\"context\\": {\\"channel\\": \\"email\\"}}"'
        )
        lines.append(f'  return wrk.format("POST", {target}, nil, {body})')
    else:
        lines.append(f'  return wrk.format("{method}", {target})')
    lines.append("end")
    path.write_text("\n".join(lines) + LUA_DONE)
    return path


def run_wrk(script: Path, base: str, concurrency: int, seconds: float) -> dict[str, float]:
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{seconds:.0f}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base,
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("BENCH "))
    found: dict[str, float] = json.loads(line.removeprefix("BENCH "))
    return found


async def _generate(
    make: Callable[[], tuple[str, str, str | None]], base: str, concurrency: int, seconds: float
) -> dict[str, float]:
    import httpx2 as httpx  # the dev extra's HTTP client (the httpx API)

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=base, limits=limits, headers=headers) as client:
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < end:
                method, path, body = make()
                started = time.perf_counter()
                response = await client.request(method, path, content=body)
                latencies.append(time.perf_counter() - started)
                errors += not response.is_success

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.perf_counter() - began
    series = pd.Series(latencies) * 1e6
    return {
        "requests": len(latencies),
        "duration_us": took * 1e6,
        "errors": errors,
        "p50_us": float(series.quantile(0.5)),
        "p99_us": float(series.quantile(0.99)),
    }


def measure(
    name: str,
    base: str,
    concurrency: int,
    seconds: float,
    *,
    method: str,
    path: str,
    workdir: Path,
    bodies: list[str] | None = None,
    ids: list[str] | None = None,
) -> Cell:
    load = os.getloadavg()[0]
    if shutil.which("wrk"):
        slug = name.replace(" ", "_").replace("/", "")
        script = lua_script(workdir / f"{slug}.lua", method, path, bodies, ids)
        raw = run_wrk(script, base, concurrency, seconds)
    else:

        def make() -> tuple[str, str, str | None]:
            customer = random.choice(ids) if ids else ""
            body = random.choice(bodies) if bodies else None
            if method == "POST" and body is None:
                body = json.dumps({"customer_id": customer, "context": {"channel": "email"}})
            return method, path.replace("{id}", customer), body

        raw = asyncio.run(_generate(make, base, concurrency, seconds))
    cell = Cell(
        target=name,
        concurrency=concurrency,
        requests=int(raw["requests"]),
        rps=raw["requests"] / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=int(raw["errors"]),
        load_before=load,
    )
    print(
        f"  {name:<32} c={concurrency:<3} {cell.rps:>8.0f} req/s  p50 {cell.p50_ms:6.2f} ms  "
        f"p99 {cell.p99_ms:7.2f} ms  errors {cell.errors}  (load {load:.1f})",
        flush=True,
    )
    return cell


def fsync_latency(directory: Path, n: int = 300) -> dict[str, float]:
    """fsync of a 4 kB append in the store's directory: what each durable commit of a decision
    waits for (SQLite WAL, synchronous=FULL). Its tail, not the service's CPU, bounds
    recommend's p99 on a shared disk."""
    path = directory / ".fsync-probe"
    took = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(n):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            took.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        path.unlink()
    series = pd.Series(took)
    return {
        "n": n,
        "p50_ms": round(float(series.quantile(0.5)), 3),
        "p99_ms": round(float(series.quantile(0.99)), 3),
        "max_ms": round(float(series.max()), 3),
        "over_10_ms": int((series > 10).sum()),
    }


def sweep(name: str, base: str, args: argparse.Namespace, **kw: Any) -> list[Cell]:
    measure(name + " (warm-up)", base, 8, args.warmup, **kw)
    return [measure(name, base, c, args.seconds, **kw) for c in CONCURRENCY]


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    parser.add_argument("--customers", type=int, default=20_000, help="demo world size")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each server")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each measurement")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up before each target")
    parser.add_argument(
        "--workdir", type=Path, help="reuse (or create) this work directory; default: a temp one"
    )
    parser.add_argument("--payloads", type=int, default=500, help="distinct mlflow bodies")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results file")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="retain-serve-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = environment(workdir)
    print(
        f"work directory {workdir}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    prepare(workdir, args.customers, env)
    ids = pd.read_parquet(workdir / "data" / "demo" / "customers.parquet")["customer_id"].tolist()
    bodies = mlflow_payloads(workdir, args.payloads)
    cells: list[Cell] = []

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    mlflow = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        "models:/churn-risk@champion",
        "--env-manager",
        "local",
        "-w",
        str(args.workers),
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    print(f"mlflow models serve ({args.workers} workers)")
    with server(mlflow, env, workdir / "mlflow-serve.log"):
        wait_until(lambda: http("GET", f"{base}/ping")[0] == 200, "mlflow to start", 300)
        cells += sweep(
            "mlflow POST /invocations",
            base,
            args,
            method="POST",
            path="/invocations",
            workdir=workdir,
            bodies=bodies,
        )

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    retain = [str(BIN / "retain"), "serve", "--port", str(port), "--workers", str(args.workers)]
    print(f"retain serve ({args.workers} workers)")
    with server(retain, env, workdir / "retain-serve.log"):
        started = time.perf_counter()
        wait_until(lambda: http("GET", f"{base}/readyz")[0] == 200, "retain to load models", 300)
        wait_until(lambda: retain_warm(base), "retain to warm its feature cache", 1200)
        print(f"  ready and warm in {time.perf_counter() - started:.0f}s")
        cells += sweep(
            "retain GET /customers/{id}/churn",
            base,
            args,
            method="GET",
            path="/v1/customers/{id}/churn",
            workdir=workdir,
            ids=ids,
        )
        fsync = {"before": fsync_latency(workdir / "data")}
        print(f"  fsync of the store's disk: {fsync['before']}")
        cells += sweep(
            "retain POST /offers/recommend",
            base,
            args,
            method="POST",
            path="/v1/offers/recommend",
            workdir=workdir,
            ids=ids,
        )

        fsync["after"] = fsync_latency(workdir / "data")
        print(f"  fsync of the store's disk: {fsync['after']}")

    def cell(prefix: str, concurrency: int) -> Cell:
        return next(
            c for c in cells if c.target.startswith(prefix) and c.concurrency == concurrency
        )

    checks = {
        "churn_vs_mlflow_rps_at_8": cell("retain GET", 8).rps / cell("mlflow", 8).rps,
        "churn_p99_ms_at_8": cell("retain GET", 8).p99_ms,
        "recommend_p99_ms_at_8": cell("retain POST", 8).p99_ms,
    }
    passed = {
        "churn_vs_mlflow_rps_at_8": checks["churn_vs_mlflow_rps_at_8"] >= 10,
        "churn_p99_ms_at_8": checks["churn_p99_ms_at_8"] < 15,
        "recommend_p99_ms_at_8": checks["recommend_p99_ms_at_8"] < 25,
    }

    print()
    print(
        f"{'target':<34}{'conc.':>6}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'load':>6}"
    )
    for c in cells:
        print(
            f"{c.target:<34}{c.concurrency:>6}{c.rps:>10.0f}{c.p50_ms:>9.2f}{c.p99_ms:>9.2f}"
            f"{c.errors:>8}{c.load_before:>6.1f}"
        )
    print()
    for name, value in checks.items():
        limit = TARGETS[name]
        verdict = "PASS" if passed[name] else "FAIL"
        relation = ">=" if name.startswith("churn_vs") else "<"
        print(f"{verdict}  {name} = {value:.2f} (target {relation} {limit:g})")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "serve",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                "customers": len(ids),
                "workers": args.workers,
                "seconds_per_cell": args.seconds,
                "load_generator": "wrk" if shutil.which("wrk") else "httpx (asyncio)",
                "results": [asdict(c) for c in cells],
                "fsync_around_recommend": fsync,
                "checks": {k: {"value": v, "passed": passed[k]} for k, v in checks.items()},
            },
            indent=2,
        )
    )
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
