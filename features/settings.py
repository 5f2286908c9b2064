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


@lru_cache
def get_settings() -> Settings:
    return Settings()
