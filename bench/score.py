"""Benchmark: `retain score --as-of DATE` end to end on a large demo world.

    .venv/bin/python -m bench.score --customers 1000000
    .venv/bin/python -m bench.score --customers 100000 --repeat 2
    .venv/bin/python -m bench.score --help

In one go, with everything slow cached under `--cache` (default `$TMPDIR/retain-bench`):

1. **data**: the demo world of N customers (`features.demo.generate_world`). One process
   simulating a million customers would need ~20 GB, so a large world is simulated in shards of
   100k customers (seeds `seed * 1000 + shard`, customer and event ids prefixed with the shard
   number so that they stay unique; each shard in its own process), and the shards' tables are
   concatenated into one `customers.parquet` and one `events.parquet` (each shard's events are
   in time order, so every row group covers a short time span, as in an append-only log);
2. **models**: champions trained as `retain demo` trains them (`demo-data --customers 20000`,
   `features build --cutoffs 24`, `train churn`, `train clv`, `train next-offer`, default
   parameters) in a registry of the benchmark's own (`<cache>/score-models/`);
3. **run**: `retain score --as-of <day after the last event> --data <world> --no-check
   --threads T` in a fresh process (`--no-check`: the contract check of 100M events is
   `retain validate`'s job, and at ~2 s per million events it would take longer than the whole
   target; see docs/scale-out.md).
   The command records its stages in `summary.json` (`timings`); the benchmark adds the wall
   time of the whole process (interpreter start and imports included), its CPU time and peak RSS.

Prints a table and writes `bench/results/score.json`. The machine is shared: every figure is
stored with the 1-minute load average at the time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "score.json"
SHARD = 100_000
TRAIN_CUSTOMERS = 20_000
TARGET_S = {1_000_000: 120.0}  # customers -> wall seconds of `retain score`


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _child(args: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bench.score", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-4000:]}")
    return result.stdout


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def _shard(customers: int, seed: int, prefix: str, out: Path) -> None:
    """One shard of the world, ids prefixed so that shards never collide."""
    from features.demo import generate_world

    world = generate_world(customers, seed)
    out.mkdir(parents=True, exist_ok=True)

    def renamed(frame: pd.DataFrame, columns: dict[str, str]) -> pa.Table:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for column, letter in columns.items():
            index = table.schema.get_field_index(column)
            ids = pc.replace_substring_regex(
                table.column(column), pattern=f"^{letter}", replacement=f"{letter}{prefix}"
            )
            table = table.set_column(index, column, ids)
        return table

    pq.write_table(renamed(world.customers, {"customer_id": "C"}), out / "customers.parquet")
    pq.write_table(
        renamed(world.events, {"event_id": "E", "customer_id": "C"}),
        out / "events.parquet",
        row_group_size=122_880,
    )


def world(customers: int, seed: int, cache: Path) -> Path:
    """The cached demo world of `customers` (generated, shard by shard, on first use)."""
    from features.demo import offers_catalog

    out = cache / f"score-demo-{customers}-{seed}"
    if (out / "events.parquet").exists():
        return out
    shards = math.ceil(customers / SHARD)
    digits = len(str(shards - 1))
    parts = out / "shards"
    started = time.perf_counter()
    for k in range(shards):
        part = parts / f"{k:0{digits}d}"
        if (part / "events.parquet").exists():
            continue
        size = min(SHARD, customers - k * SHARD)
        prefix = f"{k:0{digits}d}" if shards > 1 else ""
        print(f"simulating shard {k + 1}/{shards} ({size:,} customers) ...", flush=True)
        _child(["--_shard", str(size), str(seed * 1000 + k), prefix, str(part)])
    print(f"merging {shards} shard(s) ...", flush=True)
    pieces = sorted(p for p in parts.iterdir() if p.is_dir())
    pq.write_table(
        pa.concat_tables(pq.read_table(p / "customers.parquet") for p in pieces),
        out / "customers.parquet",
    )
    schema = pq.read_schema(pieces[0] / "events.parquet")
    temporary = out / "events.parquet.tmp"
    with pq.ParquetWriter(temporary, schema) as writer:
        for piece in pieces:
            source = pq.ParquetFile(piece / "events.parquet")
            for group in range(source.num_row_groups):
                writer.write_table(source.read_row_group(group))
    (out / "offers.yaml").write_text(
        yaml.safe_dump({"offers": offers_catalog()}, sort_keys=False, allow_unicode=True)
    )
    temporary.rename(out / "events.parquet")
    for piece in pieces:
        for file in piece.iterdir():
            file.unlink()
        piece.rmdir()
    parts.rmdir()
    print(f"world ready in {time.perf_counter() - started:.0f} s: {out}", flush=True)
    return out


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------


def _environment(work: Path, tracking: Path) -> dict[str, str]:
    env = dict(os.environ)
    env |= {
        "RETAIN_DATA_DIR": str(work),
        "RETAIN_MLFLOW_TRACKING_URI": f"sqlite:///{tracking / 'mlflow.db'}",
        "RETAIN_MLFLOW_ARTIFACT_ROOT": str(tracking / "artifacts"),
    }
    return env


def models(seed: int, cache: Path) -> Path:
    """A registry whose champions were trained as `retain demo` trains them (cached)."""
    home = cache / f"score-models-{TRAIN_CUSTOMERS}-{seed}"
    tracking = home / "mlruns"
    done = home / "trained"
    if done.exists():
        return tracking
    tracking.mkdir(parents=True, exist_ok=True)
    env = _environment(home / "data", tracking)
    retain = [str(Path(sys.executable).parent / "retain")]
    demo = home / "data" / "demo"
    steps = [
        ["demo-data", "--customers", str(TRAIN_CUSTOMERS), "--seed", str(seed), "--out", str(demo)],
        ["features", "build", str(demo), "--cutoffs", "24"],
        ["train", "churn", "--seed", str(seed)],
        ["train", "clv", "--seed", str(seed)],
        ["train", "next-offer", str(demo), "--seed", str(seed)],
    ]
    for step in steps:
        print(f"models: retain {' '.join(step[:2])} ...", flush=True)
        result = subprocess.run(
            [*retain, *step], env=env, cwd=ROOT, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"retain {' '.join(step)} failed:\n{result.stdout[-3000:]}")
    done.write_text("ok\n")
    return tracking


# --------------------------------------------------------------------------------------------
# one measured run (in its own process)
# --------------------------------------------------------------------------------------------


def _worker(data: Path, as_of: str, threads: int, work: Path) -> dict[str, Any]:
    from serving.cli import app

    cpu0 = time.process_time()
    app(
        [
            "score",
            "--as-of",
            as_of,
            "--data",
            str(data),
            "--no-check",
            "--threads",
            str(threads),
        ],
        standalone_mode=False,
    )
    summary = json.loads((work / "scores" / as_of / "summary.json").read_text())
    return {
        "rows": summary["customers"],
        "bands": summary["bands"],
        "models": summary["models"],  # None: not in the registry, its columns stayed empty
        "reasons_for": summary.get("reasons_for"),
        "timings": summary.get("timings", {}),
        "cpu_s": round(time.process_time() - cpu0, 2),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
    }


def measure(data: Path, as_of: str, threads: int, tracking: Path, cache: Path) -> dict[str, Any]:
    work = cache / "score-run"
    env = _environment(work, tracking)
    load_before = _load()
    started = time.perf_counter()
    out = _child(["--_worker", str(data), as_of, str(threads), str(work)], env=env)
    wall = time.perf_counter() - started
    run = dict(json.loads(out.strip().splitlines()[-1]))
    return {
        "wall_s": round(wall, 2),
        **run,
        "load_avg_1m_before": load_before,
        "load_avg_1m_after": _load(),
    }


def _data_end(data: Path) -> pd.Timestamp:
    meta = pq.read_metadata(data / "events.parquet")
    column = meta.schema.names.index("timestamp")
    return pd.Timestamp(
        max(meta.row_group(i).column(column).statistics.max for i in range(meta.num_row_groups))
    )


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def print_table(result: dict[str, Any]) -> None:
    for run in result["runs"]:
        print(
            f"\n{result['customers']:,} customers, {result['events']:,} events, "
            f"{run['rows']:,} active customers scored at {result['as_of']} "
            f"(threads {result['threads']}, load average {run['load_avg_1m_before']} -> "
            f"{run['load_avg_1m_after']})"
        )
        header = f"{'stage':<28} {'wall s':>8} {'cpu s':>8}"
        print(header + "\n" + "-" * len(header))
        for stage, figures in run["timings"].items():
            print(f"{stage:<28} {figures['wall_s']:>8.2f} {figures['cpu_s']:>8.2f}")
        print("-" * len(header))
        print(f"{'process (imports included)':<28} {run['wall_s']:>8.2f} {run['cpu_s']:>8.2f}")
        print(f"peak RSS {run['peak_rss_gb']:.2f} GB")
    target = result.get("target_s")
    if target is not None:
        best = result["best_wall_s"]
        verdict = "met" if best < target else "NOT met"
        print(f"\ntarget: < {target:.0f} s for {result['customers']:,} customers: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark `retain score` end to end.")
    parser.add_argument("--customers", type=int, default=1_000_000, help="customers in the world")
    parser.add_argument("--seed", type=int, default=0, help="random seed of world and models")
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads of the run")
    parser.add_argument("--repeat", type=int, default=1, help="runs (the best is the figure)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "retain-bench",
        help="where the world, the models and the run's output are kept",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON results path")
    args, rest = parser.parse_known_args(argv)

    if rest and rest[0] == "--_shard":
        _shard(int(rest[1]), int(rest[2]), rest[3], Path(rest[4]))
        return 0
    if rest and rest[0] == "--_worker":
        data, as_of, threads, work = Path(rest[1]), rest[2], int(rest[3]), Path(rest[4])
        print(json.dumps(_worker(data, as_of, threads, work)))
        return 0
    if rest:
        parser.error(f"unknown arguments: {rest}")

    data = world(args.customers, args.seed, args.cache)
    tracking = models(args.seed, args.cache)
    # the day after the last event: every event counts (features use events before as_of)
    as_of = str((_data_end(data).normalize() + pd.Timedelta(days=1)).date())
    runs = []
    for attempt in range(args.repeat):
        print(f"run {attempt + 1}/{args.repeat}: retain score --as-of {as_of} ...", flush=True)
        runs.append(measure(data, as_of, args.threads, tracking, args.cache))
    events = pq.read_metadata(data / "events.parquet").num_rows
    result = {
        "generated": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "customers": args.customers,
        "events": events,
        "as_of": as_of,
        "threads": args.threads,
        "models_trained_on": f"demo world of {TRAIN_CUSTOMERS:,} customers, 24 cutoffs",
        "runs": runs,
        "best_wall_s": min(r["wall_s"] for r in runs),
        "target_s": TARGET_S.get(args.customers),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
