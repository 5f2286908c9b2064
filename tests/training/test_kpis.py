from __future__ import annotations

import pandas as pd
import pytest

from training.kpis import KPI_COLUMNS, kpis, plot_kpis


@pytest.fixture
def world() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_date": ["2024-01-01", "2024-01-01", "2024-02-10", "2024-01-05"],
            "segment": ["retail", "business", "retail", "retail"],
        }
    )
    rows = [
        *[("a", f"2024-0{m}-15", "purchase", 30.0, None) for m in range(1, 8)],
        ("b", "2024-01-20", "purchase", 50.0, None),
        ("b", "2024-01-25", "refund", 5.0, None),
        ("c", "2024-02-20", "purchase", 40.0, None),
        ("c", "2024-03-05", "cancellation", None, None),
        # March NPS: promoters 10, 9; passive 7; detractor 3 -> 50% - 25% = 25.
        ("a", "2024-03-02", "nps", None, 10.0),
        ("b", "2024-03-03", "nps", None, 9.0),
        ("c", "2024-03-04", "nps", None, 7.0),
        ("a", "2024-03-20", "nps", None, 3.0),
        ("a", "2024-03-02", "csat", None, 5.0),
        ("b", "2024-03-03", "csat", None, 4.0),
        ("c", "2024-03-04", "csat", None, 2.0),
    ]
    events = pd.DataFrame(
        rows, columns=["customer_id", "timestamp", "event_type", "amount", "score"]
    )
    return customers, events


def _value(
    table: pd.DataFrame, metric: str, period: str, dimension: str = "all", group: str = "all"
) -> float:
    row = table[
        (table["metric"] == metric)
        & (table["period"] == pd.Timestamp(period))
        & (table["dimension"] == dimension)
        & (table["group"] == group)
    ]
    assert len(row) == 1, f"{metric} {period} {dimension}={group}: {len(row)} rows"
    return float(row["value"].iloc[0])


def test_compute_kpis_known_nps_csat(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    table = kpis(*world)

    assert list(table.columns) == KPI_COLUMNS
    assert _value(table, "nps", "2024-03-01") == pytest.approx(25.0)
    assert _value(table, "csat_mean", "2024-03-01") == pytest.approx(11 / 3)
    assert _value(table, "csat_satisfied_share", "2024-03-01") == pytest.approx(2 / 3)
    assert _value(table, "nps", "2024-03-01", "segment", "business") == pytest.approx(100.0)


def test_compute_kpis_churn_follows_label_definition(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    table = kpis(*world, horizon_days=90)

    # d signed up but never bought: never active (the panel's rule).
    assert _value(table, "active_customers", "2024-02-01") == 2
    # 1 March: a, b (last purchase 41 days ago) and c are active. In the next 90 days a buys,
    # b does not, c cancels: 2 of 3 churn.
    assert _value(table, "active_customers", "2024-03-01") == 3
    assert _value(table, "churn_rate", "2024-03-01") == pytest.approx(2 / 3)
    assert _value(table, "retention_rate", "2024-03-01") == pytest.approx(1 / 3)
    # 1 April: c cancelled before, so only a and b are active; b churns.
    assert _value(table, "active_customers", "2024-04-01") == 2
    assert _value(table, "churn_rate", "2024-04-01") == pytest.approx(0.5)
    # 1 May: the 90-day window ends after the last event, so no churn rate yet.
    assert table[(table["metric"] == "churn_rate") & (table["period"] >= "2024-05-01")].empty
    # 1 June: b's last purchase is more than 90 days old: no longer active.
    assert _value(table, "active_customers", "2024-06-01") == 1


def test_compute_kpis_cltv_is_trailing_net_revenue_per_active_customer(
    world: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    table = kpis(*world)

    # 1 February: a bought 30, b 50 - 5 refund: (30 + 45) / 2.
    assert _value(table, "cltv_12m", "2024-02-01") == pytest.approx(37.5)
    assert _value(table, "revenue", "2024-01-01") == pytest.approx(30 + 50 - 5)
    cohort = table[(table["dimension"] == "cohort") & (table["metric"] == "active_customers")]
    assert set(cohort["group"]) == {"2024-01", "2024-02"}


def test_plot_kpis_one_panel_per_metric(world: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    figure = plot_kpis(kpis(*world), dimension="segment")

    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["retention rate", "nps", "csat mean", "cltv 12m"]
    assert len(visible[0].lines) == 2  # retail and business
