"""The warm model cache of the inference function.

Keeps the current version's scorer in memory and a copy of its SavedModel on local disk (Lambda's
/tmp), so a warm container never downloads a version twice. The registry's current pointer is
re-read at most every `current_check_interval_ms`; a new version is downloaded and loaded before
it replaces the old one, so requests never see a half-loaded model.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from typing import Any, Callable, Optional, Tuple

from ..config import Settings
from ..registry import ModelVersion, StateStore

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"


def download_saved_model(s3: Any, bucket: str, version: ModelVersion, cache_dir: str) -> str:
    """The version's SavedModel on local disk (downloaded once; a marker file says it is whole)."""
    target = os.path.join(cache_dir, version.version)
    if os.path.exists(os.path.join(target, COMPLETE_MARKER)):
        return target
    staging = target + ".partial-{}".format(os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    paginator = s3.get_paginator("list_objects_v2")
    found = 0
    for page in paginator.paginate(Bucket=bucket, Prefix=version.saved_model_prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(version.saved_model_prefix):]
            if not rel or rel.endswith("/"):
                continue
            path = os.path.join(staging, *rel.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, obj["Key"], path)
            found += 1
    if found == 0:
        raise FileNotFoundError("no SavedModel files under s3://{}/{}".format(bucket, version.saved_model_prefix))
    open(os.path.join(staging, COMPLETE_MARKER), "w").close()
    shutil.rmtree(target, ignore_errors=True)
    os.rename(staging, target)
    return target


class ModelCache:
    def __init__(self, settings: Settings, state: StateStore, s3: Any,
                 load: Callable[[str], Any], clock: Callable[[], float] = time.monotonic) -> None:
        self._settings = settings
        self._state = state
        self._s3 = s3
        self._load = load
        self._clock = clock
        self._loaded: Optional[Tuple[ModelVersion, Any]] = None
        self._retired: Optional[Any] = None
        self._last_check = float("-inf")
        self._lock = threading.Lock()

    def current(self) -> Optional[Tuple[ModelVersion, Any]]:
        """(version record, scorer) of the current version, or None when no model exists yet."""
        interval = self._settings.current_check_interval_ms / 1000.0
        if self._clock() - self._last_check >= interval:
            with self._lock:
                if self._clock() - self._last_check >= interval:
                    try:
                        self._refresh()
                    except Exception:
                        if self._loaded is None:
                            raise
                        # Keep serving the version we have; the next check tries again.
                        logger.exception("could not switch to the new current version")
                    finally:
                        self._last_check = self._clock()
        return self._loaded

    def _refresh(self) -> None:
        current = self._state.get_current()
        if current is None or (self._loaded is not None and self._loaded[0].version == current.version):
            return
        started = time.monotonic()
        path = download_saved_model(self._s3, self._settings.data_bucket, current, self._settings.model_cache_dir)
        scorer = self._load(path)
        previous = self._loaded
        self._loaded = (current, scorer)
        # The scorer replaced just now may still serve a request that fetched it a moment ago:
        # close only the one before it.
        if self._retired is not None and hasattr(self._retired, "close"):
            self._retired.close()
        self._retired = previous[1] if previous else None
        logger.info("serving model version %s (loaded in %.3f s)", current.version, time.monotonic() - started)
