"""MLflow at the edge: log a training run, register the model, move aliases, load by alias.

Lifecycle (MLflow model-registry **aliases**, not stages):

- every training run registers a new version and gives it the alias `challenger`; the very first
  version of a model also becomes `champion`;
- `promote` moves `champion` to the challenger only if the challenger is at least as good on the
  same latest holdout (see `promote`), or when forced, which is recorded as tags on the version and
  its run;
- serving loads `champion` with `load_champion`, which returns the fitted estimator itself (LightGBM
  booster + calibrator) from a pickled run artifact. The pyfunc model logged next to it returns
  probabilities (churn) or revenue (CLV) and is for interchange (`models:/churn-risk@champion`).

Nothing here runs at import; the tracking URI is set when a function is called.
"""

from __future__ import annotations

import math
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.pyfunc.model import PythonModel
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from features.settings import get_settings
from training.metrics import binary_metrics, regression_metrics

CHAMPION = "champion"
CHALLENGER = "challenger"
ESTIMATOR_ARTIFACT = "estimator/estimator.pkl"
KIND_TAG = "retain.kind"
# Metric keys compared by `promote`, as logged by `training.pipeline`.
CHURN_AUC = "model.roc_auc"
CHURN_ECE = "model.ece"
CLV_MAE = "model.mae"
CLV_RMSE = "model.rmse"
POLICY_VALUE = "policy.learned_dr"  # next-offer: doubly-robust value per held-out decision
KINDS = ("churn", "clv", "next-offer")


class EstimatorPyfunc(PythonModel):
    """Pyfunc wrapper: `predict` returns P(churn) for kind "churn", revenue for kind "clv", and
    the uplift of each offer (columns in `offers_` order) for kind "next-offer"."""

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind = kind
        self.estimator: Any = None

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["estimator"], "rb") as handle:
            self.estimator = pickle.load(handle)  # our own artifact, from our own store

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> np.ndarray:
        frame = pd.DataFrame(model_input)
        if self.kind == "churn":
            return np.asarray(self.estimator.predict_proba(frame)[:, 1], dtype=float)
        if self.kind == "next-offer":
            return np.asarray(self.estimator.effects(frame), dtype=float)
        return np.asarray(self.estimator.predict(frame), dtype=float)


@dataclass(frozen=True)
class RegisteredRun:
    """Where a training run went: its run id, the registered version and its aliases."""

    run_id: str
    experiment_id: str
    model_name: str
    version: int
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class LoadedModel:
    """A registered model version loaded for serving.

    Attributes:
        model: The fitted estimator (`ChurnModel` or `CLVModel`): `booster_`, `calibrator_`, ...
        name: Registered model name.
        version: Registered version number.
        alias: The alias it was loaded by.
        run_id: The training run.
        feature_set: Feature set name and version the model was trained on.
        tags: The run's tags.
        params: The run's params.
        metrics: The run's metrics.
    """

    model: Any
    name: str
    version: int
    alias: str
    run_id: str
    feature_set: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PromotionDecision:
    """What `promote` decided and why."""

    model_name: str
    promoted: bool
    forced: bool
    champion_before: int | None
    challenger: int | None
    reason: str
    comparison: dict[str, float] = field(default_factory=dict)


def resolve_tracking(
    tracking_uri: str | None = None, artifact_root: str | Path | None = None
) -> tuple[str, Path]:
    """The tracking URI and artifact root to use.

    The settings' values by default. When only a tracking URI is given and it differs from the
    settings' one, artifacts go next to it (`<directory of the SQLite file>/artifacts`) so that a
    second store never writes into the first store's artifact directory.

    Args:
        tracking_uri: E.g. `sqlite:////tmp/x/mlflow.db`; None for the settings' URI.
        artifact_root: Directory for new experiments' artifacts; None to derive it.

    Returns:
        (tracking URI, absolute artifact root).
    """
    settings = get_settings()
    uri = tracking_uri or settings.mlflow_tracking_uri
    if artifact_root is not None:
        root = Path(artifact_root)
    elif uri != settings.mlflow_tracking_uri and uri.startswith("sqlite:///"):
        root = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
    else:
        root = settings.mlflow_artifact_root
    return uri, root.resolve()


