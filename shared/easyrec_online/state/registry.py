"""State of the service: the model registry (versions + the current pointer) and training jobs.

One DynamoDB table holds both (pk/sk design):
  pk="model"  sk="current"            -> which version serves
  pk="model"  sk="version#<version>"  -> one record per trained version
  pk="job"    sk="<job_id>"           -> one record per training run (job ids sort by time)
Records are stored as a JSON document in attribute `doc`, which keeps floats exact and the schema
in one place (the dataclasses below).
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List, Optional

from easyrec_online.ingest.actions import isoformat_utc, utc_now

TRAINING_MODES = ("auto", "full", "incremental", "continuous")
# In a version's serving_defaults: the COLD_START_RATE its lineage learnt new users and items with.
COLD_START_RATE_KEY = "cold_start_rate"


_last_id_moment = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
_id_lock = threading.Lock()


def new_id(prefix: str = "", moment: Optional[dt.datetime] = None) -> str:
    """A time-sortable id: <prefix>YYYYmmddTHHMMSSmmm-<random>. Ids made by one process without an
    explicit moment strictly increase, even within one millisecond (so "latest" is well defined)."""
    global _last_id_moment
    if moment is None:
        with _id_lock:
            now = utc_now()
            moment = max(now.replace(microsecond=now.microsecond // 1000 * 1000),
                         _last_id_moment + dt.timedelta(milliseconds=1))
            _last_id_moment = moment
    return "{}{}{:03d}-{}".format(prefix, moment.strftime("%Y%m%dT%H%M%S"), moment.microsecond // 1000,
                                  secrets.token_hex(3))


def _from_dict(cls: Any, data: Dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ModelVersion:
    version: str
    lineage: str
    model_name: str
    s3_prefix: str  # models/<lineage>/<version>/ ; the SavedModel is under saved_model/
    created_at: str
    status: str = "ready"  # ready (servable) or rejected (failed the promotion gate)
    job_id: Optional[str] = None
    parent_version: Optional[str] = None
    mode: str = "full"  # full: trained from scratch, new lineage; incremental: continued from parent
    num_actions: int = 0  # actions this version's lineage has trained on, in total
    num_new_actions: int = 0  # of which new in this version
    num_train_rows: int = 0
    global_step: int = 0
    metrics: Dict[str, float] = field(default_factory=dict)
    gate: Dict[str, Any] = field(default_factory=dict)  # the promotion decision and its figures
    timings: Dict[str, float] = field(default_factory=dict)
    feature_columns: List[str] = field(default_factory=list)
    # The lineage's features (features.FeatureSpec.to_json()): fixed for the lineage, read by serving.
    feature_spec: List[Dict[str, Any]] = field(default_factory=list)
    optimizer: str = "adam"  # fixed for a lineage: its checkpoint holds this optimizer's slots
    serving_defaults: Dict[str, str] = field(default_factory=dict)  # e.g. the action_type it predicts

    @property
    def cold_start_rate(self) -> float:
        """The COLD_START_RATE its lineage learnt new users and items with (0: it did not)."""
        return float(self.serving_defaults.get(COLD_START_RATE_KEY) or 0)

    @property
    def learnt_cold_start(self) -> bool:
        """Its lineage learnt new users and items: the model scores them, not a prior."""
        return self.cold_start_rate > 0

    @property
    def saved_model_prefix(self) -> str:
        return self.s3_prefix + "saved_model/"

    @property
    def checkpoint_prefix(self) -> str:
        return self.s3_prefix + "checkpoint/"

    @property
    def pipeline_key(self) -> str:
        """The EasyRec pipeline config it was trained with (a lineage's warm trainer rebuilds from it)."""
        return self.s3_prefix + "pipeline.config"

    @property
    def catalog_key(self) -> str:
        """JSON (catalog.Catalog): item popularity and trends, users' recent items."""
        return self.s3_prefix + "catalog.json"

    @property
    def manifest_key(self) -> str:
        """JSON: the action objects this lineage has trained on up to this version, and its catalog."""
        return self.s3_prefix + "manifest.json"


@dataclass
class TrainingJob:
    job_id: str
    status: str  # pending, running, succeeded, failed
    requested_at: str
    mode: str = "auto"
    task_ref: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    version: Optional[str] = None
    num_actions: Optional[int] = None
    outcome: Optional[str] = None  # promoted / rejected / nothing_new, once succeeded
    error: Optional[str] = None

    @property
    def active(self) -> bool:
        return self.status in ("pending", "running", "stopping")


class StateStore:
    """The registry and the job log over three storage primitives that each backend provides."""

    def _put(self, pk: str, sk: str, doc: Dict[str, Any]) -> None:
        raise NotImplementedError

    def _get(self, pk: str, sk: str) -> Optional[Dict[str, Any]]:
        raise NotImplementedError

    def _query(self, pk: str, sk_prefix: str, limit: int) -> List[Dict[str, Any]]:
        """Documents under `pk` whose sk starts with `sk_prefix`, highest sk first."""
        raise NotImplementedError

    def _add(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> None:
        """Atomically add to counters (created at 0) and set last_at = stamp."""
        raise NotImplementedError

    def _counters(self, pk: str, sk: str) -> Dict[str, Any]:
        raise NotImplementedError

    def get_config(self, name: str) -> Optional[Dict[str, Any]]:
        """A service setting stored at run time (e.g. the trainer's restart policy)."""
        return self._get("config", name)

    def put_config(self, name: str, doc: Dict[str, Any]) -> None:
        self._put("config", name, doc)

    def add_counts(self, name: str, stamp: str, **deltas: int) -> None:
        """Running totals, e.g. the ingest consumer's stored actions and poison messages."""
        self._add("counters", name, deltas, stamp)

    def counts(self, name: str) -> Dict[str, Any]:
        return self._counters("counters", name)

    def put_version(self, version: ModelVersion) -> None:
        self._put("model", "version#" + version.version, asdict(version))

    def get_version(self, version: str) -> Optional[ModelVersion]:
        doc = self._get("model", "version#" + version)
        return _from_dict(ModelVersion, doc) if doc else None

    def list_versions(self, limit: int = 50) -> List[ModelVersion]:
        return [_from_dict(ModelVersion, d) for d in self._query("model", "version#", limit)]

    def get_current(self) -> Optional[ModelVersion]:
        pointer = self._get("model", "current")
        return self.get_version(pointer["version"]) if pointer else None

    def set_current(self, version: str) -> None:
        record = self.get_version(version)
        if record is None:
            raise KeyError("no model version {}".format(version))
        if record.status != "ready":
            raise ValueError("version {} is {} and cannot serve".format(version, record.status))
        self._put("model", "current", {"version": version, "updated_at": isoformat_utc(utc_now())})

    def put_job(self, job: TrainingJob) -> None:
        self._put("job", job.job_id, asdict(job))

    def get_job(self, job_id: str) -> Optional[TrainingJob]:
        doc = self._get("job", job_id)
        return _from_dict(TrainingJob, doc) if doc else None

    def latest_job(self) -> Optional[TrainingJob]:
        docs = self._query("job", "", 1)
        return _from_dict(TrainingJob, docs[0]) if docs else None

    def update_job(self, job_id: str, **changes: Any) -> TrainingJob:
        job = self.get_job(job_id)
        if job is None:
            raise KeyError("no training job {}".format(job_id))
        for name, value in changes.items():
            if not hasattr(job, name):
                raise AttributeError(name)
            setattr(job, name, value)
        self.put_job(job)
        return job


class InMemoryStateStore(StateStore):
    def __init__(self) -> None:
        self._items: Dict[tuple, Dict[str, Any]] = {}
        self._counts: Dict[tuple, Dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _put(self, pk: str, sk: str, doc: Dict[str, Any]) -> None:
        with self._lock:
            self._items[(pk, sk)] = json.loads(json.dumps(doc))

    def _get(self, pk: str, sk: str) -> Optional[Dict[str, Any]]:
        with self._lock:
            doc = self._items.get((pk, sk))
            return json.loads(json.dumps(doc)) if doc is not None else None

    def _query(self, pk: str, sk_prefix: str, limit: int) -> List[Dict[str, Any]]:
        with self._lock:
            keys = sorted((k for k in self._items if k[0] == pk and k[1].startswith(sk_prefix)), reverse=True)
            return [json.loads(json.dumps(self._items[k])) for k in keys[:limit]]

    def _add(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> None:
        with self._lock:
            counters = self._counts.setdefault((pk, sk), {})
            for name, delta in deltas.items():
                counters[name] = counters.get(name, 0) + delta
            counters["last_at"] = stamp

    def _counters(self, pk: str, sk: str) -> Dict[str, Any]:
        with self._lock:
            return dict(self._counts.get((pk, sk), {}))


class DynamoStateStore(StateStore):
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table

    def _put(self, pk: str, sk: str, doc: Dict[str, Any]) -> None:
        self._ddb.put_item(
            TableName=self.table,
            Item={"pk": {"S": pk}, "sk": {"S": sk}, "doc": {"S": json.dumps(doc, sort_keys=True)}},
        )

    def _get(self, pk: str, sk: str) -> Optional[Dict[str, Any]]:
        item = self._ddb.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        ).get("Item")
        return json.loads(item["doc"]["S"]) if item else None

    def _query(self, pk: str, sk_prefix: str, limit: int) -> List[Dict[str, Any]]:
        condition = "pk = :pk"
        values: Dict[str, Any] = {":pk": {"S": pk}}
        if sk_prefix:
            condition += " AND begins_with(sk, :prefix)"
            values[":prefix"] = {"S": sk_prefix}
        items = self._ddb.query(
            TableName=self.table, KeyConditionExpression=condition, ExpressionAttributeValues=values,
            ScanIndexForward=False, Limit=limit, ConsistentRead=True,
        ).get("Items", [])
        return [json.loads(item["doc"]["S"]) for item in items]

    def _add(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> None:
        names = {"#n{}".format(i): name for i, name in enumerate(sorted(deltas))}
        values: Dict[str, Any] = {":v{}".format(i): {"N": str(deltas[name])} for i, name in enumerate(sorted(deltas))}
        values[":stamp"] = {"S": stamp}
        names["#last"] = "last_at"
        additions = ", ".join("#n{0} :v{0}".format(i) for i in range(len(deltas)))
        self._ddb.update_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}},
            UpdateExpression="ADD {} SET #last = :stamp".format(additions) if deltas else "SET #last = :stamp",
            ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def _counters(self, pk: str, sk: str) -> Dict[str, Any]:
        item = self._ddb.get_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                                  ConsistentRead=True).get("Item") or {}
        out: Dict[str, Any] = {}
        for name, value in item.items():
            if "N" in value:
                out[name] = int(value["N"])
            elif name == "last_at":
                out[name] = value["S"]
        return out
