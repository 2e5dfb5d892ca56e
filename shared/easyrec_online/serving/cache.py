"""The warm model cache of the inference function.

Keeps the current version's scorer in memory and a copy of its SavedModel on local disk (Lambda's
/tmp), so a warm container never downloads a version twice. The registry's current pointer is
re-read at most every `current_check_interval_ms`, in the background; a new version is downloaded
and loaded before it replaces the old one, so requests never see a half-loaded model and never
wait for one.
"""
from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Set

from easyrec_online.artifacts.catalog import Catalog
from easyrec_online.artifacts.download import download_saved_model, load_catalog, remove_versions_except
from easyrec_online.core.config import Settings
from easyrec_online.state.registry import ModelVersion, StateStore

logger = logging.getLogger(__name__)


class LoadedModel(NamedTuple):
    version: ModelVersion
    scorer: Any
    catalog: Catalog


class ModelCache:
    """The version being served, swapped in the background without failing or stalling a request.

    `current()` never waits for a download or a load once a version is loaded: when the check
    interval has passed it starts a background check of the registry's pointer and returns the
    loaded version at once. The check downloads and loads a new current version completely, then
    replaces the served one with a single reference assignment. Requests that already took the old
    one finish with it; its TensorFlow session is released when the last of them drops it.
    Only a cold container (nothing loaded yet) loads on the request path.
    """

    def __init__(self, settings: Settings, state: StateStore, s3: Any,
                 load: Callable[[str], Any], clock: Callable[[], float] = time.monotonic,
                 background: bool = True) -> None:
        self._settings = settings
        self._state = state
        self._s3 = s3
        self._load = load
        self._clock = clock
        self._background = background
        self._loaded: Optional[LoadedModel] = None
        self._last_check = float("-inf")
        self._lock = threading.Lock()  # one check at a time
        self._checker: Optional[threading.Thread] = None
        self.swaps = 0
        self.last_load_s: Optional[float] = None
        # Versions experiments' arms serve beside the current one (version id -> loaded), and the ids
        # they want kept; loaded in the background by keep_loaded.
        self._extra: Dict[str, LoadedModel] = {}
        self._wanted: Set[str] = set()
        self._extra_lock = threading.Lock()
        self._loader: Optional[threading.Thread] = None

    def current(self) -> Optional[LoadedModel]:
        """The current version (record, scorer, catalog), or None when no model exists yet."""
        loaded = self._loaded
        if self._clock() - self._last_check < self._settings.current_check_interval_ms / 1000.0:
            return loaded
        if loaded is None or not self._background:
            self._check(raise_if_cold=True)
            return self._loaded
        with self._lock:
            if self._checker is None or not self._checker.is_alive():
                self._last_check = self._clock()
                self._checker = threading.Thread(target=self._check, name="model-swap", daemon=True)
                self._checker.start()
        return loaded

    def version(self, version_id: str) -> Optional[LoadedModel]:
        """A version an experiment's arm serves, if it is loaded (the current one, or one kept beside it);
        None otherwise: it is being loaded in the background (keep_loaded), and the request is served
        by the current version meanwhile. Never loads or waits on the request path."""
        loaded = self.current()
        if loaded is not None and loaded.version.version == version_id:
            return loaded
        return self._extra.get(version_id)

    def keep_loaded(self, version_ids: Set[str]) -> None:
        """Keep these versions loaded beside the current one. Missing ones load in the background, one
        after another; the ones no longer wanted are released only once every wanted one is loaded, so
        that an arm following a lineage serves its previous version until the next one is ready."""
        with self._extra_lock:
            self._wanted = set(version_ids)
            if not (self._wanted - set(self._extra)) and not (set(self._extra) - self._wanted):
                return
            if self._loader is not None and self._loader.is_alive():
                return  # it loads whatever is wanted when it gets there
            if not self._background:
                self._load_wanted()
                return
            self._loader = threading.Thread(target=self._load_wanted, name="arm-versions", daemon=True)
            self._loader.start()

    def _load_wanted(self) -> None:
        failed: Set[str] = set()
        while True:
            missing = sorted(self._wanted - set(self._extra) - failed)
            if not missing:
                break
            try:
                self._extra[missing[0]] = self._load_version(missing[0])
            except Exception:  # noqa: BLE001 - tried again at the next keep_loaded; the arm serves the default
                logger.exception("could not load version %s for an experiment's arm", missing[0])
                failed.add(missing[0])
        for dropped in set(self._extra) - self._wanted:
            del self._extra[dropped]
        loaded = self._loaded
        self._keep_on_disk(set(self._extra) | ({loaded.version.version} if loaded is not None else set()))

    def _load_version(self, version_id: str) -> LoadedModel:
        record = self._state.get_version(version_id)
        if record is None:
            raise KeyError("no model version {}".format(version_id))
        cache_dir = self._settings.model_cache_dir
        path = download_saved_model(self._s3, self._settings.data_bucket, record, cache_dir)
        catalog = load_catalog(self._s3, self._settings.data_bucket, record, cache_dir)
        logger.info("loaded version %s for an experiment's arm", version_id)
        return LoadedModel(record, self._load(path), catalog)

    def wait_for_check(self, timeout: float = 60.0) -> None:
        """Tests and benchmarks: wait until a background check has finished."""
        checker = self._checker
        if checker is not None:
            checker.join(timeout)

    def _check(self, raise_if_cold: bool = False) -> None:
        # The request path (cold, or checks in the foreground) serialises on the lock; the background
        # checker needs none: current() starts at most one at a time.
        with self._lock if raise_if_cold else contextlib.nullcontext():
            try:
                self._refresh()
            except Exception:
                if self._loaded is None and raise_if_cold:
                    raise
                # Keep serving the version we have; the next check tries again.
                logger.exception("could not switch to the new current version")
            finally:
                self._last_check = self._clock()

    def _refresh(self) -> None:
        # The pointer alone while it names the served version: a version's record does not change once
        # published, and reading it on every check doubled the checks' reads.
        pointer = self._state.pointer()
        loaded = self._loaded
        if pointer is None or (loaded is not None and loaded.version.version == pointer["version"]):
            return
        current = self._state.get_version(pointer["version"])
        if current is None:
            return
        started = time.monotonic()
        cache_dir = self._settings.model_cache_dir
        path = download_saved_model(self._s3, self._settings.data_bucket, current, cache_dir)
        catalog = load_catalog(self._s3, self._settings.data_bucket, current, cache_dir)
        scorer = self._load(path)
        self._loaded = LoadedModel(current, scorer, catalog)  # the swap: one reference assignment
        self.swaps += 1
        self.last_load_s = time.monotonic() - started
        logger.info("serving model version %s (loaded in %.3f s)", current.version, self.last_load_s)
        self._keep_on_disk({current.version, loaded.version.version if loaded is not None else current.version}
                           | set(self._wanted) | set(self._extra))

    def _keep_on_disk(self, versions: Set[str]) -> None:
        """Only the served version and the one before stay in MODEL_CACHE_DIR (Lambda's /tmp holds 512 MB
        and a continuous trainer publishes a version every few seconds). Requests still scoring with an
        older one keep its session, which was loaded from disk already."""
        removed = remove_versions_except(self._settings.model_cache_dir, versions)
        if removed:
            logger.info("removed %d older versions from the model cache", removed)

