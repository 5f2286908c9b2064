"""Read a data set (CSV or Parquet) into contract-typed frames.

The only module in `features/` that touches files. Raw input is never rewritten: rejected rows
either stop the load with a `ContractError`, or, with `on_error="quarantine"`, are copied with
their reasons to a quarantine file beside the other outputs.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from features.contract import (
    ERROR_COLUMNS,
    ContractError,
    Validated,
    validate_customers,
    validate_events,
)
from features.offers import Offer, catalog_from_table, parse_catalog

OnError = Literal["raise", "quarantine"]
_RAGGED = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OTHER_DELIMITERS = (";", "\t", "|")


@dataclass
class Dataset:
    """A validated data set, plus what was quarantined (empty when nothing was)."""

    customers: pd.DataFrame
    events: pd.DataFrame
    offers: list[Offer]
    rejected: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def rejected_count(self) -> int:
        return sum(len(frame) for frame in self.rejected.values())


def _error(
    source: Path, reason: str, column: str = "file", row: int | None = None
) -> ContractError:
    return ContractError(
        pd.DataFrame(
            [
                {
                    "file": source.name,
                    "row": pd.NA if row is None else row,
                    "column": column,
                    "reason": reason,
                }
            ],
            columns=ERROR_COLUMNS,
        )
    )


def _check_header(path: Path, names: list[str]) -> None:
    """Refuse headers that pandas would silently mangle (`id`, `id.1`) or misread."""
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        raise _error(path, f"column {repeated[0]!r} appears more than once in the header")
    if len(names) == 1:
        found = [d for d in _OTHER_DELIMITERS if d in names[0]]
        if found:
            reason = f"the header is one column {names[0]!r}: separate fields with ','"
            raise _error(path, f"{reason}, not {found[0]!r}")


def _csv_header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as file:
        return next((row for row in csv.reader(file) if row), [])  # pandas skips blank lines


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV (every column as text, so parsing is ours) or Parquet file as it is."""
    if not path.exists():
        raise _error(path, "file not found")
    if path.stat().st_size == 0:
        raise _error(path, "file is empty")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            table: pa.Table = pq.read_table(path)
            _check_header(path, table.column_names)
            nested = [f for f in table.schema if pa.types.is_nested(f.type)]
            if nested:
                # str() of a list or struct would pass as a string value.
                raise _error(
                    path, f"nested type {nested[0].type}, expected scalars", nested[0].name
                )
            return table.to_pandas()
        frame = pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""])
        _check_header(path, _csv_header(path))
        return frame
    except pd.errors.ParserError as exc:
        ragged = _RAGGED.search(str(exc))
        if ragged:
            # pandas counts records from 1 at the header; our rows count from 1 after it.
            expected, line, saw = (int(group) for group in ragged.groups())
            raise _error(path, f"expected {expected} fields, saw {saw}", row=line - 1) from exc
        raise _error(path, f"cannot read file: {str(exc).splitlines()[0]}") from exc
    except UnicodeDecodeError as exc:
        byte = exc.object[exc.start]
        raise _error(path, f"not UTF-8 text (byte 0x{byte:02x}): save it as UTF-8") from exc
    except (pa.ArrowException, OSError) as exc:
        raise _error(path, f"cannot read file: {str(exc).splitlines()[0]}") from exc
    except pd.errors.EmptyDataError as exc:
        raise _error(path, "file has no header row") from exc


def read_mapping(path: Path | None) -> dict[str, dict[str, str]]:
    """A column-mapping file: `{table: {their_column: contract_column}}` (YAML)."""
    if path is None:
        return {}
    mapping = yaml.safe_load(path.read_text()) or {}
    if not isinstance(mapping, dict) or not all(isinstance(v, dict) for v in mapping.values()):
        raise _error(path, "mapping must be {table: {their_column: contract_column}}")
    return mapping


