"""Drift monitoring: the latest `retain monitor` result.

Scope `admin`, not `crm`: the report is about operating the model (whether its training data still
looks like today's customers, and so whether to retrain, promote or reload), which is what the
`admin` keys are for (`/v1/admin/reload`, `/v1/admin/status`). A dashboard or alerting job can
then read it without a `crm` key, which would also open every customer's scores and events.

`retain monitor` writes `DATA_DIR/monitor/<as_of>/drift.json` and then moves the
`DATA_DIR/monitor/latest` pointer to it; this module owns that layout, the command imports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from fastapi import APIRouter, HTTPException

from features.settings import Settings
from serving.deps import AdminKey, SettingsDep
from serving.schemas import DriftReport

MONITOR_DIR: Final = "monitor"
LATEST: Final = "latest"
REPORT_JSON: Final = "drift.json"

router = APIRouter(prefix="/v1/monitor", tags=["monitor"])


def monitor_root(settings: Settings) -> Path:
    return settings.data_dir / MONITOR_DIR


def latest_report_path(settings: Settings) -> Path | None:
    """`drift.json` of the run the `latest` pointer names (None before the first run)."""
    root = monitor_root(settings)
    try:
        name = (root / LATEST).read_text().strip()
    except OSError:
        return None
    path = root / name / REPORT_JSON
    return path if name and path.is_file() else None


def latest_drift(settings: Settings) -> DriftReport:
    """The latest monitoring result; 404 before `retain monitor` has run."""
    path = latest_report_path(settings)
    if path is None:
        raise HTTPException(
            404,
            "no drift monitoring run yet: run `retain monitor` "
            f"(results go to {monitor_root(settings)})",
        )
    return DriftReport.model_validate(json.loads(path.read_text()))


@router.get(
    "/drift",
    response_model=DriftReport,
    responses={404: {"description": "No monitoring run yet (`retain monitor`)"}},
)
def drift(_: AdminKey, settings: SettingsDep) -> DriftReport:
    """PSI of the churn model's features and score, training data vs the latest customers."""
    return latest_drift(settings)
