"""The models the service scores with, loaded by registry alias and swapped atomically.

A `ModelSet` is immutable: the churn, CLV and next-offer models of one load, with their versions.
`ModelHolder.current` is a single reference to the set in use; a reload builds a complete new set
off to the side and then replaces that reference in one assignment. A request reads `current`
once and scores with that set to the end, so a reload never fails or mixes versions in a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from features.definitions import CHURN_FEATURES
from training.registry import LoadedModel, load_champion

log = logging.getLogger("retain.serving.models")

CHURN: Final = "churn-risk"
CLV: Final = "clv"
NEXT_OFFER: Final = "next-offer"
MODEL_NAMES: Final = (CHURN, CLV, NEXT_OFFER)

Loader = Callable[[str, str], LoadedModel]
VersionProbe = Callable[[str, str], str | None]


@dataclass(frozen=True)
class ModelSet:
    """The models of one load; `None` where a model could not be loaded (`errors` says why)."""

    generation: int
    alias: str
    loaded: Mapping[str, LoadedModel]
    errors: Mapping[str, str] = field(default_factory=dict)
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def get(self, name: str) -> LoadedModel | None:
        return self.loaded.get(name)

    @property
    def churn(self) -> LoadedModel | None:
        return self.loaded.get(CHURN)

    @property
    def clv(self) -> LoadedModel | None:
        return self.loaded.get(CLV)

    @property
    def next_offer(self) -> LoadedModel | None:
        return self.loaded.get(NEXT_OFFER)

    def versions(self) -> dict[str, str | None]:
        """Model name -> loaded version (None when missing), for every model the service uses."""
        return {
            name: str(self.loaded[name].version) if name in self.loaded else None
            for name in MODEL_NAMES
        }


def _single_threaded(obj: Any, depth: int = 0, seen: set[int] | None = None) -> None:
    """Make every scikit-learn LightGBM model inside `obj` predict on one thread.

    Serving runs one request per worker thread; LightGBM's default of all cores per call makes
    concurrent requests fight over the cores. Boosters are called with `num_threads=1` directly.
    """
    import lightgbm as lgb

    seen = set() if seen is None else seen
    if depth > 4 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, lgb.LGBMModel):
        obj.set_params(n_jobs=1)
        return
    if isinstance(obj, Mapping):
        children: list[Any] = list(obj.values())
    elif isinstance(obj, list | tuple):
        children = list(obj)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("training."):
        children = list(vars(obj).values())
    else:
        return
    for child in children:
        _single_threaded(child, depth + 1, seen)


def check_model(loaded: LoadedModel) -> None:
    """Refuse a model trained on another feature set than the one the service computes."""
    if loaded.feature_set and loaded.feature_set != CHURN_FEATURES.id:
        raise ValueError(
            f"{loaded.name} v{loaded.version} was trained on feature set {loaded.feature_set!r}; "
            f"the service computes {CHURN_FEATURES.id!r}"
        )
    names = getattr(loaded.model, "feature_names_in_", None)
    if names is None:
        names = getattr(loaded.model, "feature_names_", None)
    if names is None:
        raise ValueError(f"{loaded.name} v{loaded.version} does not name its features")


def _require_store(tracking_uri: str) -> None:
    # MLflow would create an empty tracking database (slowly) where none exists; a service
    # started before any training should say "no model" instead.
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise LookupError(f"no MLflow tracking store at {path}: train the models first")


def registry_loader(tracking_uri: str) -> Loader:
    def load(name: str, alias: str) -> LoadedModel:
        _require_store(tracking_uri)
        return load_champion(name, alias=alias, tracking_uri=tracking_uri)

    return load


def registry_probe(tracking_uri: str) -> VersionProbe:
    """The version an alias points to now, without downloading anything."""

    def probe(name: str, alias: str) -> str | None:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        try:
            _require_store(tracking_uri)
        except LookupError:
            return None
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            return str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    return probe


class ReloadSignal:
    """Tells every worker process of the service to reload: a token in a file they all watch.

    `POST /v1/admin/reload` reaches one worker; it reloads, then `send`s, and the others, which
    `watch` the file (one stat a second), reload within about a second.
    """

    def __init__(self, path: Path, *, interval_seconds: float = 1.0) -> None:
        self.path = path
        self.interval_seconds = interval_seconds
        self._seen = self._read()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def _read(self) -> str | None:
        try:
            return self.path.read_text()
        except OSError:
            return None

    def send(self) -> None:
        import uuid

        token = uuid.uuid4().hex
        self._seen = token
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{token}")
        temporary.write_text(token)
        temporary.replace(self.path)

    def watch(self, reload: Callable[[], object]) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval_seconds):
                token = self._read()
                if token is not None and token != self._seen:
                    self._seen = token
                    try:
                        reload()
                    except Exception:
                        log.exception("reload on signal failed")

        self._watcher = threading.Thread(target=run, name="retain-reload-signal", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None


class ModelHolder:
    """Holds the current `ModelSet`; `reload` swaps in a new one, `poll` reloads on alias moves.

    Args:
        loader: (name, alias) -> LoadedModel, raising LookupError when there is none.
        alias: The registry alias to load ("champion").
        probe: (name, alias) -> version the alias points to, for polling.
        prepare: Called with a new set before it becomes current (e.g. to precompute caches),
            so that the first requests after a swap do not pay for it.
        on_swap: Called with the new set right after it became current.
    """

    def __init__(
        self,
        loader: Loader,
        *,
        alias: str = "champion",
        probe: VersionProbe | None = None,
        prepare: Callable[[ModelSet], None] | None = None,
        on_swap: Callable[[ModelSet], None] | None = None,
    ) -> None:
        self._loader = loader
        self._probe = probe
        self.alias = alias
        self.prepare = prepare
        self.on_swap = on_swap
        self._current = ModelSet(generation=0, alias=alias, loaded={}, errors={})
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def current(self) -> ModelSet:
        return self._current

    def reload(self) -> ModelSet:
        """Load every model by alias and make the new set current (one reference assignment).

        A model that fails to load keeps the version it had (none at the first load), and its
        error is kept on the set: a registry outage or a broken artifact never takes a serving
        model away. Concurrent reloads run one after the other.
        """
        with self._reload_lock:
            loaded: dict[str, LoadedModel] = {}
            errors: dict[str, str] = {}
            for name in MODEL_NAMES:
                try:
                    model = self._loader(name, self.alias)
                    check_model(model)
                    _single_threaded(model.model)
                    loaded[name] = model
                except Exception as exc:
                    if not isinstance(exc, LookupError):
                        log.exception("loading %s@%s failed", name, self.alias)
                    errors[name] = str(exc) if isinstance(exc, LookupError) else repr(exc)
                    previous = self._current.loaded.get(name)
                    if previous is not None:
                        loaded[name] = previous
            new = ModelSet(
                generation=self._current.generation + 1,
                alias=self.alias,
                loaded=loaded,
                errors=errors,
            )
            if self.prepare is not None:
                self.prepare(new)
            self._current = new
            if self.on_swap is not None:
                self.on_swap(new)
            log.info("models loaded: %s", new.versions())
            return new

    def changed(self) -> bool:
        """Whether some alias now points to another version than the one loaded."""
        if self._probe is None:
            return False
        current = self._current.versions()
        return any(self._probe(name, self.alias) != current[name] for name in MODEL_NAMES)

    def start_polling(self, interval_seconds: float) -> None:
        if interval_seconds <= 0 or self._poller is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    if self.changed():
                        self.reload()
                except Exception:
                    log.exception("model poll failed; will retry")

        self._poller = threading.Thread(target=run, name="retain-model-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None