def read_offers(path: Path) -> list[Offer]:
    """The offers catalog from YAML (`offers:` list, or a bare list) or CSV."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            raw: Any = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise _error(path, f"invalid YAML: {exc}") from exc
        entries = raw.get("offers") if isinstance(raw, dict) else raw
        if not isinstance(entries, list):
            raise _error(path, "expected a list of offers (or `offers:` holding one)")
        return parse_catalog(entries, source=path.name)
    return parse_catalog(catalog_from_table(read_table(path)), source=path.name)


def _settle(validated: Validated, raw: pd.DataFrame, on_error: OnError) -> pd.DataFrame:
    """Stop on the first bad load, or return the rejected raw rows with their reasons."""
    if validated.errors.empty:
        return validated.errors
    header_problem = validated.errors["row"].isna().any()
    if on_error == "raise" or header_problem:
        raise ContractError(validated.errors)
    reasons = (
        validated.errors.groupby("row", sort=True)
        .agg(column=("column", ";".join), reason=("reason", "; ".join))
        .reset_index()
    )
    rows = raw.iloc[reasons["row"].to_numpy(dtype="int64") - 1].reset_index(drop=True)
    return pd.concat([reasons, rows.add_prefix("raw_")], axis=1)


def find_table(directory: Path, name: str) -> Path:
    """`<dir>/<name>.parquet`, `.csv` (or `.yaml` for offers), whichever exists."""
    suffixes = (".yaml", ".yml", ".csv") if name == "offers" else (".parquet", ".csv")
    for suffix in suffixes:
        candidate = directory / f"{name}{suffix}"
        if candidate.exists():
            return candidate
    raise _error(directory / name, f"no {name} file ({' or '.join(suffixes)}) in {directory}")


def load_dataset(
    customers_path: Path,
    events_path: Path,
    offers_path: Path | None = None,
    *,
    mapping_path: Path | None = None,
    on_error: OnError = "raise",
    now: pd.Timestamp | None = None,
) -> Dataset:
    """Load and validate customers, events and (optionally) the offers catalog.

    Args:
        customers_path, events_path, offers_path: CSV or Parquet files (offers: YAML or CSV).
        mapping_path: optional YAML renaming a user's columns to the contract's.
        on_error: "raise" stops at bad rows; "quarantine" sets them aside in `Dataset.rejected`.
        now: latest allowed timestamp (default: now).

    Raises:
        ContractError: naming file, row, column and reason of every bad row.
    """
    mapping = read_mapping(mapping_path)
    offers = read_offers(offers_path) if offers_path is not None else []

    raw_customers = read_table(customers_path).rename(columns=mapping.get("customers", {}))
    customers = validate_customers(raw_customers, source=customers_path.name, now=now)
    rejected = {"customers": _settle(customers, raw_customers, on_error)}

    raw_events = read_table(events_path).rename(columns=mapping.get("events", {}))
    events = validate_events(
        raw_events,
        customer_ids=customers.valid["customer_id"],
        offer_ids=[o.offer_id for o in offers] if offers else None,
        source=events_path.name,
        now=now,
    )
    rejected["events"] = _settle(events, raw_events, on_error)
    return Dataset(
        customers=customers.valid,
        events=events.valid,
        offers=offers,
        rejected={name: frame for name, frame in rejected.items() if not frame.empty},
    )


def load_directory(directory: Path, **options: Any) -> Dataset:
    """Load `customers`, `events` and `offers` files found in one directory."""
    try:
        offers_path: Path | None = find_table(directory, "offers")
    except ContractError:
        offers_path = None
    return load_dataset(
        find_table(directory, "customers"), find_table(directory, "events"), offers_path, **options
    )


def write_quarantine(dataset: Dataset, directory: Path) -> dict[str, Path]:
    """Write each table's rejected rows to `<directory>/<table>.rejected.csv`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, frame in dataset.rejected.items():
        path = directory / f"{name}.rejected.csv"
        frame.to_csv(path, index=False)
        written[name] = path
    return written
