"""Serving under experiments: which model an arm scores with, and the impression each answer leaves.

Arms that serve a model version other than the current one (`version`, `lineage`, `new_lineage` once
its training has published it) are kept loaded
beside it by the model cache (ModelCache.keep_loaded), re-resolved whenever the running experiments
are re-read, so that an arm's request never waits for a load. `popularity` and `trending` rank by
the current version's catalog.
"""
from __future__ import annotations

import logging
import time
from typing import Dict, Optional, Set, Tuple

from easyrec_online.experiments.control import lineage_version
from easyrec_online.experiments.definition import Arm, Experiment, Impression
from easyrec_online.experiments.router import RunningExperiments
from easyrec_online.experiments.store import ExperimentLog
from easyrec_online.serving.cache import LoadedModel, ModelCache
from easyrec_online.state.registry import StateStore

logger = logging.getLogger(__name__)


class ArmServing:
    def __init__(self, experiments: RunningExperiments, models: ModelCache, state: StateStore, log: ExperimentLog,
                 refresh_s: float) -> None:
        self._experiments = experiments
        self._models = models
        self._state = state
        self._log = log
        self._refresh_s = refresh_s
        self._lineages: Dict[str, str] = {}  # lineage -> its newest servable version
        self._serving: Dict[str, str] = {}  # lineage -> the version its arms serve (loaded)
        self._resolved_at = float("-inf")

    def assign(self, user_id: object) -> Optional[Tuple[Experiment, Arm]]:
        found = self._experiments.assign(user_id)
        self._resolve()
        return found

    def _resolve(self) -> None:
        """Which versions the running arms serve (lineages move on with their updates); kept loaded."""
        if time.monotonic() - self._resolved_at < self._refresh_s:
            return
        self._resolved_at = time.monotonic()
        wanted: Set[str] = set()
        lineages: Dict[str, str] = {}
        try:
            for experiment in self._experiments.running():
                for arm in experiment.arms:
                    if arm.type == "version":
                        wanted.add(arm.strategy["version"])
                    elif arm.type == "new_lineage":  # once its training has published it
                        trained = self._state.get_version(arm.strategy["version"])
                        if trained is not None and trained.status == "ready":
                            wanted.add(trained.version)
                    elif arm.type == "lineage":
                        version = lineage_version(self._state, arm.strategy["lineage"])
                        if version is not None:
                            lineages[arm.strategy["lineage"]] = version.version
                            wanted.add(version.version)
        except Exception:  # noqa: BLE001 - keep what is resolved; retried at the next refresh
            logger.exception("could not resolve the experiments' arm versions")
            return
        self._lineages = lineages
        self._models.keep_loaded(wanted)

    def model(self, arm: Arm) -> Tuple[bool, Optional[LoadedModel]]:
        """(servable, the version this arm scores with: None for catalog strategies, which rank by the
        current catalog). Not servable while its version is still loading, or when it cannot be found:
        the request is then served as if outside the experiment (and not counted in it)."""
        try:
            if arm.type in ("version", "new_lineage"):
                found = self._models.version(arm.strategy["version"])
                return found is not None, found
            if arm.type == "lineage":
                lineage = arm.strategy["lineage"]
                for version in (self._lineages.get(lineage), self._serving.get(lineage)):
                    found = self._models.version(version) if version else None
                    if found is not None:
                        self._serving[lineage] = version  # its next version serves once it is loaded
                        return True, found
                return False, None
            if arm.type == "current":
                found = self._models.current()
                return found is not None, found
            return True, None
        except Exception:  # noqa: BLE001 - an arm that cannot serve leaves the request to the default
            logger.exception("experiment arm %s cannot serve", arm.name)
            return False, None

    def record(self, impression: Impression) -> bool:
        """Log what was served (keyed by its recommendation id). False when it could not be: the answer is
        served anyway, and the experiment misses this impression and what follows from it."""
        try:
            self._log.record_impression(impression)
            return True
        except Exception:  # noqa: BLE001 - serving never fails because of an experiment's bookkeeping
            logger.exception("could not record impression %s", impression.recommendation_id)
            return False
