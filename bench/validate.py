"""Benchmark: demo-world generation and data-contract validation at scale.

Generates the demo world (100k customers, about 10M events, by default), writes it as Parquet and
CSV, and times `load_directory` (read + validate every row) on each. Prints a table and writes
bench/results/validate.json.

    .venv/bin/python -m bench.validate --customers 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from features.demo import generate_world
from features.io import load_directory

RESULTS = Path(__file__).parent / "results" / "validate.json"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000, help="demo world size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-csv", action="store_true", help="time Parquet only")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        world = generate_world(args.customers, args.seed)
        generate = time.perf_counter() - started
        rows.append(("generate world", generate, len(world.events)))
        for fmt in ("parquet", *(() if args.skip_csv else ("csv",))):
            directory = Path(tmp) / fmt
            started = time.perf_counter()
            world.write(directory, fmt)  # type: ignore[arg-type]
            rows.append((f"write {fmt}", time.perf_counter() - started, len(world.events)))
            started = time.perf_counter()
            dataset = load_directory(directory)
            rows.append(
                (f"load + validate {fmt}", time.perf_counter() - started, len(dataset.events))
            )

    print(f"{'step':<24}{'seconds':>10}{'events':>14}{'M events/s':>12}")
    for step, seconds, events in rows:
        print(f"{step:<24}{seconds:>10.2f}{events:>14,}{events / seconds / 1e6:>12.2f}")
    print(f"peak memory {peak_rss_gb():.1f} GB")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "customers": args.customers,
                "steps": [{"step": s, "seconds": round(t, 3), "events": n} for s, t, n in rows],
                "peak_rss_gb": round(peak_rss_gb(), 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
