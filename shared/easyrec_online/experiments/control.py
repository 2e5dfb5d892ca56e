"""The admin routes' logic: POST /experiments, GET /experiments, GET /experiments/{id},
POST /experiments/{id}/stop, POST /experiments/{id}/conclude."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from easyrec_online.core.config import MODEL_NAMES, Settings
from easyrec_online.core.http import ApiError
from easyrec_online.experiments.assignment import free_range
from easyrec_online.experiments.definition import LAYER_BUCKETS, ConcludeIn, Experiment, ExperimentIn
from easyrec_online.experiments.results import results
from easyrec_online.experiments.store import ExperimentDefinitions, ExperimentLog, LayerFull
from easyrec_online.ingest.actions import isoformat_utc, utc_now
from easyrec_online.state.registry import ModelVersion, StateStore, new_id


def lineage_version(state: StateStore, lineage: str) -> Optional[ModelVersion]:
    """A lineage's newest version that passed the gate (what a "lineage" arm serves)."""
    for version in state.list_versions(limit=200):  # newest first
        if version.lineage == lineage and version.status == "ready":
            return version
    return None


def loaded_versions(experiments: List[Experiment]) -> List[str]:
    """What running experiments' arms keep loaded beside the current version: their pinned versions and
    followed lineages (one each)."""
    out = []
    for experiment in experiments:
        if experiment.running:
            for arm in experiment.arms:
                if arm.type == "version":
                    out.append("version:" + arm.strategy["version"])
                elif arm.type == "lineage":
                    out.append("lineage:" + arm.strategy["lineage"])
                elif arm.type == "new_lineage":
                    out.append("version:" + arm.strategy.get("version", arm.name))
    return sorted(set(out))


