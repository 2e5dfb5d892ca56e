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

    def version(self, version_id: str) -> LoadedModel:
        """A version an experiment's arm serves: the current one, one kept loaded beside it, or (on a cold
        container, or a version just named) loaded now, on the request path, and kept."""
        loaded = self.current()
        if loaded is not None and loaded.version.version == version_id:
            return loaded
        found = self._extra.get(version_id)
        if found is not None:
            return found
        loader = self._loader
        if version_id in self._wanted and loader is not None and loader.is_alive():
            loader.join(60.0)  # being loaded in the background already: once is enough
            found = self._extra.get(version_id)
            if found is not None:
                return found
        with self._extra_lock:
            found = self._extra.get(version_id) or self._load_version(version_id)
            self._extra[version_id] = found
        return found

    def keep_loaded(self, version_ids: Set[str]) -> None:
        """Keep these versions loaded beside the current one: the missing ones load in the background (so
        that an arm never waits for a load), the ones no longer wanted are released."""
        if version_ids == self._wanted and all(v in self._extra for v in version_ids):
            return
        self._wanted = set(version_ids)
        with self._extra_lock:
            for dropped in set(self._extra) - self._wanted:
                del self._extra[dropped]
            if self._loader is not None and self._loader.is_alive():
                return
            if not self._background:
                self._load_wanted()
                return
            self._loader = threading.Thread(target=self._load_wanted, name="arm-versions", daemon=True)
            self._loader.start()

    def _load_wanted(self) -> None:
        for version_id in sorted(self._wanted - set(self._extra)):
            try:
                loaded = self._load_version(version_id)
            except Exception:  # noqa: BLE001 - the arm loads on its first request instead
                logger.exception("could not load version %s for an experiment's arm", version_id)
                continue
            if version_id in self._wanted:
                self._extra[version_id] = loaded

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
                           | set(self._wanted))

    def _keep_on_disk(self, versions: Set[str]) -> None:
        """Only the served version and the one before stay in MODEL_CACHE_DIR (Lambda's /tmp holds 512 MB
        and a continuous trainer publishes a version every few seconds). Requests still scoring with an
        older one keep its session, which was loaded from disk already."""
        removed = remove_versions_except(self._settings.model_cache_dir, versions)
        if removed:
            logger.info("removed %d older versions from the model cache", removed)

