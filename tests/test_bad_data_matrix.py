"""The bad-data matrix of docs/bad-data.md: every kind of bad input, and what Retain does with it.

One row per kind, ids as in the doc. A file row is loaded (`load_directory`, then the store) and
checked with `retain validate`; a request row is sent to the service. A rejected file stops the
load with a `ContractError` naming file, row and column, and `retain validate` exits 1 with that
one line; a rejected request gets a 4xx problem+json whose detail names the field, row or limit.
Either way the store is left exactly as it was. Accepted rows say what is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from features.contract import ContractError
from features.io import Dataset, load_directory
from features.settings import ApiKey, Settings
from serving.app import create_app
from serving.cli import app as cli
from serving.errors import PROBLEM_JSON
from serving.store import Store, metadata

DOC = Path(__file__).parents[1] / "docs" / "bad-data.md"
KEY = "matrix-key-0b6f3d"
MAX_BATCH = 5
MAX_BYTES = 20_000

CUSTOMERS = (
    "customer_id,signup_date,country,segment\nC1,2024-01-05,DE,retail\nC2,2024-03-01,FR,b2b\n"
)
EVENTS_HEADER = "event_id,customer_id,timestamp,event_type,amount,offer_id,propensity,score\n"
EVENTS = EVENTS_HEADER + (
    "e1,C1,2025-01-01T10:00:00,purchase,10.0,,,\n"
    "e2,C2,2025-02-01T00:00:00,offer_sent,,gift,0.25,\n"
    "e3,C2,2025-03-01T00:00:00,nps,,,,9\n"
)
GIFT = {
    "offer_id": "gift",
    "kind": "gift",
    "cost": 5,
    "messages": {"en": "A gift for you", "de": "Ein Geschenk für Sie", "ja": "贈り物です"},
}
UNICODE_ID = "Müller-顧客-🙂"


def events(*rows: str) -> str:
    """The events file: a good first row, then `rows` (so a bad one is row 2)."""
    return (
        EVENTS_HEADER
        + "e1,C1,2025-01-01T10:00:00,purchase,10.0,,,\n"
        + "".join(row + "\n" for row in rows)
    )


def parquet_events(**columns: list[Any]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["C1"], "timestamp": ["2025-01-01"]} | columns)


def truncated_parquet(path: Path) -> bytes:
    parquet_events(event_type=["visit"]).to_parquet(path)
    return path.read_bytes()[:-40]


# --- files ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCase:
    """`content` replaces `name` in a good data set; `error` is the first line reported (a
    trailing `...` matches any rest), or None when the file is accepted and `check` holds."""

    id: str
    name: str
    content: str | bytes | pd.DataFrame | Callable[[Path], bytes]
    error: str | None = None
    check: Callable[[Dataset], None] | None = None
    cli_marks: tuple[pytest.MarkDecorator, ...] = ()


def _header_only(dataset: Dataset) -> None:
    assert dataset.events.empty
    assert list(dataset.events.columns)[:3] == ["event_id", "customer_id", "timestamp"]


def _bom(dataset: Dataset) -> None:
    assert dataset.customers["customer_id"].tolist() == ["C1", "C2"]


def _utc(dataset: Dataset) -> None:
    stamps = dataset.events["timestamp"].astype("str").tolist()
    assert stamps == ["2025-01-01 10:00:00", "2025-06-01 08:00:00", "2025-06-01 15:00:00"]


def _booleans(dataset: Dataset) -> None:
    assert dataset.customers["loyalty_member"].tolist() == [True, False, True, False]
    assert dataset.customers["marketing_consent"].tolist() == [True, False, False, False]


def _unicode(dataset: Dataset) -> None:
    assert dataset.customers["customer_id"].tolist()[-1] == UNICODE_ID
    assert dataset.events["customer_id"].tolist()[-1] == UNICODE_ID
    assert dataset.offers[0].message_for("ja") == "贈り物です"


FILE_CASES = [
    FileCase("file-empty", "events.csv", "", "events.csv: header, column file: file is empty"),
    FileCase(
        "file-blank",
        "events.csv",
        "\n\n  \n",
        "events.csv: header, column file: file has no header row",
    ),
    FileCase("file-header-only", "events.csv", EVENTS_HEADER, check=_header_only),
    FileCase(
        "file-missing-column",
        "events.csv",
        "customer_id,event_type\nC1,visit\n",
        "events.csv: header, column timestamp: required column is missing",
    ),
    FileCase(
        "file-duplicate-column",
        "customers.csv",
        "customer_id,signup_date,customer_id\nC1,2024-01-05,C9\n",
        "customers.csv: header, column file: column 'customer_id' appears more than once in "
        "the header",
    ),
    FileCase(
        "file-wrong-delimiter",
        "customers.csv",
        CUSTOMERS.replace(",", ";"),
        "customers.csv: header, column file: the header is one column "
        "'customer_id;signup_date;country;segment': separate fields with ',', not ';'",
    ),
    FileCase("file-bom", "customers.csv", "\ufeff" + CUSTOMERS, check=_bom),
    FileCase(
        "file-not-utf8",
        "customers.csv",
        (CUSTOMERS + "Müller,2024-01-01,DE,retail\n").encode("latin-1"),
        "customers.csv: header, column file: not UTF-8 text (byte 0xfc): save it as UTF-8",
    ),
    FileCase(
        "file-ragged-row",
        "events.csv",
        events("e2,C1,2025-01-02,visit,,,,,surplus"),
        "events.csv: row 2, column file: expected 8 fields, saw 9",
    ),
    FileCase(
        "file-truncated-parquet",
        "events.parquet",
        truncated_parquet,
        "events.parquet: header, column file: cannot read file: ...",
    ),
    FileCase(
        "file-nested-parquet",
        "events.parquet",
        parquet_events(event_type=[["visit"]]),
        "events.parquet: header, column event_type: nested type list<element: string>, "
        "expected scalars",
    ),
    FileCase(
        "file-number-with-comma",
        "events.csv",
        events('e2,C1,2025-01-02,purchase,"12,50",,,'),
        "events.csv: row 2, column amount: not a number: 12,50",
    ),
    FileCase(
        "file-boolean-as-number",
        "events.parquet",
        parquet_events(event_type=["purchase"], amount=[True]),
        "events.parquet: row 1, column amount: not a number: True",
    ),
    FileCase(
        "file-nan",
        "events.csv",
        events("e2,C1,2025-01-02,purchase,NaN,,,"),
        "events.csv: row 2, column amount: not a number: NaN",
    ),
    FileCase(
        "file-infinity",
        "events.csv",
        events("e2,C1,2025-01-02,purchase,-inf,,,"),
        "events.csv: row 2, column amount: not a finite number",
    ),
    FileCase(
        "file-negative-amount",
        "events.csv",
        events("e2,C1,2025-01-02,refund,-3,,,"),
        "events.csv: row 2, column amount: negative amount -3.0 (must be >= 0)",
    ),
    FileCase(
        "file-negative-propensity",
        "events.csv",
        events("e2,C1,2025-01-02,offer_sent,,gift,-0.2,"),
        "events.csv: row 2, column propensity: propensity -0.2 not in (0, 1]",
    ),
    FileCase(
        "file-score-out-of-range",
        "events.csv",
        events("e2,C1,2025-01-02,nps,,,,11"),
        "events.csv: row 2, column score: nps score 11.0 out of range 0-10",
    ),
    FileCase(
        "file-future-date",
        "events.csv",
        events("e2,C1,2999-01-01,visit,,,,"),
        "events.csv: row 2, column timestamp: timestamp is in the future: 2999-01-01",
    ),
    FileCase(
        "file-ancient-date",
        "events.csv",
        events("e2,C1,1066-10-14,visit,,,,"),
        "events.csv: row 2, column timestamp: timestamp 1066-10-14 is before 1900-01-01 "
        "(a placeholder date?)",
    ),
    FileCase(
        "file-ambiguous-date",
        "events.csv",
        events("e2,C1,01/02/2025,visit,,,,"),
        "events.csv: row 2, column timestamp: unparseable date: 01/02/2025",
    ),
    FileCase(
        "file-epoch-date",
        "events.parquet",
        parquet_events(timestamp=[1735689600], event_type=["visit"]),
        "events.parquet: row 1, column timestamp: unparseable date: 1735689600",
    ),
    FileCase(
        "file-mixed-time-zones",
        "events.csv",
        events(
            "e2,C1,2025-06-01T10:00:00+02:00,visit,,,,", "e3,C1,2025-06-01T10:00:00-05:00,visit,,,,"
        ),
        check=_utc,
    ),
    FileCase(
        "file-booleans-spelled-oddly",
        "customers.csv",
        "customer_id,signup_date,loyalty_member,marketing_consent\n"
        "C1,2024-01-05, YES ,y\nC2,2024-03-01,n,False\nC3,2024-03-01,1,0\nC4,2024-03-01,,\n",
        check=_booleans,
    ),
    FileCase(
        "file-boolean-unknown",
        "customers.csv",
        "customer_id,signup_date,loyalty_member\nC1,2024-01-05,si\nC2,2024-03-01,no\n",
        "customers.csv: row 1, column loyalty_member: not a boolean: si",
    ),
    FileCase(
        "file-duplicate-customer",
        "customers.csv",
        CUSTOMERS + "C1,2024-06-01,DE,retail\n",
        "customers.csv: row 3, column customer_id: duplicate customer_id C1",
    ),
    FileCase(
        "file-duplicate-event-id",
        "events.csv",
        events("e1,C1,2025-01-02,visit,,,,"),
        "events.csv: row 2, column event_id: duplicate event_id e1",
    ),
    FileCase(
        "file-missing-value",
        "events.csv",
        events("e2,,2025-01-02,visit,,,,"),
        "events.csv: row 2, column customer_id: missing customer_id",
    ),
    FileCase(
        "file-unknown-customer",
        "events.csv",
        events("e2,C404,2025-01-02,visit,,,,"),
        "events.csv: row 2, column customer_id: unknown customer C404",
    ),
    FileCase(
        "file-unknown-offer",
        "events.csv",
        events("e2,C1,2025-01-02,offer_sent,,bogus,0.5,"),
        "events.csv: row 2, column offer_id: unknown offer bogus",
    ),
    FileCase(
        "file-bad-country",
        "customers.csv",
        CUSTOMERS + "C3,2024-06-01,Germany,retail\n",
        "customers.csv: row 3, column country: not an ISO 3166-1 alpha-2 code: GERMANY",
    ),
    FileCase(
        "file-unicode",
        "events.csv",
        events(f"e2,{UNICODE_ID},2025-01-02,complaint,,,,"),
        check=_unicode,
    ),
    FileCase(
        "file-control-character",
        "customers.csv",
        CUSTOMERS + '"C\n3",2024-06-01,DE,retail\n',
        "customers.csv: row 3, column customer_id: control character U+000A in customer_id",
    ),
    FileCase(
        "file-nul-in-attribute",
        "customers.csv",
        "customer_id,signup_date,note\nC1,2024-01-05,ok\nC2,2024-03-01,a\x00b\n",
        "customers.csv: row 2, column note: control character U+0000 in note",
    ),
    FileCase(
        "file-markup-in-value",
        "events.csv",
        events("e2,C[/x],2025-01-02,visit,,,,"),
        "events.csv: row 2, column customer_id: unknown customer C[/x]",
    ),
    FileCase(
        "file-offer-negative-cost",
        "offers.yaml",
        yaml.safe_dump({"offers": [GIFT | {"cost": -1}]}, allow_unicode=True),
        "offers.yaml: row 1, column cost: Input should be greater than or equal to 0",
    ),
]


def write_dataset(directory: Path, case: FileCase | None = None) -> Path:
    """The good data set, with `case`'s file in place of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {
        "customers.csv": CUSTOMERS,
        "events.csv": EVENTS,
        "offers.yaml": yaml.safe_dump({"offers": [GIFT]}, allow_unicode=True),
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    if case is None:
        return directory
    path = directory / case.name
    if path.suffix == ".parquet":
        (directory / path.with_suffix(".csv").name).unlink()
    content = case.content
    if isinstance(content, pd.DataFrame):
        content.to_parquet(path)
    elif callable(content):
        path.write_bytes(content(path))
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_bytes(content.encode("utf-8"))
    if case.id == "file-unicode":
        with (directory / "customers.csv").open("a", encoding="utf-8") as customers:
            customers.write(f"{UNICODE_ID},2024-06-01,DE,retail\n")
    return directory


