"""Where experiments live.

Definitions: in the state table beside the model registry (pk "experiment", sk <id>), written with
the registry's read-modify-write (`StateStore.mutate`), so that two admins creating experiments in
one layer at once cannot both take the same buckets: a layer's allocation is one document (pk
"experiment-layer", sk <layer>) changed atomically.

The log: what each experiment served and what followed. One interface, two backends:
  impressions  one per /recommend answered under an experiment, keyed by its recommendation id
  successes    one per action that counts as a success for a user in a running experiment, keyed by
               its event id
Both are keyed writes, so writing one again (a retried request, a redelivered batch) changes
nothing: each is recorded exactly once. Attribution happens when results are read
(experiments/results.py), so it does not matter which of an impression and its success is written
first.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from easyrec_online.experiments.definition import Experiment, Impression, Success
from easyrec_online.state.registry import StateStore

MAX_EXPERIMENTS = 1000  # definitions listed (running and ended)


class LayerFull(Exception):
    """The layer has no free range of buckets this large: running experiments take it."""


class ExperimentDefinitions:
    def __init__(self, state: StateStore) -> None:
        self._state = state

    def get(self, experiment_id: str) -> Optional[Experiment]:
        doc = self._state.document("experiment", experiment_id)
        return Experiment.from_dict(doc) if doc else None

    def list(self) -> List[Experiment]:
        return [Experiment.from_dict(d) for d in self._state.documents("experiment", "exp-", MAX_EXPERIMENTS)]

    def arm_versions(self) -> Tuple[List[str], List[str]]:
        """(versions, lineages) running experiments' arms serve: their versions, and each lineage's
        newest promoted one, must not expire while they do."""
        running = [e for e in self.list() if e.running]
        return (sorted({arm.strategy["version"] for e in running for arm in e.arms
                        if arm.type in ("version", "new_lineage")}),
                sorted({arm.strategy["lineage"] for e in running for arm in e.arms if arm.type == "lineage"}))

    def create(self, layer: str, build: Callable[[Dict[str, List[int]]], Experiment]) -> Experiment:
        """`build(ranges the layer's running experiments take)` makes the experiment with a free range of
        its own (or raises LayerFull); the range is taken atomically before the definition is written."""
        made: List[Experiment] = []

        def take(doc: Optional[Dict[str, Any]]) -> Dict[str, Any]:
            ranges = dict((doc or {}).get("ranges", {}))
            made[:] = [build(ranges)]
            ranges[made[0].experiment_id] = made[0].buckets
            return {"layer": layer, "ranges": ranges}

        self._state.mutate("experiment-layer", layer, take)
        experiment = made[0]
        try:
            self._state.mutate("experiment", experiment.experiment_id, lambda _: experiment.to_dict())
        except Exception:
            self._release(experiment)
            raise
        return experiment

    def update(self, experiment_id: str, change: Callable[[Experiment], Experiment]) -> Optional[Experiment]:
        doc = self._state.mutate("experiment", experiment_id,
                                 lambda d: change(Experiment.from_dict(d)).to_dict() if d else None)
        experiment = Experiment.from_dict(doc) if doc else None
        if experiment is not None and not experiment.running:
            self._release(experiment)
        return experiment

    def _release(self, experiment: Experiment) -> None:
        """Free the experiment's buckets in its layer (once it no longer runs)."""
        def change(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            if not doc or experiment.experiment_id not in doc.get("ranges", {}):
                return None
            ranges = dict(doc["ranges"])
            del ranges[experiment.experiment_id]
            return dict(doc, ranges=ranges)

        self._state.mutate("experiment-layer", experiment.layer, change)


class ExperimentLog:
    def record_impression(self, impression: Impression) -> None:
        raise NotImplementedError

    def record_successes(self, experiment_id: str, successes: Sequence[Success]) -> None:
        raise NotImplementedError

    def read(self, experiment_id: str) -> Tuple[List[Impression], List[Success]]:
        raise NotImplementedError


class InMemoryExperimentLog(ExperimentLog):
    def __init__(self) -> None:
        self._items: Dict[Tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def record_impression(self, impression: Impression) -> None:
        with self._lock:
            self._items[(impression.experiment_id, "i#" + impression.recommendation_id)] = json.dumps(
                impression.to_dict())

    def record_successes(self, experiment_id: str, successes: Sequence[Success]) -> None:
        with self._lock:
            for success in successes:
                self._items[(experiment_id, "s#" + success.event_id)] = json.dumps(success.to_dict())

    def read(self, experiment_id: str) -> Tuple[List[Impression], List[Success]]:
        with self._lock:
            found = sorted((sk, doc) for (exp, sk), doc in self._items.items() if exp == experiment_id)
        return ([Impression.from_dict(json.loads(d)) for sk, d in found if sk.startswith("i#")],
                [Success.from_dict(json.loads(d)) for sk, d in found if sk.startswith("s#")])


class DynamoExperimentLog(ExperimentLog):
    """pk "log#<experiment id>", sk "i#<recommendation id>" or "s#<event id>", the record as JSON."""

    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table

    def _item(self, experiment_id: str, sk: str, doc: Dict[str, Any]) -> Dict[str, Any]:
        return {"pk": {"S": "log#" + experiment_id}, "sk": {"S": sk}, "doc": {"S": json.dumps(doc, sort_keys=True)}}

    def record_impression(self, impression: Impression) -> None:
        self._ddb.put_item(TableName=self.table, Item=self._item(
            impression.experiment_id, "i#" + impression.recommendation_id, impression.to_dict()))

    def record_successes(self, experiment_id: str, successes: Sequence[Success]) -> None:
        unique = {s.event_id: s for s in successes}  # a batch may not name one key twice
        requests = [{"PutRequest": {"Item": self._item(experiment_id, "s#" + s.event_id, s.to_dict())}}
                    for s in unique.values()]
        for start in range(0, len(requests), 25):
            pending = {self.table: requests[start:start + 25]}
            for _ in range(8):
                unprocessed = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                pending = unprocessed
            else:
                raise RuntimeError("the experiments table kept refusing writes (throttled)")

    def read(self, experiment_id: str) -> Tuple[List[Impression], List[Success]]:
        impressions: List[Impression] = []
        successes: List[Success] = []
        kwargs: Dict[str, Any] = dict(TableName=self.table, KeyConditionExpression="pk = :pk",
                                      ExpressionAttributeValues={":pk": {"S": "log#" + experiment_id}},
                                      ConsistentRead=True)
        while True:
            answer = self._ddb.query(**kwargs)
            for item in answer.get("Items", []):
                doc = json.loads(item["doc"]["S"])
                if item["sk"]["S"].startswith("i#"):
                    impressions.append(Impression.from_dict(doc))
                else:
                    successes.append(Success.from_dict(doc))
            if not answer.get("LastEvaluatedKey"):
                return impressions, successes
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