class ExperimentService:
    def __init__(self, settings: Settings, state: StateStore, definitions: ExperimentDefinitions,
                 log: ExperimentLog) -> None:
        self._settings = settings
        self._state = state
        self._definitions = definitions
        self._log = log

    def _check_strategies(self, spec: ExperimentIn) -> None:
        for index, arm in enumerate(spec.arms):
            strategy = arm.strategy_dict()
            where = ["arms", str(index), "strategy"]
            if strategy["type"] == "version":
                version = self._state.get_version(strategy["version"])
                if version is None:
                    raise ApiError(400, "unknown_version", "arm {!r}: no model version {}".format(
                        arm.name, strategy["version"]), where)
                if version.status != "ready":
                    raise ApiError(409, "version_not_servable", "arm {!r}: version {} is {} and cannot serve".format(
                        arm.name, version.version, version.status), where)
            elif strategy["type"] == "lineage" and lineage_version(self._state, strategy["lineage"]) is None:
                raise ApiError(400, "unknown_lineage", "arm {!r}: lineage {} has no servable version".format(
                    arm.name, strategy["lineage"]), where)
            elif strategy["type"] == "new_lineage":
                if strategy["model_name"] not in MODEL_NAMES:
                    raise ApiError(400, "unknown_model", "arm {!r}: no model {!r}; one of {}".format(
                        arm.name, strategy["model_name"], ", ".join(MODEL_NAMES)), where + ["model_name"])
                try:
                    Settings.from_env(strategy["environment"])
                except ValueError as exc:
                    raise ApiError(400, "bad_setting", "arm {!r}: {}".format(arm.name, exc), where + ["settings"])

    def create(self, spec: ExperimentIn) -> Dict[str, Any]:
        self._check_strategies(spec)
        running = [e for e in self._definitions.list() if e.running]
        limit = self._settings.experiment_max_loaded_versions
        new_arms = loaded_versions(running + [Experiment.new(spec, [0, 1])])
        if len(new_arms) > limit:
            raise ApiError(409, "too_many_arms",
                           "running experiments would keep {} model versions loaded beside the current one, more "
                           "than EXPERIMENT_MAX_LOADED_VERSIONS ({}): stop an experiment first".format(
                               len(new_arms), limit), ["arms"])
        size = max(1, int(round(spec.traffic * LAYER_BUCKETS / 100.0)))

        def build(ranges: Dict[str, List[int]]) -> Experiment:
            found = free_range(list(ranges.values()), size)
            if found is None:
                raise LayerFull()
            experiment = Experiment.new(spec, found)
            for arm in experiment.arms:
                if arm.type == "new_lineage":  # the version its training will publish (modeling/continuous.py)
                    arm.strategy["version"] = new_id("v")
            return experiment

        try:
            experiment = self._definitions.create(spec.layer, build)
        except LayerFull:
            raise ApiError(409, "layer_full",
                           "layer {!r}: running experiments leave less than {} % of its users free; stop one, lower "
                           "traffic, or use another layer".format(spec.layer, spec.traffic), ["layer", "traffic"])
        return self._describe(experiment, with_results=False)

    def list(self) -> Dict[str, Any]:
        experiments = sorted(self._definitions.list(), key=lambda e: e.created_at, reverse=True)
        return {"experiments": [self._describe(e, with_results=False) for e in experiments]}

    def _get(self, experiment_id: str) -> Experiment:
        experiment = self._definitions.get(experiment_id)
        if experiment is None:
            raise ApiError(404, "unknown_experiment", "no experiment {}".format(experiment_id))
        return experiment

    def get(self, experiment_id: str) -> Dict[str, Any]:
        return self._describe(self._get(experiment_id), with_results=True)

    def stop(self, experiment_id: str) -> Dict[str, Any]:
        self._get(experiment_id)

        def change(experiment: Experiment) -> Experiment:
            if experiment.running:
                experiment.status, experiment.stopped_at = "stopped", isoformat_utc(utc_now())
            return experiment

        return self._describe(self._definitions.update(experiment_id, change), with_results=True)

    def conclude(self, experiment_id: str, request: ConcludeIn) -> Dict[str, Any]:
        experiment = self._get(experiment_id)
        found = results(experiment, *self._log.read(experiment_id))
        winner = found["winner"]
        version = self._version_to_apply(experiment, found) if request.apply else None
        now = isoformat_utc(utc_now())

        def change(current: Experiment) -> Experiment:
            if current.status == "concluded":  # checked in the atomic write: two concludes cannot both apply
                raise ApiError(409, "already_concluded", "experiment {} was concluded at {}".format(
                    experiment_id, (current.concluded or {}).get("at")))
            current.status = "concluded"
            current.stopped_at = current.stopped_at or now
            current.concluded = {"at": now, "winner": winner, "applied_version": None, "results": {
                k: found[k] for k in ("arms", "comparisons")}}
            return current

        concluded = self._definitions.update(experiment_id, change)
        if version is not None and winner is not None:
            pinned = experiment.arm(winner).type != "current"  # the current one keeps following its updates
            try:
                self._state.set_current(version, pinned=True if pinned else None, reason=(
                    "experiment {} concluded: arm {!r} won".format(experiment_id, winner)))
            except (KeyError, ValueError) as exc:
                raise ApiError(409, "version_not_servable", "concluded, but {}".format(exc))

            def applied(current: Experiment) -> Experiment:
                current.concluded = dict(current.concluded or {}, applied_version=version, pinned=pinned)
                return current

            concluded = self._definitions.update(experiment_id, applied)
        return self._describe(concluded, with_results=True)

    def _version_to_apply(self, experiment: Experiment, found: Dict[str, Any]) -> str:
        """The winning arm's version, or a 409 saying why there is none to apply."""
        winner = found["winner"]
        if winner is None:
            raise ApiError(409, "no_winner", "no arm is significantly better yet (see results.comparisons); conclude "
                           "without apply, or wait for more users", ["apply"])
        if found.get("srm", {}).get("mismatch"):
            raise ApiError(409, "sample_ratio_mismatch", "the split is broken (results.srm): its winner cannot be "
                           "trusted; conclude without apply", ["apply"])
        arm = experiment.arm(winner)
        if arm.type in ("version", "new_lineage"):
            return str(arm.strategy["version"])
        if arm.type == "lineage":
            newest = lineage_version(self._state, arm.strategy["lineage"])
            if newest is None:
                raise ApiError(409, "no_version", "lineage {} has no servable version".format(arm.strategy["lineage"]))
            return newest.version
        if arm.type == "current":
            pointer = self._state.pointer()
            if pointer is None:
                raise ApiError(409, "no_model", "there is no current version")
            return str(pointer["version"])
        raise ApiError(409, "not_a_model", "the winning arm {!r} serves {}, not a model version: there is no "
                       "version to make current; conclude without apply".format(winner, arm.type), ["apply"])

    def _describe(self, experiment: Optional[Experiment], with_results: bool) -> Dict[str, Any]:
        assert experiment is not None
        out = experiment.to_dict()
        out.pop("salt", None)  # who gets which arm stays on the server
        for arm in out["arms"]:
            if arm["strategy"]["type"] == "new_lineage":  # how far its training has got
                version = self._state.get_version(arm["strategy"]["version"])
                arm["training"] = {"version": arm["strategy"]["version"], "status": (
                    "waiting for the continuous trainer" if version is None else
                    "ready" if version.status == "ready" else "rejected: {}".format(version.gate.get("reason")))}
        if with_results:
            out["results"] = results(experiment, *self._log.read(experiment.experiment_id))
        return out
