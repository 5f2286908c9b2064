"""Benchmark: the feature engine (DuckDB) against the pandas reference, building training panels.

Cases: 100k customers / 10M events with one and with six monthly cutoffs, and 1M customers /
50M events with six cutoffs (`--sizes 100k,1m`). Each measurement runs in a fresh subprocess
that reports wall time, CPU time and peak RSS (`ru_maxrss`, so DuckDB's native memory counts).
The data come from the demo world (`features.demo.generate_world`) or from a synthetic generator
here, and are cached as Parquet (events in time order, as an append-only log is written).

    python bench/features.py                 # 100k cases, engine and pandas, checks equality
    python bench/features.py --sizes 100k,1m
    python bench/features.py --help

Writes bench/results/features.json and prints a table.

What is timed (the same region for both implementations): one call that builds the panel,
`build_panel(events, customers, cutoffs, as_of=...)` for the engine and
`build_panel_pandas(...)` for the reference, from data already in memory (pandas frames, as
`pyarrow.parquet.read_table(...).to_pandas()` loads them) or on disk (Parquet paths, engine only:
the reference needs frames), until the pandas DataFrame of the panel is returned. Loading the
frames, choosing the cutoffs and reading the data end (`as_of`, from the Parquet footer) happen
before the clock starts; writing the panel for the equality check happens after it stops.
At 1m the engine instead writes the panel to Parquet cutoff by cutoff (`write_panel`, what
`retain features build` runs), timed until the file is complete (`--engine-output`): at 1M
customers the panel alone is 1.8 GB as a frame, so holding it is a choice the caller makes.

Machine speed: the issue states its targets for this machine together with "a plain DuckDB
group-by scan of 1M/50M takes 1.3 s". When the 1m data exist, that scan (count per customer,
from the Parquet file and from a table in memory) runs in the same benchmark, and the report
shows the wall-time targets scaled by today's slowdown beside the targets as written.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and its name would shadow the
# `features` package: drop it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "features.json"
EVENT_COLUMNS = ["customer_id", "timestamp", "event_type", "amount", "offer_id", "score", "channel"]
TARGETS = {  # (size, cutoffs): wall seconds, peak GB (None: no target)
    ("100k", 1): (0.8, None),
    ("1m", 6): (20.0, 3.0),
}
# The issue calibrates its targets on "a plain DuckDB group-by scan of 1M/50M" (1.3 s on this
# machine then). This machine's speed varies up to ~2.5x over a day, so the same scan runs in
# every benchmark that has the 1m data, and the targets are also shown at today's speed. The
# issue does not say whether it scanned the Parquet file or a table in memory: both are timed,
# and the scaled targets use the smaller slowdown (the stricter reading).
REFERENCE_SCANS = {
    "parquet": "SELECT customer_id, count(*) AS n FROM read_parquet('{path}') GROUP BY ALL",
    "table": "SELECT customer_id, count(*) AS n FROM ids GROUP BY ALL",
}
REFERENCE_SCAN_ISSUE_S = 1.3


TIMED_REGION = (
    "one build_panel call (engine) or build_panel_pandas call (pandas) from data already in "
    "memory (input=frames) or on disk (input=parquet) to the returned pandas panel, or "
    "(engine, output=parquet) one write_panel call until the panel's Parquet file is complete; "
    "loading, cutoffs and as_of come before, saving for the equality check after"
)


@dataclass(frozen=True)
class Size:
    name: str
    customers: int
    events: int  # target event count (synthetic); the demo world gives about 100 per customer


SIZES = {
    "10k": Size("10k", 10_000, 1_000_000),
    "100k": Size("100k", 100_000, 10_000_000),
    "1m": Size("1m", 1_000_000, 50_000_000),
}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

SYNTHETIC_TYPES = np.array(
    [
        "visit",
        "email_open",
        "purchase",
        "offer_sent",
        "offer_redeemed",
        "support_contact",
        "complaint",
        "complaint_resolved",
        "nps",
        "csat",
        "refund",
        "referral",
        "loyalty_join",
        "cancellation",
        "app_install",
    ]
)
SYNTHETIC_SHARES = np.array([48, 15, 17, 4, 1.2, 2, 0.5, 0.4, 1.5, 1, 0.8, 0.3, 0.3, 0.2, 0.5])


def synthetic_world(size: Size, seed: int, out: Path) -> None:
    """~2.5 years of events for `size.customers` customers, written in time order.

    Customers sign up over the period (a third before it), some churn (a cancellation for part
    of them) and each has its own activity rate; event mix and amounts resemble the demo world.
    """
    rng = np.random.default_rng(seed)
    us_day = 86_400_000_000
    end = pd.Timestamp("2026-01-01").value // 1000
    start = end - 913 * us_day
    n = size.customers
    signup = start + rng.integers(-365 * us_day, 800 * us_day, n)
    alive_from = np.maximum(signup, start)
    churns = rng.random(n) < 0.45
    leave = np.where(churns, alive_from + rng.integers(30 * us_day, 900 * us_day, n), end)
    leave = np.minimum(leave, end)
    life = np.maximum(leave - alive_from, us_day)
    rate = rng.lognormal(0.0, 0.6, n) * life
    counts = rng.poisson(rate * size.events / rate.sum())
    who = np.repeat(np.arange(n, dtype=np.int32), counts)
    at = alive_from[who] + (rng.random(len(who)) * life[who]).astype(np.int64)
    kinds = rng.choice(len(SYNTHETIC_TYPES), len(who), p=SYNTHETIC_SHARES / SYNTHETIC_SHARES.sum())
    kinds = kinds.astype(np.int8)
    # churners who cancel do so at the end of their life
    cancel = np.flatnonzero(churns & (rng.random(n) < 0.4) & (leave < end))
    who = np.concatenate([who, cancel.astype(np.int32)])
    at = np.concatenate([at, leave[cancel] - 1])
    kinds = np.concatenate([kinds, np.full(len(cancel), 13, dtype=np.int8)])
    order = np.argsort(at, kind="stable")
    who, at, kinds = who[order], at[order], kinds[order]
    del order

    ids = np.char.add("C", np.char.zfill(np.arange(n).astype("U7"), 7))
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "signup_date": pd.to_datetime(signup, unit="us"),
            "country": rng.choice(["DE", "FR", "GB", "US", "ES", "NL"], n),
            "language": rng.choice(["de", "fr", "en", "es", "nl"], n),
            "segment": rng.choice(["retail", "business", "student"], n, p=[0.65, 0.18, 0.17]),
            "loyalty_member": rng.random(n) < 0.3,
            "marketing_consent": rng.random(n) < 0.8,
            "age": rng.integers(18, 85, n),
        }
    )
    out.mkdir(parents=True, exist_ok=True)
    customers.to_parquet(out / "customers.parquet", index=False)

    schema = pa.schema(
        [
            ("event_id", pa.string()),
            ("customer_id", pa.string()),
            ("timestamp", pa.timestamp("us")),
            ("event_type", pa.string()),
            ("amount", pa.float64()),
            ("channel", pa.string()),
            ("offer_id", pa.string()),
            ("propensity", pa.float64()),
            ("score", pa.float64()),
        ]
    )
    step = 1_000_000
    with pq.ParquetWriter(out / "events.parquet", schema) as writer:
        for lo in range(0, len(who), step):
            c, t, k = who[lo : lo + step], at[lo : lo + step], kinds[lo : lo + step]
            m = len(c)
            kind = SYNTHETIC_TYPES[k]
            amount = np.where(
                kind == "purchase",
                rng.lognormal(3.5, 0.7, m).round(2),
                np.where(kind == "refund", rng.lognormal(2.8, 0.6, m).round(2), np.nan),
            )
            score = np.where(
                kind == "nps",
                rng.integers(0, 11, m),
                np.where(kind == "csat", rng.integers(1, 6, m), -1),
            ).astype("float64")
            offers = np.isin(kind, ["offer_sent", "offer_redeemed"])
            offer = np.where(offers, rng.choice(["none", "discount_10", "free_shipping"], m), None)
            table = pa.table(
                {
                    "event_id": pa.array(np.char.add("e", np.arange(lo, lo + m).astype("U10"))),
                    "customer_id": pa.array(ids[c]),
                    "timestamp": pa.array(t.astype("datetime64[us]")),
                    "event_type": pa.array(kind),
                    "amount": pa.array(amount, from_pandas=True),
                    "channel": pa.array(rng.choice(["web", "app", "store", "email"], m)),
                    "offer_id": pa.array(offer),
                    "propensity": pa.array(
                        np.where(kind == "offer_sent", 1 / 3, np.nan), from_pandas=True
                    ),
                    "score": pa.array(np.where(score < 0, np.nan, score), from_pandas=True),
                },
                schema=schema,
            )
            writer.write_table(table, row_group_size=122_880)


def demo_world(size: Size, seed: int, out: Path) -> None:
    from features.demo import generate_world

    world = generate_world(size.customers, seed)
    out.mkdir(parents=True, exist_ok=True)
    world.customers.to_parquet(out / "customers.parquet", index=False)
    events = world.events.sort_values("timestamp", kind="stable")
    events.to_parquet(out / "events.parquet", index=False, row_group_size=122_880)


def dataset(size: Size, source: str, seed: int, cache: Path) -> Path:
    """The cached data directory for `size`, generated on first use (in a subprocess)."""
    if source == "auto":
        source = "synthetic" if size.name == "1m" else _demo_or_synthetic()
    out = cache / f"{source}-{size.name}-{seed}"
    if not (out / "events.parquet").exists():
        print(f"generating {source} data for {size.name} in {out} ...", flush=True)
        _child(["--_generate", source, size.name, str(seed), str(out)])
    return out


def _demo_or_synthetic() -> str:
    try:
        from features.demo import generate_world  # noqa: F401
    except ImportError:
        return "synthetic"
    return "demo"


# --------------------------------------------------------------------------------------------
# measurement (each in its own process)
# --------------------------------------------------------------------------------------------


def _cutoffs(data: Path, n: int) -> list[pd.Timestamp]:
    from features.panel import monthly_cutoffs

    return monthly_cutoffs(data / "events.parquet", n, 90)


def _worker(
    impl: str, data: Path, n_cutoffs: int, mode: str, output: str, save: str | None
) -> dict[str, Any]:
    cutoffs = _cutoffs(data, n_cutoffs)
    to_file = impl == "engine" and output == "parquet"
    t0 = time.perf_counter()
    if impl == "pandas" or mode == "frames":
        events: Any = pq.read_table(data / "events.parquet", columns=EVENT_COLUMNS).to_pandas()
        customers: Any = pd.read_parquet(data / "customers.parquet")
    else:
        events, customers = data / "events.parquet", data / "customers.parquet"
    load_s = time.perf_counter() - t0
    as_of = _data_end(data)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    cpu0, t1 = time.process_time(), time.perf_counter()
    if to_file:  # as `retain features build` does: cutoff by cutoff into the file
        from features.panel import write_panel

        target = save or str(data.parent / f"panel-engine-{data.name}-{n_cutoffs}.parquet")
        rows = write_panel(events, customers, cutoffs, target, as_of=as_of).rows
    elif impl == "engine":
        from features.panel import build_panel

        panel = build_panel(events, customers, cutoffs, as_of=as_of)
    else:
        panel = _reference().build_panel_pandas(events, customers, cutoffs, as_of=as_of)
    wall = time.perf_counter() - t1
    cpu = time.process_time() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB -> GB (Linux)
    if not to_file:
        rows = len(panel)
        if save:
            panel.to_parquet(save, index=False)
    return {
        "impl": impl,
        "measured_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
        "load_avg_1m": round(os.getloadavg()[0], 2),  # the machine is shared: context for wall
        "input": "frames" if impl == "pandas" or mode == "frames" else "parquet",
        "output": "parquet" if to_file else "frame",
        "cutoffs": n_cutoffs,
        "rows": rows,
        "load_s": round(load_s, 3),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "peak_rss_gb": round(peak, 3),
        "rss_after_load_gb": round(rss_loaded, 3),
    }


def _reference_scan(data: Path) -> dict[str, Any]:
    """The issue's calibration: a plain DuckDB group-by of the 1M/50M events (best of 3 each)."""
    import duckdb

    path = str(data / "events.parquet").replace("'", "''")
    con = duckdb.connect()
    con.execute(f"CREATE TABLE ids AS SELECT customer_id FROM read_parquet('{path}')")
    scans = {}
    for name, sql in REFERENCE_SCANS.items():
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            con.sql(sql.format(path=path)).to_arrow_table()
            walls.append(time.perf_counter() - t0)
        scans[name] = {"sql": sql, "wall_s": round(min(walls), 3)}
    best = min(s["wall_s"] for s in scans.values())
    return {
        "measured_at": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
        "scans": scans,
        "issue_wall_s": REFERENCE_SCAN_ISSUE_S,
        "slowdown": round(best / REFERENCE_SCAN_ISSUE_S, 2),  # > 1: slower than the issue's
    }