def _use(tracking_uri: str) -> MlflowClient:
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def ensure_experiment(client: MlflowClient, name: str, *, artifact_root: Path) -> str:
    """The id of experiment `name`, created with `artifact_root/<name>` if it does not exist.

    Args:
        client: A client on the tracking store.
        name: Experiment name.
        artifact_root: Root directory for the artifacts of new experiments.

    Returns:
        The experiment id.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = (artifact_root / name).resolve()
    location.mkdir(parents=True, exist_ok=True)
    return str(client.create_experiment(name, artifact_location=location.as_uri()))


def serving_input_example(X: pd.DataFrame, categorical: list[str], rows: int = 5) -> pd.DataFrame:
    """A few rows shaped like serving input; they also define the pyfunc's signature.

    Numpy numeric and bool columns keep their dtype, categorical ones included (the feature code
    produces the same dtypes at serving time, and MLflow refuses to cast int64 to double or bool
    to string); text and pandas category columns become plain strings; other extension columns
    (nullable numbers) become float64 with NaN.
    """
    head = X.head(rows)
    out: dict[str, object] = {}
    for column in head.columns:
        series = head[column]
        if isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
            out[column] = series
        elif column in categorical or series.dtype.kind in "OUT" or series.dtype == "string":
            out[column] = series.astype("string").astype(object).where(series.notna(), None)
        elif isinstance(series.dtype, np.dtype):
            out[column] = series
        else:
            out[column] = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return pd.DataFrame(out, index=head.index)


def log_training_run(
    *,
    kind: str,
    estimator: Any,
    input_example: pd.DataFrame,
    params: Mapping[str, object],
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
    artifact_dir: Path | None,
    model_name: str,
    experiment_name: str,
    tracking_uri: str | None = None,
    artifact_root: str | Path | None = None,
) -> RegisteredRun:
    """Log one training run, register its model and set aliases.

    Args:
        kind: "churn" or "clv" (what the pyfunc returns).
        estimator: The fitted estimator; pickled as a run artifact and inside the pyfunc.
        input_example: A few feature rows (see `serving_input_example`); also gives the signature.
        params: Run params (stringified by MLflow).
        tags: Run tags (feature set, data fingerprint, test cutoff, ...); also set on the version.
        metrics: Run metrics; NaN values are skipped.
        artifact_dir: Directory of plots, report and tables, logged under `evaluation/`.
        model_name: Registered model name.
        experiment_name: Experiment, created under the artifact root when missing.
        tracking_uri: Tracking and registry URI (settings when None).
        artifact_root: Artifact root for a new experiment (see `resolve_tracking`).

    Returns:
        The run and registered version, with the aliases it holds.
    """
    uri, root = resolve_tracking(tracking_uri, artifact_root)
    client = _use(uri)
    experiment_id = ensure_experiment(client, experiment_name, artifact_root=root)
    wrapper = EstimatorPyfunc(kind)
    wrapper.estimator = estimator
    output = wrapper.predict(None, input_example)
    signature = _optional_inputs(infer_signature(input_example, output))
    with tempfile.TemporaryDirectory() as tmp:
        pickled = Path(tmp) / "estimator.pkl"
        with open(pickled, "wb") as handle:
            pickle.dump(estimator, handle, protocol=pickle.HIGHEST_PROTOCOL)
        wrapper.estimator = None  # the pyfunc loads its own copy from the artifact
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
            mlflow.set_tags({**tags, KIND_TAG: kind})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
            if artifact_dir is not None:
                mlflow.log_artifacts(str(artifact_dir), artifact_path="evaluation")
            mlflow.log_artifact(str(pickled), artifact_path=Path(ESTIMATOR_ARTIFACT).parent.name)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=wrapper,
                artifacts={"estimator": str(pickled)},
                signature=signature,
                input_example=input_example,
                registered_model_name=model_name,
                pip_requirements=_requirements(),
            )
            run_id = run.info.run_id
    version = str(info.registered_model_version)
    for key, value in {**tags, KIND_TAG: kind}.items():
        client.set_model_version_tag(model_name, version, key, value)
    aliases = _assign_new_version(client, model_name, version)
    return RegisteredRun(
        run_id=run_id,
        experiment_id=experiment_id,
        model_name=model_name,
        version=int(version),
        aliases=aliases,
    )


def _optional_inputs(signature: ModelSignature) -> ModelSignature:
    """Mark every input column optional: five example rows cannot tell which may be missing."""
    if not isinstance(signature.inputs, Schema):
        return signature
    columns: list[ColSpec | TensorSpec] = [
        ColSpec(type=c.type, name=c.name, required=False)
        for c in signature.inputs.inputs
        if isinstance(c, ColSpec)
    ]
    return ModelSignature(inputs=Schema(columns), outputs=signature.outputs)


def _requirements() -> list[str]:
    import lightgbm
    import sklearn

    # Listed, not inferred: inference re-imports the model in a subprocess and takes seconds.
    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]


def _alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _assign_new_version(client: MlflowClient, name: str, version: str) -> tuple[str, ...]:
    client.set_registered_model_alias(name, CHALLENGER, version)
    if _alias_version(client, name, CHAMPION) is None:
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "promotion", "first version")
        return (CHALLENGER, CHAMPION)
    return (CHALLENGER,)


def _load_estimator(client: MlflowClient, run_id: str) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, ESTIMATOR_ARTIFACT, tmp)
        with open(path, "rb") as handle:
            return pickle.load(handle)  # our own artifact, from our own store


def load_champion(
    name: str, *, alias: str = CHAMPION, tracking_uri: str | None = None
) -> LoadedModel:
    """Load the estimator a registry alias points to, with its version and run metadata.

    Args:
        name: Registered model name ("churn-risk", "clv").
        alias: Alias to load ("champion" by default; "challenger" for shadow scoring).
        tracking_uri: Tracking and registry URI (settings when None).

    Returns:
        The loaded model and its metadata.

    Raises:
        LookupError: If the model or alias does not exist.
    """
    uri, _ = resolve_tracking(tracking_uri)
    client = _use(uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        raise LookupError(f"no {alias!r} version of model {name!r} in {uri}") from error
    if version.run_id is None:
        raise LookupError(f"{name} version {version.version} has no training run")
    run = client.get_run(version.run_id)
    return LoadedModel(
        model=_load_estimator(client, version.run_id),
        name=name,
        version=int(version.version),
        alias=alias,
        run_id=version.run_id,
        feature_set=run.data.tags.get("feature_set", ""),
        tags=dict(run.data.tags),
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def _holdout_metrics(
    estimator: Any, kind: str, holdout: pd.DataFrame, target: str
) -> dict[str, float]:
    X = holdout[list(estimator.feature_names_in_)]
    if kind == "churn":
        m = binary_metrics(holdout[target].astype(float), estimator.predict_proba(X)[:, 1])
        return {CHURN_AUC: m["roc_auc"], CHURN_ECE: m["ece"]}
    r = regression_metrics(holdout[target].astype(float), estimator.predict(X))
    return {CLV_MAE: r["mae"], CLV_RMSE: r["rmse"]}


def compare(
    kind: str,
    champion: Mapping[str, float],
    challenger: Mapping[str, float],
    *,
    auc_tolerance: float = 0.0,
    ece_tolerance: float = 0.01,
) -> tuple[bool, str]:
    """Whether a challenger is at least as good as the champion on the same holdout.

    Churn: challenger ROC-AUC >= champion ROC-AUC - `auc_tolerance`, **and** challenger ECE <=
    champion ECE + `ece_tolerance` (better ranking may not be bought with worse calibration).
    CLV: challenger MAE <= champion MAE **or** challenger RMSE <= champion RMSE.

    Args:
        kind: "churn" or "clv".
        champion: The champion's holdout metrics (keys as logged, e.g. "model.roc_auc").
        challenger: The challenger's, on the same holdout.
        auc_tolerance: Allowed ROC-AUC drop.
        ece_tolerance: Allowed ECE increase.

    Returns:
        (ok, one-line reason).
    """
    if kind == "next-offer":
        value_c, value_ch = challenger[POLICY_VALUE], champion[POLICY_VALUE]
        text = f"DR policy value {value_c:.3f} vs champion {value_ch:.3f} per decision"
        if value_c >= value_ch:
            return True, f"challenger at least as good: {text}"
        return False, f"challenger not promoted, lower policy value: {text}"
    if kind == "churn":
        auc_c, auc_ch = challenger[CHURN_AUC], champion[CHURN_AUC]
        ece_c, ece_ch = challenger[CHURN_ECE], champion[CHURN_ECE]
        auc_ok = auc_c >= auc_ch - auc_tolerance
        ece_ok = ece_c <= ece_ch + ece_tolerance
        text = (
            f"ROC-AUC {auc_c:.4f} vs champion {auc_ch:.4f}, ECE {ece_c:.4f} vs {ece_ch:.4f} "
            f"(tolerances: AUC {auc_tolerance}, ECE {ece_tolerance})"
        )
        if auc_ok and ece_ok:
            return True, f"challenger at least as good: {text}"
        worse = "ROC-AUC lower" if not auc_ok else "calibration worse"
        return False, f"challenger not promoted, {worse}: {text}"
    mae_c, mae_ch = challenger[CLV_MAE], champion[CLV_MAE]
    rmse_c, rmse_ch = challenger[CLV_RMSE], champion[CLV_RMSE]
    text = f"MAE {mae_c:.3f} vs champion {mae_ch:.3f}, RMSE {rmse_c:.3f} vs {rmse_ch:.3f}"
    if mae_c <= mae_ch or rmse_c <= rmse_ch:
        return True, f"challenger at least as good: {text}"
    return False, f"challenger not promoted, both MAE and RMSE higher: {text}"


def promote(
    model_name: str,
    *,
    force: bool = False,
    panel: pd.DataFrame | None = None,
    tracking_uri: str | None = None,
    auc_tolerance: float = 0.0,
    ece_tolerance: float = 0.01,
) -> PromotionDecision:
    """Move the `champion` alias to the `challenger` version if it is at least as good.

    Both versions are compared on metrics logged for the **same test cutoff** (tag `test_cutoff`).
    If their test cutoffs differ, both are re-evaluated on `panel`'s rows at the challenger's test
    cutoff (allowed only when that cutoff is later than the champion's, so the champion never saw
    it); without `panel` the promotion is refused with a message saying so. See `compare` for the
    criteria. `force=True` promotes regardless; the version and the challenger's run get the tags
    `promotion=forced` and `promotion.reason`.

    Args:
        model_name: Registered model name ("churn-risk" or "clv").
        force: Promote even if the challenger is worse or not comparable.
        panel: Training panel for re-evaluation when the holdouts differ.
        tracking_uri: Tracking and registry URI (settings when None).
        auc_tolerance: Churn: allowed ROC-AUC drop.
        ece_tolerance: Churn: allowed ECE increase.

    Returns:
        The decision; `promoted` is False when refused (nothing changed then).

    Raises:
        LookupError: If the model has no challenger or no champion.
    """
    uri, _ = resolve_tracking(tracking_uri)
    client = _use(uri)
    champion_v = _alias_version(client, model_name, CHAMPION)
    challenger_v = _alias_version(client, model_name, CHALLENGER)
    if challenger_v is None or champion_v is None:
        raise LookupError(
            f"model {model_name!r} needs both a {CHAMPION!r} and a {CHALLENGER!r} version in {uri}"
        )
    before = int(champion_v)
    if champion_v == challenger_v:
        return PromotionDecision(
            model_name, False, False, before, int(challenger_v), "challenger is already champion"
        )
    champion_mv = client.get_model_version(model_name, champion_v)
    challenger_mv = client.get_model_version(model_name, challenger_v)
    champion_run = client.get_run(str(champion_mv.run_id))
    challenger_run = client.get_run(str(challenger_mv.run_id))
    kind = challenger_run.data.tags.get(KIND_TAG, "churn")
    champion_cutoff = champion_run.data.tags.get("test_cutoff", "")
    challenger_cutoff = challenger_run.data.tags.get("test_cutoff", "")
    keys = {"churn": (CHURN_AUC, CHURN_ECE), "clv": (CLV_MAE, CLV_RMSE)}.get(kind, (POLICY_VALUE,))
    ok: bool
    reason: str
    comparison: dict[str, float] = {}
    if champion_cutoff == challenger_cutoff:
        champion_m = {k: champion_run.data.metrics.get(k, math.nan) for k in keys}
        challenger_m = {k: challenger_run.data.metrics.get(k, math.nan) for k in keys}
        ok, reason = compare(
            kind,
            champion_m,
            challenger_m,
            auc_tolerance=auc_tolerance,
            ece_tolerance=ece_tolerance,
        )
    elif panel is not None and kind != "next-offer" and challenger_cutoff > champion_cutoff:
        target = challenger_run.data.tags.get("target", "churned")
        cutoffs = pd.to_datetime(panel["cutoff"]).dt.date.astype(str)
        holdout = panel[(cutoffs == challenger_cutoff).to_numpy()]
        holdout = holdout[holdout[target].notna()]
        complete = {"churned": "label_complete", "clv_365": "clv_complete"}.get(target, "")
        if complete in holdout.columns:
            holdout = holdout[holdout[complete].astype(bool)]
        if holdout.empty:
            raise ValueError(f"the panel has no labelled rows at cutoff {challenger_cutoff}")
        champion_m = _holdout_metrics(
            _load_estimator(client, str(champion_mv.run_id)), kind, holdout, target
        )
        challenger_m = _holdout_metrics(
            _load_estimator(client, str(challenger_mv.run_id)), kind, holdout, target
        )
        ok, reason = compare(
            kind,
            champion_m,
            challenger_m,
            auc_tolerance=auc_tolerance,
            ece_tolerance=ece_tolerance,
        )
        reason = f"re-evaluated both on cutoff {challenger_cutoff}: {reason}"
    else:
        champion_m, challenger_m = {}, {}
        ok = False
        remedy = (
            "the challenger's holdout is not later than the champion's, so the champion may have "
            "trained on it; force to promote anyway"
            if panel is not None
            else "pass the panel to re-evaluate both on the challenger's holdout, or force"
        )
        reason = (
            f"not comparable: champion v{champion_v} was tested on {champion_cutoff or '?'}, "
            f"challenger v{challenger_v} on {challenger_cutoff or '?'}; {remedy}"
        )
    comparison = {
        **{f"champion.{k}": v for k, v in champion_m.items()},
        **{f"challenger.{k}": v for k, v in challenger_m.items()},
    }
    if not ok and not force:
        return PromotionDecision(
            model_name, False, False, before, int(challenger_v), reason, comparison
        )
    forced = not ok
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    client.set_registered_model_alias(model_name, CHAMPION, challenger_v)
    record = {
        "promotion": "forced" if forced else "passed",
        "promotion.reason": reason[:5000],
        "promotion.at": stamp,
        "promotion.previous_champion": champion_v,
    }
    for key, value in record.items():
        client.set_model_version_tag(model_name, challenger_v, key, value)
        client.set_tag(str(challenger_mv.run_id), key, value)
    return PromotionDecision(
        model_name, True, forced, before, int(challenger_v), reason, comparison
    )