def matches(expected: str, actual: str) -> bool:
    if expected.endswith("..."):
        return actual.startswith(expected.removesuffix("..."))
    return actual == expected


def snapshot(store: Store) -> dict[str, Any]:
    """Every row of every table, to show that a rejected input changed nothing."""
    with store.engine.connect() as conn:
        return {
            table.name: conn.execute(sa.select(table)).all() for table in metadata.sorted_tables
        }


@pytest.fixture
def loaded_store(tmp_path: Path) -> Iterator[Store]:
    """A store holding the good data set."""
    with Store(f"sqlite:///{tmp_path / 'retain.db'}") as store:
        store.create_all()
        store.load_dataset(load_directory(write_dataset(tmp_path / "good")))
        yield store


@pytest.mark.parametrize("case", FILE_CASES, ids=[case.id for case in FILE_CASES])
def test_bad_file_is_refused_naming_place_or_accepted(
    case: FileCase, loaded_store: Store, tmp_path: Path
) -> None:
    directory = write_dataset(tmp_path / "input", case)
    before = snapshot(loaded_store)
    if case.error is None:
        dataset = load_directory(directory)
        assert case.check is not None
        case.check(dataset)
        loaded_store.load_dataset(dataset)  # what was accepted can be stored
        return
    with pytest.raises(ContractError) as raised:
        loaded_store.load_dataset(load_directory(directory))
    first = str(raised.value).split(" (and ")[0]
    assert matches(case.error, first), first
    assert len(raised.value.errors) == 1, raised.value.errors
    assert snapshot(loaded_store) == before


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id, marks=case.cli_marks) for case in FILE_CASES],
)
def test_bad_file_makes_validate_exit_1_with_one_line(case: FileCase, tmp_path: Path) -> None:
    directory = write_dataset(tmp_path / "input", case)
    result = CliRunner().invoke(cli, ["validate", str(directory)])
    errors = [line for line in result.output.splitlines() if line.startswith("error")]
    if case.error is None:
        assert result.exit_code == 0, result.output
        assert errors == []
        return
    assert result.exit_code == 1, result.output
    assert len(errors) == 1, result.output
    assert matches(f"error: {case.error}", errors[0]), errors[0]