def _reference() -> Any:
    spec = importlib.util.spec_from_file_location(
        "pandas_reference", ROOT / "bench" / "pandas_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data_end(data: Path) -> pd.Timestamp:
    stats = pq.read_metadata(data / "events.parquet")
    column = stats.schema.names.index("timestamp")
    last = max(
        stats.row_group(i).column(column).statistics.max for i in range(stats.num_row_groups)
    )
    return pd.Timestamp(last)


def _child(args: list[str]) -> str:
    result = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def measure(
    impl: str, data: Path, n_cutoffs: int, mode: str, output: str, save: Path | None = None
) -> dict[str, Any]:
    out = _child(
        ["--_worker", impl, str(data), str(n_cutoffs), mode, output, str(save) if save else "-"]
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def check_equal(engine_panel: Path, pandas_panel: Path) -> str:
    ours, theirs = pd.read_parquet(engine_panel), pd.read_parquet(pandas_panel)
    pd.testing.assert_frame_equal(
        ours, theirs[list(ours.columns)], check_exact=False, rtol=1e-9, check_dtype=False
    )
    return f"equal ({len(ours)} rows x {ours.shape[1]} columns)"


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Benchmark the feature engine (DuckDB) against the pandas reference.",
    )
    parser.add_argument(
        "--sizes",
        default="100k",
        help="comma-separated sizes: 10k (1M events), 100k (10M), 1m (50M); default 100k",
    )
    parser.add_argument(
        "--source",
        choices=["auto", "demo", "synthetic"],
        default="auto",
        help="data: the demo world or the synthetic generator (auto: demo up to 100k)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the data")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "retain-bench",
        help="where generated data are kept between runs",
    )
    parser.add_argument(
        "--impl",
        default="engine,pandas",
        help="comma-separated implementations to run: engine, pandas",
    )
    parser.add_argument(
        "--engine-input",
        choices=["auto", "frames", "parquet"],
        default="auto",
        help="engine reads pandas frames or the Parquet files (auto: frames up to 100k)",
    )
    parser.add_argument(
        "--engine-output",
        choices=["auto", "frame", "parquet"],
        default="auto",
        help="engine returns the panel as a pandas frame (build_panel) or writes it to Parquet "
        "cutoff by cutoff (write_panel, as `retain features build`; auto: Parquet at 1m)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per case (best is kept)")
    parser.add_argument("--no-check", action="store_true", help="skip the equality check")
    parser.add_argument(
        "--no-reference-scan",
        action="store_true",
        help="skip the machine-speed reference (the issue's plain group-by scan of 1M/50M)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="JSON summary path (results of cases not run this time are kept)",
    )
    args, rest = parser.parse_known_args(argv)

    if rest and rest[0] == "--_generate":
        source, size, seed, out = rest[1], SIZES[rest[2]], int(rest[3]), Path(rest[4])
        (synthetic_world if source == "synthetic" else demo_world)(size, seed, out)
        return 0
    if rest and rest[0] == "--_reference_scan":
        print(json.dumps(_reference_scan(Path(rest[1]))))
        return 0
    if rest and rest[0] == "--_worker":
        impl, data, n, mode, output, save = rest[1], Path(rest[2]), int(rest[3]), *rest[4:7]
        print(json.dumps(_worker(impl, data, n, mode, output, None if save == "-" else save)))
        return 0

    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    reference = None
    if not args.no_reference_scan:
        cached = args.cache / f"synthetic-1m-{args.seed}" / "events.parquet"
        if "1m" in sizes or cached.exists():
            big = dataset(SIZES["1m"], "synthetic", args.seed, args.cache)
            reference = json.loads(_child(["--_reference_scan", str(big)]).strip().splitlines()[-1])
            walls = ", ".join(f"{k} {v['wall_s']:.2f} s" for k, v in reference["scans"].items())
            print(f"  reference scan (1m): {walls}", flush=True)
        else:
            print("  reference scan skipped: no 1m data (run --sizes 1m once)", flush=True)
    runs: list[dict[str, Any]] = []
    checks: dict[str, str] = {}
    for name in sizes:
        size = SIZES[name]
        data = dataset(size, args.source, args.seed, args.cache)
        n_events = pq.read_metadata(data / "events.parquet").num_rows
        mode = args.engine_input
        if mode == "auto":
            mode = "parquet" if name == "1m" else "frames"
        output = args.engine_output
        if output == "auto":
            output = "parquet" if name == "1m" else "frame"
        for n_cutoffs in (1, 6) if name != "1m" else (6,):
            check = not args.no_check and set(impls) >= {"engine", "pandas"}
            saved: dict[str, Path] = {}
            for impl in impls:
                best: dict[str, Any] | None = None
                for _ in range(args.repeat):
                    save = args.cache / f"panel-{impl}-{name}-{n_cutoffs}.parquet"
                    run = measure(impl, data, n_cutoffs, mode, output, save if check else None)
                    if best is None or run["wall_s"] < best["wall_s"]:
                        best = run
                    print(f"  {name} x{n_cutoffs} {impl}: {run['wall_s']:.2f} s", flush=True)
                assert best is not None
                best |= {"size": name, "customers": size.customers, "events": n_events}
                runs.append(best)
                if check:
                    saved[impl] = args.cache / f"panel-{impl}-{name}-{n_cutoffs}.parquet"
            if check:
                checks[f"{name}x{n_cutoffs}"] = check_equal(saved["engine"], saved["pandas"])

    runs, checks = _merge_previous(args.out, runs, checks)
    summary = {
        "generated": pd.Timestamp.now("UTC").isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "source": args.source,
        "timed_region": TIMED_REGION,
        "runs": runs,
        "engine_vs_pandas": _speedups(runs),
        # on a loaded machine wall time depends on the scheduler; CPU time is the steadier ratio
        "engine_vs_pandas_cpu": _speedups(runs, "cpu_s"),
        "equality_checks": checks,
        "targets": {f"{s}x{c}": {"wall_s": w, "peak_gb": g} for (s, c), (w, g) in TARGETS.items()},
        "reference_scan": reference,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print_table(runs, summary["engine_vs_pandas"], checks, summary["engine_vs_pandas_cpu"])
    if reference:
        print_speed(reference)
    print(f"\nwrote {args.out}")
    return 0


def _merge_previous(
    path: Path, runs: list[dict[str, Any]], checks: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Keep the earlier results of cases this run did not measure (e.g. the slow 1m case)."""
    if not path.exists():
        return runs, checks
    previous = json.loads(path.read_text())
    done = {(r["size"], r["cutoffs"], r["impl"]) for r in runs}
    kept = [r for r in previous.get("runs", []) if (r["size"], r["cutoffs"], r["impl"]) not in done]
    merged = sorted(kept + runs, key=lambda r: (SIZES[r["size"]].events, r["cutoffs"], r["impl"]))
    return merged, previous.get("equality_checks", {}) | checks


def _speedups(runs: list[dict[str, Any]], key: str = "wall_s") -> dict[str, float]:
    by = {(r["size"], r["cutoffs"], r["impl"]): r for r in runs}
    out = {}
    for (size, cutoffs, impl), run in by.items():
        other = by.get((size, cutoffs, "pandas"))
        if impl == "engine" and other:
            out[f"{size}x{cutoffs}"] = round(other[key] / run[key], 2)
    return out


def print_table(
    runs: list[dict[str, Any]],
    speedups: dict[str, float],
    checks: dict[str, str],
    cpu_speedups: dict[str, float] | None = None,
) -> None:
    header = (
        f"{'size':>5} {'events':>11} {'cutoffs':>7} {'impl':>7} {'input':>8} {'output':>8} "
        f"{'rows':>9} "
        f"{'wall s':>8} {'cpu s':>8} {'peak GB':>8} {'target':>14}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in runs:
        target = TARGETS.get((r["size"], r["cutoffs"]))
        goal = ""
        if target and r["impl"] == "engine":
            wall, peak = target
            ok = r["wall_s"] <= wall and (peak is None or r["peak_rss_gb"] <= peak)
            goal = f"<={wall}s" + (f",{peak}GB" if peak else "") + (" ok" if ok else " MISS")
        print(
            f"{r['size']:>5} {r['events']:>11,} {r['cutoffs']:>7} {r['impl']:>7} {r['input']:>8} "
            f"{r.get('output', 'frame'):>8} {r['rows']:>9,} {r['wall_s']:>8.2f} "
            f"{r['cpu_s']:>8.2f} {r['peak_rss_gb']:>8.2f} {goal:>14}"
        )
    for case, factor in speedups.items():
        cpu = (cpu_speedups or {}).get(case)
        in_cpu = f", {cpu:.1f}x in CPU time" if cpu else ""
        print(f"engine vs pandas {case}: {factor:.1f}x faster in wall time{in_cpu} (target >= 3x)")
    for case, result in checks.items():
        print(f"engine == pandas {case}: {result}")


def print_speed(reference: dict[str, Any]) -> None:
    slow = reference["slowdown"]
    walls = ", ".join(f"{v['wall_s']:.2f} s ({k})" for k, v in reference["scans"].items())
    scaled = ", ".join(f"{s}x{c} <= {w * slow:.2f} s" for (s, c), (w, _) in TARGETS.items())
    print(
        f"machine speed: the plain group-by of 1M/50M took {walls} against the issue's "
        f"{reference['issue_wall_s']} s: {slow:.2f}x slower (the faster scan); "
        f"the wall-time targets at this speed: {scaled}"
    )


if __name__ == "__main__":
    sys.exit(main())
