"""The serving model: load, verify and warm a store version; the holder that swaps it on reload."""

import gc
import inspect
import json
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

from classifier.errors import ComplaintInputError
from classifier.routing import routes, unusable_place
from classifier.store import ModelStore
from service.settings import ServiceSettings
from service.worker_versions import WorkerVersions

log = logging.getLogger("hotline.serve")

# -- the loaded model -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """One verified, warmed-up model version and what the service derives from it; never mutated."""

    version: str
    model: Any
    manifest: dict[str, Any]
    thresholds: dict[str, float]
    max_text_length: int
    loaded_at: float = field(default_factory=time.time)
    default_place: str | None = None  # HOTLINE_DEFAULT_PLACE, checked against this model's directory
    # the model's predict_details counts each text's unseen tokens (``coverage``): a model or wrapper written
    # before that is served as before, without the drift signal
    counts_tokens: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "counts_tokens", _accepts(self.model.predict_details, "coverage"))


def load_model(settings: ServiceSettings, store: ModelStore | None = None, version: str | None = None) -> LoadedModel:
    """Verify, unpickle and warm up a version (default: the store's current one); check it against the
    settings."""
    store = store or ModelStore(settings.model_store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stored = store.load(version, strict=settings.strict_versions)
    for w in caught:
        log.warning(json.dumps({"event": "model_warning", "version": stored.version, "message": str(w.message)},
                               ensure_ascii=False))
    model = stored.model
    targets = list(model.targets_)
    unknown = sorted(set(settings.thresholds) - set(targets))
    if unknown:
        raise ComplaintInputError(
            f"HOTLINE_THRESHOLDS names targets {unknown} that model version {stored.version!r} does not predict "
            f"(it predicts {targets}); fix the setting or the model"
        )
    default_place = (settings.default_place or "").strip() or None
    if default_place is not None:
        _check_default_place(default_place, model, stored.version)
    model.warm_up()
    return LoadedModel(
        version=stored.version,
        model=model,
        manifest=stored.manifest,
        thresholds={t: settings.thresholds.get(t, settings.default_threshold) for t in targets},
        max_text_length=min(settings.max_text_length, int(model.max_text_length)),
        default_place=default_place,
    )


def _accepts(function: Any, name: str) -> bool:
    """``function`` takes the keyword argument ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def routing_info(model: Any) -> dict[str, Any] | None:
    """What ``GET /model`` says about a routing model's directory and decisions (None without routing)."""
    summary = getattr(model, "routing_summary_", None)
    if not routes(model) or not isinstance(summary, dict):
        return None
    keys = ("agencies", "places", "functions", "sha256", "category_function_pairs", "county_calibration")
    return {k: summary[k] for k in keys if k in summary}


def _check_default_place(place: str, model: Any, version: str) -> None:
    """HOTLINE_DEFAULT_PLACE needs a routing model whose directory knows the place (a county, town or city)."""
    if not routes(model):
        raise ComplaintInputError(f"HOTLINE_DEFAULT_PLACE={place!r} needs a routing model; model version "
                                  f"{version!r} has no routing directory; unset it or serve a routing model")
    if unusable_place(model, place):
        raise ComplaintInputError(f"HOTLINE_DEFAULT_PLACE={place!r} names no county, town or city of model version "
                                  f"{version!r}'s routing directory")


def freeze_heap(refreeze: bool = False) -> None:
    """Move every live object out of the garbage collector's reach (``gc.freeze``).

    A loaded model is ~170,000 tracked objects: a full collection walks them all (about 70 ms, a latency spike
    in whichever request is running) and, in forked workers, writes to their pages, which undoes the
    copy-on-write sharing.  Frozen, they are skipped; reference counting still frees them when unused.
    """
    if refreeze:
        gc.unfreeze()  # let the previous model's cycles be collected once
    gc.collect()
    gc.freeze()


class ModelHolder:
    """The reference to the serving model; reloads are serialized, reads are a single attribute load.

    With several workers (``versions``), every swap is reported to the shared record of worker versions."""

    def __init__(self, settings: ServiceSettings, loaded: LoadedModel | None = None,
                 versions: WorkerVersions | None = None) -> None:
        self.settings = settings
        self.current: LoadedModel | None = loaded
        self.versions = versions
        self._reload_lock = threading.RLock()

    def set_current(self, loaded: LoadedModel) -> None:
        self.current = loaded
        if self.versions is not None:
            self.versions.report(loaded.version)

    def reload(self, version: str | None = None) -> tuple[LoadedModel | None, LoadedModel]:
        """Load a version (default: the store's current one) and swap it in; on any failure the old model keeps
        serving."""
        with self._reload_lock:
            previous = self.current
            new = load_model(self.settings, version=version)
            self.set_current(new)
            if gc.get_freeze_count():  # serve() froze the first model: do the same for this one
                freeze_heap(refreeze=True)
            return previous, new

    def reload_if_changed(self) -> LoadedModel | None:
        """The SIGHUP path: reload only when the store's current version differs from the serving one; the new
        model, or None (unchanged, or the load failed: logged, the old model keeps serving)."""
        try:
            current = ModelStore(self.settings.model_store).current()
            if self.current is not None and current == self.current.version:
                return None
            previous, new = self.reload()
        except Exception as exc:  # keep serving the old model; say why
            log.error(json.dumps({"event": "model_reload_failed", "trigger": "signal", "pid": os.getpid(),
                                  "error": f"{type(exc).__name__}: {exc}"}, ensure_ascii=False))
            return None
        log.info(json.dumps({"event": "model_reloaded", "trigger": "signal", "pid": os.getpid(),
                             "previous_version": previous.version if previous else None, "version": new.version}))
        return new

    def follow_target(self) -> None:
        """With several workers: switch to the version the service switched to (``versions.target()``), when
        this worker serves another one (a sibling's reload, or a worker forked before the switch)."""
        with self._reload_lock:  # two signals in a row load the target once
            target = self.versions.target() if self.versions is not None else None
            if target is None or (self.current is not None and self.current.version == target):
                return
            try:
                previous, new = self.reload(version=target)
            except Exception as exc:  # keep serving; /ready and the reload's answer show this worker's version
                log.error(json.dumps({"event": "model_reload_failed", "trigger": "sibling", "pid": os.getpid(),
                                      "version": target, "error": f"{type(exc).__name__}: {exc}"},
                                     ensure_ascii=False))
                return
        log.info(json.dumps({"event": "model_reloaded", "trigger": "sibling", "pid": os.getpid(),
                             "previous_version": previous.version if previous else None, "version": new.version}))