# --- requests ------------------------------------------------------------------------------------

PURCHASE = {
    "event_id": "e9",
    "customer_id": "C1",
    "timestamp": "2025-01-01T10:00:00",
    "event_type": "purchase",
    "amount": 20.0,
}


def batch(**changes: Any) -> dict[str, Any]:
    return {"events": [PURCHASE | changes]}


def _chunks() -> Iterator[bytes]:
    """A body sent without Content-Length (chunked), larger than the limit."""
    yield b'{"events": ['
    for i in range(300):
        yield json.dumps(PURCHASE | {"event_id": f"c{i}"}).encode() + b","
    yield json.dumps(PURCHASE).encode() + b"]}"


@dataclass(frozen=True)
class RequestCase:
    """A POST to `path` with a JSON body (`json`) or raw bytes (`content`); the expected status
    and detail (a trailing `...` matches any rest); for accepted ones, `check` on the store."""

    id: str
    path: str
    status: int
    detail: str = ""
    json: Any = None
    content: bytes | Callable[[], Iterator[bytes]] | None = None
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    check: Callable[[Store], None] | None = None


def _stored_once(store: Store) -> None:
    stored = store.events_of("C1")
    assert stored["event_id"].tolist() == ["e0"]
    assert stored["amount"].tolist() == [20.0]  # the first record stands


