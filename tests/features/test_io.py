"""Loading files: CSV and Parquet alike, column mapping, quarantine, unreadable files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from features.contract import ContractError
from features.io import load_dataset, load_directory, read_offers, write_quarantine

NOW = pd.Timestamp("2026-01-01")
CUSTOMERS = pd.DataFrame(
    {
        "customer_id": ["C1", "C2"],
        "signup_date": ["2024-01-05", "2024-03-01"],
        "segment": ["a", "b"],
    }
)
EVENTS = pd.DataFrame(
    {
        "event_id": ["e1", "e2", "e3"],
        "customer_id": ["C1", "C2", "C2"],
        "timestamp": ["2025-01-01T10:00:00", "2025-02-01T00:00:00", "2025-03-01T00:00:00"],
        "event_type": ["purchase", "offer_sent", "nps"],
        "amount": [10.0, None, None],
        "offer_id": [None, "gift", None],
        "propensity": [None, 0.25, None],
        "score": [None, None, 9.0],
    }
)
OFFERS = {
    "offers": [
        {
            "offer_id": "gift",
            "kind": "gift",
            "cost": 5,
            "contact_cost": 0.2,
            "marketing": True,
            "messages": {"en": "A gift for you", "de": "Ein Geschenk"},
        },
    ]
}


def write_set(directory: Path, fmt: str, events: pd.DataFrame = EVENTS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, frame in (("customers", CUSTOMERS), ("events", events)):
        path = directory / f"{name}.{fmt}"
        frame.to_parquet(path) if fmt == "parquet" else frame.to_csv(path, index=False)
    (directory / "offers.yaml").write_text(yaml.safe_dump(OFFERS))
    return directory


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_load_directory_reads_both_formats_alike(tmp_path: Path, fmt: str) -> None:
    dataset = load_directory(write_set(tmp_path, fmt), now=NOW)
    assert len(dataset.customers) == 2
    assert dataset.events["event_type"].tolist() == ["purchase", "offer_sent", "nps"]
    assert dataset.events["propensity"].iloc[1] == 0.25
    assert [offer.offer_id for offer in dataset.offers] == ["gift"]
    assert dataset.rejected == {}


def test_load_dataset_applies_column_mapping(tmp_path: Path) -> None:
    CUSTOMERS.rename(columns={"customer_id": "cust_no"}).to_csv(tmp_path / "c.csv", index=False)
    EVENTS.rename(columns={"customer_id": "cust_no", "timestamp": "ts"}).to_csv(
        tmp_path / "e.csv", index=False
    )
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        yaml.safe_dump(
            {
                "customers": {"cust_no": "customer_id"},
                "events": {"cust_no": "customer_id", "ts": "timestamp"},
            }
        )
    )
    dataset = load_dataset(tmp_path / "c.csv", tmp_path / "e.csv", mapping_path=mapping, now=NOW)
    assert dataset.events["customer_id"].tolist() == ["C1", "C2", "C2"]


def test_load_dataset_raises_naming_file_row_and_column(tmp_path: Path) -> None:
    bad = EVENTS.assign(amount=[-5.0, None, None])
    write_set(tmp_path, "csv", bad)
    with pytest.raises(ContractError, match=r"events.csv: row 1, column amount: negative amount"):
        load_directory(tmp_path, now=NOW)


def test_load_dataset_quarantines_bad_rows_and_keeps_good_ones(tmp_path: Path) -> None:
    bad = EVENTS.assign(customer_id=["C1", "C7", "C2"], offer_id=[None, "bogus", None])
    dataset = load_directory(write_set(tmp_path, "csv", bad), on_error="quarantine", now=NOW)
    assert dataset.events["event_id"].tolist() == ["e1", "e3"]
    rejected = dataset.rejected["events"]
    assert rejected["row"].tolist() == [2]
    assert rejected["reason"].iloc[0] == "unknown customer C7; unknown offer bogus"
    assert rejected["raw_event_id"].iloc[0] == "e2"  # the raw row travels with its reasons
    written = write_quarantine(dataset, tmp_path / "q")
    assert pd.read_csv(written["events"])["row"].tolist() == [2]


@pytest.mark.parametrize(
    ("content", "reason"),
    [(b"", "file is empty"), (b"PAR1\x00\x01garbage", "cannot read file")],
)
def test_load_dataset_refuses_unreadable_file(tmp_path: Path, content: bytes, reason: str) -> None:
    write_set(tmp_path, "parquet")
    (tmp_path / "events.parquet").write_bytes(content)
    with pytest.raises(ContractError, match=f"events.parquet: header, column file: {reason}"):
        load_directory(tmp_path, now=NOW)


def test_load_dataset_refuses_truncated_parquet(tmp_path: Path) -> None:
    write_set(tmp_path, "parquet")
    path = tmp_path / "events.parquet"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ContractError, match="cannot read file"):
        load_directory(tmp_path, now=NOW)


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"cost": -1}, "cost", "greater than or equal to 0"),
        ({"messages": {}}, "messages", "at least 1 item"),
        ({"offer_id": "none"}, "offer_id", "implicit do-nothing action"),
        ({"eligibility": {"min_tenure": 3}}, "eligibility.min_tenure", "Extra inputs"),
        ({"marketing": "perhaps"}, "marketing", "valid boolean"),
    ],
)
def test_read_offers_names_bad_field(tmp_path: Path, change: dict, field: str, reason: str) -> None:
    path = tmp_path / "offers.yaml"
    path.write_text(yaml.safe_dump({"offers": [OFFERS["offers"][0] | change]}))
    with pytest.raises(ContractError, match=f"offers.yaml: row 1, column {field}: .*{reason}"):
        read_offers(path)


def test_read_offers_from_csv(tmp_path: Path) -> None:
    path = tmp_path / "offers.csv"
    pd.DataFrame(
        {
            "offer_id": ["gift"],
            "kind": ["gift"],
            "cost": [5],
            "marketing": ["true"],
            "message_en": ["A gift"],
            "message_de": ["Ein Geschenk"],
            "eligible_segments": ["retail|business"],
        }
    ).to_csv(path, index=False)
    (offer,) = read_offers(path)
    assert offer.message_for("de-CH") == "Ein Geschenk"
    assert offer.message_for("nl") is None
    assert offer.eligibility.segments == ["retail", "business"]
