"""The one settings object. Nothing else in Retain reads the environment."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiKey(BaseModel):
    """A named API key and the scopes it grants (`crm`, `marketing`, `admin`)."""

    name: str
    key: SecretStr
    scopes: list[str]


class Settings(BaseSettings):
    """Paths, URIs and defaults; every field can be set as `RETAIN_<FIELD>` or in `.env`."""

    model_config = SettingsConfigDict(env_prefix="RETAIN_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Where demo data, panels and scores go.")
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlruns/mlflow.db", description="MLflow tracking and registry backend."
    )
    mlflow_artifact_root: Path = Field(
        Path("mlruns/artifacts"), description="Artifact store for new experiments."
    )
    database_url: str = Field(
        "sqlite:///data/retain.db", description="Online store (SQLite default, PostgreSQL by URL)."
    )
    offers_path: Path | None = Field(None, description="Offers catalog the service uses.")
    churn_horizon_days: int = Field(90, gt=0, description="H of the churn label, in days.")
    api_keys: list[ApiKey] = Field(
        default_factory=list,
        description='JSON list, e.g. [{"name": "crm-prod", "key": "…", "scopes": ["crm"]}].',
    )
    max_batch_events: int = Field(10_000, gt=0, description="Most events per ingest request.")
    max_request_bytes: int = Field(5_000_000, gt=0, description="Largest request body accepted.")
    max_in_flight: int = Field(
        32,
        ge=0,
        description="Requests one worker works on at once; more are answered 503 with Retry-After"
        " at once instead of queueing into client timeouts (0: no limit).",
    )
    # --- scoring service -----------------------------------------------------------------------
    model_alias: str = Field("champion", description="Registry alias the service loads.")
    model_poll_seconds: float = Field(
        0.0, ge=0, description="Check the registry alias every N seconds and reload (0: never)."
    )
    risk_band_medium: float = Field(0.3, gt=0, lt=1, description="Risk from which band is medium.")
    risk_band_high: float = Field(0.6, gt=0, lt=1, description="Risk from which band is high.")
    exploration_epsilon: float = Field(
        0.1, ge=0, le=1, description="Share of offer decisions drawn at random among eligible."
    )
    max_batch_customers: int = Field(500, gt=0, description="Most customers per batch score.")
    max_recommendations: int = Field(10, gt=0, description="Most actions one recommend returns.")
    feature_max_age_seconds: float = Field(
        3600.0,
        gt=0,
        description="Serve cached online features computed at most this long ago (unchanged data).",
    )
    feature_refresh_seconds: float = Field(
        1800.0, ge=0, description="Recompute every customer's features in the background (0: off)."
    )
    feature_warm_reasons: bool = Field(
        True, description="Also precompute reason codes in the background (TreeSHAP is costly)."
    )
    kpi_cache_seconds: float = Field(
        900.0, ge=0, description="Recompute the KPIs at most this often."
    )
    # --- drift monitoring (`retain monitor`) -----------------------------------------------------
    drift_warning_psi: float = Field(
        0.1, gt=0, description="PSI from which a feature's drift is a warning."
    )
    drift_critical_psi: float = Field(
        0.25, gt=0, description="PSI from which a feature's drift is critical."
    )
    drift_bins: int = Field(
        10, ge=2, le=100, description="Quantile bins of the training data per numeric feature."
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