def _unicode_stored(store: Store) -> None:
    customer = store.customer(UNICODE_ID)
    assert customer is not None and customer["nickname"] == "Zoë 🙂"
    assert store.events_of(UNICODE_ID)["event_type"].tolist() == ["purchase"]


def _stored_utc(store: Store) -> None:
    stored = store.events_of("C1").set_index("event_id")["timestamp"].astype("str")
    assert stored["tz1"] == "2025-06-01 08:00:00"
    assert stored["tz2"] == "2025-06-01 15:00:00"


def _loyalty_yes(store: Store) -> None:
    customer = store.customer("C7")
    assert customer is not None and customer["loyalty_member"] is True


REQUEST_CASES = [
    RequestCase(
        "http-body-not-object",
        "/v1/events",
        422,
        "body: Input should be a valid dictionary or object to extract fields from",
        json=[PURCHASE],
    ),
    RequestCase(
        "http-events-not-list",
        "/v1/events",
        422,
        "events: Input should be a valid list",
        json={"events": PURCHASE},
    ),
    RequestCase(
        "http-empty-batch",
        "/v1/events",
        422,
        "events: List should have at least 1 item after validation, not 0",
        json={"events": []},
    ),
    RequestCase(
        "http-malformed-json",
        "/v1/events",
        422,
        "body: invalid JSON at position 12: Expecting value",
        content=b'{"events": [',
    ),
    RequestCase(
        "http-not-utf8",
        "/v1/customers",
        400,
        "body is not UTF-8 (byte 0xfc at 33)",
        content=b'{"customers": [{"customer_id": "M\xfcller", "signup_date": "2024-01-01"}]}',
    ),
    RequestCase(
        "http-wrong-content-type",
        "/v1/events",
        415,
        "expected a JSON body with Content-Type application/json, got text/csv",
        content=b"customer_id,timestamp,event_type\nC1,2025-01-01,visit\n",
        headers={"content-type": "text/csv"},
    ),
    RequestCase(
        "http-batch-over-limit",
        "/v1/events",
        413,
        f"at most {MAX_BATCH} events per request",
        json={"events": [PURCHASE | {"event_id": f"b{i}"} for i in range(MAX_BATCH + 1)]},
    ),
    RequestCase(
        "http-body-over-limit",
        "/v1/events",
        413,
        f"request body over {MAX_BYTES} bytes",
        json={"events": [PURCHASE | {"channel": "x" * MAX_BYTES}]},
    ),
    RequestCase(
        "http-chunked-over-limit",
        "/v1/events",
        413,
        f"request body over {MAX_BYTES} bytes",
        content=_chunks,
    ),
    RequestCase(
        "http-bad-content-length",
        "/v1/events",
        400,
        "invalid Content-Length header",
        content=json.dumps(batch()).encode(),
        headers={"content-type": "application/json", "content-length": "12x"},
    ),
    RequestCase(
        "http-nan",
        "/v1/events",
        422,
        "events.0.amount: Input should be a finite number",
        content=json.dumps(batch(event_type="visit")).replace("20.0", "NaN").encode(),
    ),
    RequestCase(
        "http-infinity",
        "/v1/events",
        422,
        "events.0.amount: Input should be a finite number",
        content=json.dumps(batch()).replace("20.0", "Infinity").encode(),
    ),
    RequestCase(
        "http-boolean-as-number",
        "/v1/events",
        422,
        "events.0.amount: Input should be a number, not a boolean",
        json=batch(amount=True),
    ),
    RequestCase(
        "http-number-as-date",
        "/v1/customers",
        422,
        "customers.0.signup_date: Input should be an ISO 8601 date or datetime such as "
        "2025-01-31, not a number",
        json={"customers": [{"customer_id": "C7", "signup_date": "20240101"}]},
    ),
    RequestCase(
        "http-unknown-field",
        "/v1/events",
        422,
        "events.0.amout: Extra inputs are not permitted",
        json=batch(amout=3.0),
    ),
    RequestCase(
        "http-nested-attribute",
        "/v1/customers",
        422,
        "customers.0.tags: An attribute should be a string, a finite number, a boolean or null",
        json={"customers": [{"customer_id": "C7", "signup_date": "2024-01-01", "tags": ["a"]}]},
    ),
    RequestCase(
        "http-long-id",
        "/v1/customers",
        422,
        "customers.0.customer_id: String should have at most 200 characters",
        json={"customers": [{"customer_id": "C" * 201, "signup_date": "2024-01-01"}]},
    ),
    RequestCase(
        "http-unknown-customer",
        "/v1/events",
        422,
        "request: row 1, column events.customer_id: unknown customer C404",
        json=batch(customer_id="C404"),
    ),
    RequestCase(
        "http-unknown-offer",
        "/v1/events",
        422,
        "request: row 1, column events.offer_id: unknown offer bogus",
        json=batch(event_type="offer_sent", amount=None, offer_id="bogus", propensity=0.5),
    ),
    RequestCase(
        "http-unknown-decision",
        "/v1/decisions/nope/outcome",
        404,
        "no decision 'nope'",
        json={"kind": "redeemed"},
    ),
    RequestCase(
        "http-unknown-outcome-kind",
        "/v1/decisions/d1/outcome",
        422,
        "kind: Input should be 'redeemed', 'declined', 'retained' or 'churned'",
        json={"kind": "won"},
    ),
    RequestCase(
        "http-duplicate-in-batch",
        "/v1/events",
        422,
        "request: row 2, column events.event_id: duplicate event_id e9",
        json={"events": [PURCHASE, PURCHASE]},
    ),
    RequestCase(
        "http-duplicate-customer-in-batch",
        "/v1/customers",
        422,
        "request: row 2, column customers.customer_id: duplicate customer_id C7",
        json={"customers": [{"customer_id": "C7", "signup_date": "2024-01-01"}] * 2},
    ),
    RequestCase(
        "http-repeated-event-id",
        "/v1/events",
        200,
        json=batch(event_id="e0", amount=99.0),
        check=_stored_once,
    ),
    RequestCase(
        "http-control-character",
        "/v1/events",
        422,
        "request: row 1, column events.customer_id: control character U+0000 in customer_id...",
        json=batch(customer_id="C\x001"),
    ),
    RequestCase(
        "http-unicode",
        "/v1/events",
        200,
        json=batch(customer_id=UNICODE_ID),
        check=_unicode_stored,
    ),
    RequestCase(
        "http-ancient-date",
        "/v1/events",
        422,
        "request: row 1, column events.timestamp: timestamp 1066-10-14 is before 1900-01-01 "
        "(a placeholder date?)",
        json=batch(timestamp="1066-10-14T09:00:00"),
    ),
    RequestCase(
        "http-future-date",
        "/v1/events",
        422,
        "request: row 1, column events.timestamp: timestamp is in the future: 2999-01-01",
        json=batch(timestamp="2999-01-01T00:00:00Z"),
    ),
    RequestCase(
        "http-mixed-time-zones",
        "/v1/events",
        200,
        json={
            "events": [
                PURCHASE | {"event_id": "tz1", "timestamp": "2025-06-01T10:00:00+02:00"},
                PURCHASE | {"event_id": "tz2", "timestamp": "2025-06-01T10:00:00-05:00"},
            ]
        },
        check=_stored_utc,
    ),
    RequestCase(
        "http-negative-propensity",
        "/v1/events",
        422,
        "request: row 1, column events.propensity: propensity -0.5 not in (0, 1]",
        json=batch(event_type="offer_sent", amount=None, offer_id="gift", propensity=-0.5),
    ),
    RequestCase(
        "http-score-out-of-range",
        "/v1/events",
        422,
        "request: row 1, column events.score: csat score 6.0 out of range 1-5",
        json=batch(event_type="csat", amount=None, score=6),
    ),
    RequestCase(
        "http-boolean-spelled-oddly",
        "/v1/customers",
        200,
        json={
            "customers": [
                {"customer_id": "C7", "signup_date": "2024-01-01", "loyalty_member": "yes"}
            ]
        },
        check=_loyalty_yes,
    ),
    RequestCase(
        "http-boolean-unknown",
        "/v1/customers",
        422,
        "customers.0.loyalty_member: Input should be a valid boolean, unable to interpret input",
        json={
            "customers": [
                {"customer_id": "C7", "signup_date": "2024-01-01", "loyalty_member": "maybe"}
            ]
        },
    ),
]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The service with customers C1 and UNICODE_ID, event e0, decision d1 and the gift offer."""
    offers = tmp_path / "offers.yaml"
    offers.write_text(yaml.safe_dump({"offers": [GIFT]}, allow_unicode=True), encoding="utf-8")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'retain.db'}",
        offers_path=offers,
        api_keys=[ApiKey(name="matrix", key=KEY, scopes=["crm", "marketing", "admin"])],
        max_batch_events=MAX_BATCH,
        max_request_bytes=MAX_BYTES,
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        key = {"X-API-Key": KEY}
        customers = [
            {"customer_id": "C1", "signup_date": "2024-01-01"},
            {"customer_id": UNICODE_ID, "signup_date": "2024-01-01", "nickname": "Zoë 🙂"},
        ]
        posted = test_client.post("/v1/customers", json={"customers": customers}, headers=key)
        assert posted.status_code == 200, posted.text
        posted = test_client.post("/v1/events", json=batch(event_id="e0"), headers=key)
        assert posted.status_code == 200, posted.text
        store: Store = test_client.app.state.store  # type: ignore[attr-defined]
        store.record_decision(
            customer_id="C1", offer_id="gift", model_version="1", decision_id="d1"
        )
        yield test_client


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[case.id for case in REQUEST_CASES])
def test_bad_request_gets_problem_and_stores_nothing(case: RequestCase, client: TestClient) -> None:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    before = snapshot(store)
    headers = case.headers | {"X-API-Key": KEY}
    if case.json is not None:
        content: bytes | Iterator[bytes] | None = json.dumps(case.json).encode()
    else:
        content = case.content() if callable(case.content) else case.content
    response = client.post(case.path, headers=headers, content=content)
    assert response.status_code == case.status, response.text
    if case.status >= 400:
        assert response.headers["content-type"] == PROBLEM_JSON
        assert matches(case.detail, response.json()["detail"]), response.json()["detail"]
        assert snapshot(store) == before
    else:
        assert case.check is not None
        case.check(store)


# --- the doc -------------------------------------------------------------------------------------


def test_doc_lists_every_case_of_the_matrix() -> None:
    """docs/bad-data.md and these tables name the same cases, in the same order."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(encoding="utf-8"), re.MULTILINE)
    assert rows == [case.id for case in FILE_CASES] + [case.id for case in REQUEST_CASES]
    assert len(rows) >= 30
