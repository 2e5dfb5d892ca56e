"""State of the service: the model registry (versions + the current pointer), training jobs, the
trainer's lease, run-time configuration and counters.

One DynamoDB table holds them (pk/sk design):
  pk="model"    sk="current"            -> which version serves (and whether it is pinned)
  pk="model"    sk="version#<version>"  -> one record per trained version
  pk="job"      sk="<job_id>"           -> one record per training run (job ids sort by time)
  pk="lease"    sk="trainer"            -> which job may train (one at a time)
  pk="config"   sk="<name>"             -> settings changed at run time (the restart policy)
  pk="counters" sk="<name>"             -> running totals (the ingest consumer's)
  pk="once#<token>" sk="<name>"         -> a token already added to counter <name> (see add_counts_once;
                                           expires with the table's TTL attribute expires_at)
Records are stored as a JSON document in attribute `doc`, which keeps floats exact and the schema
in one place (the dataclasses below), with a revision number `rev`: every read-modify-write is
conditional on the revision it read (optimistic concurrency), so concurrent writers (two API
containers, the API and the trainer) never overwrite each other's changes. `mutate` retries a
change on the newer document when it lost the race.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from easyrec_online.ingest.actions import isoformat_utc, parse_timestamp, utc_now

TRAINING_MODES = ("auto", "full", "incremental", "continuous")
# In a version's serving_defaults: the COLD_START_RATE its lineage learnt new users and items with.
COLD_START_RATE_KEY = "cold_start_rate"
# ... and the weight its scores are served with, blended with the live CF score (artifacts/blend.py).
CF_BLEND_KEY = "cf_blend"
CF_NEG_BLEND_KEY = "cf_neg_blend"
NEW_USER_POPULARITY_KEY = "new_user_popularity_blend"
# ... the calibration of its model's logits, "a,b" (score = sigmoid(a * logit + b), fitted on its holdout),
# and the weight of the user's own recent actions on the item (the live `self` term).
CALIBRATION_KEY = "calibration"
SELF_BLEND_KEY = "self_blend"
# ... and the calibration of the blended score, "a,b" (artifacts/blend.py).
FINAL_CALIBRATION_KEY = "served_calibration"
# ... and the recalibration R of that, "u:R(u),..." at its knots ("" or none: the identity).
RECALIBRATION_KEY = "served_recalibration"


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


def _pair(raw: Optional[str]) -> Tuple[float, float]:
    if not raw:
        return 1.0, 0.0
    a, b = (float(x) for x in raw.split(","))
    return a, b


def _knots(raw: Optional[str]) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
    if not raw:
        return (), ()
    pairs = [[float(v) for v in pair.split(":")] for pair in raw.split(",")]
    return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)


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
    num_held_out: int = 0  # new actions it held out to be judged on (the next version trains them)
    num_train_rows: int = 0  # rows made of its new actions (with sampled negatives and new-user copies)
    num_replayed_rows: int = 0  # earlier rows a warm update trained on beside them (INCREMENTAL_REPLAY)
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
    def cf_blend(self) -> float:
        """The CF blend weight the trainer fitted for this version (0: the model's probability alone)."""
        return float(self.serving_defaults.get(CF_BLEND_KEY) or 0)

    @property
    def cf_neg_blend(self) -> float:
        """The weight of the live cf_neg term (items like what the user did not like lately go down)."""
        return float(self.serving_defaults.get(CF_NEG_BLEND_KEY) or 0)

    @property
    def new_user_popularity_blend(self) -> float:
        """The popularity weight of users without any history, fitted at the lineage's full training
        (artifacts/blend.new_user_popularity; 0: the model's probability alone)."""
        return float(self.serving_defaults.get(NEW_USER_POPULARITY_KEY) or 0)

    @property
    def calibration(self) -> Tuple[float, float]:
        """(a, b) of the model's logits before the live terms ((1, 0): versions from before calibration,
        served as they were)."""
        return _pair(self.serving_defaults.get(CALIBRATION_KEY))

    @property
    def final_calibration(self) -> Tuple[float, float]:
        """(a, b) of the blended logit: the score served is its sigmoid ((1, 0): none)."""
        return _pair(self.serving_defaults.get(FINAL_CALIBRATION_KEY))

    @property
    def recalibration(self) -> Tuple[Tuple[float, ...], Tuple[float, ...]]:
        """R's knots (artifacts/blend.recalibrated): the served score is sigmoid(R(final logit))."""
        return _knots(self.serving_defaults.get(RECALIBRATION_KEY))

    @property
    def self_blend(self) -> float:
        """The weight of the user's own recent actions on the item in its served scores (0: none)."""
        return float(self.serving_defaults.get(SELF_BLEND_KEY) or 0)

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


JOB_STATUSES = ("pending", "running", "stopping", "stopped", "succeeded", "failed", "interrupted")
ACTIVE_STATUSES = ("pending", "running", "stopping")


@dataclass
class TrainingJob:
    job_id: str
    # pending -> running -> succeeded | failed | stopping -> stopped | interrupted (ended without being
    # asked to: SIGTERM, a task retirement, the service shutting down; a supervisor resumes it)
    status: str
    requested_at: str
    mode: str = "auto"
    task_ref: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    version: Optional[str] = None
    num_actions: Optional[int] = None
    outcome: Optional[str] = None  # promoted / rejected / nothing_new, once succeeded
    error: Optional[str] = None
    # What a running trainer is doing or waiting for, e.g. {"state": "backing_off", "reason": ...,
    # "retry_after": ...} after a rejected update (GET /online/training/status shows it).
    detail: Dict[str, Any] = field(default_factory=dict)
    heartbeat_at: Optional[str] = None
    update_requested_at: Optional[str] = None  # POST /online/training/start while a continuous trainer runs
    # POST /online/training/start {"mode": "full"} while a continuous trainer runs: it starts a new lineage,
    # and records the request it answered (a trainer killed mid-retraining answers it again).
    retrain_requested_at: Optional[str] = None
    retrain_handled_at: Optional[str] = None
    # A new lineage being trained beside the trainer's updates (modeling/growth.py): why, since when, from
    # which version; and how the last one ended.
    retraining: Optional[Dict[str, Any]] = None
    last_retraining: Optional[Dict[str, Any]] = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


class Conflict(Exception):
    """A conditional write lost the race: the document changed since it was read."""


class LeaseHeld(Exception):
    def __init__(self, holder: str) -> None:
        super().__init__("the trainer lease is held by job {}".format(holder))
        self.holder = holder


class NotCurrent(Exception):
    """A promotion found the current pointer moved (a rollback, another trainer) or pinned."""


TRAINER_LEASE = "trainer"
MUTATE_ATTEMPTS = 20


class StateStore:
    """The registry and the job log over storage primitives that each backend provides."""

    def _get_rev(self, pk: str, sk: str) -> Tuple[Optional[Dict[str, Any]], int]:
        """(document or None, its revision; 0 when absent)."""
        raise NotImplementedError

    def _put_rev(self, pk: str, sk: str, doc: Dict[str, Any], expected_rev: int) -> None:
        """Write `doc` as revision expected_rev + 1 if the stored revision is still expected_rev (0: the
        document must not exist); else raise Conflict."""
        raise NotImplementedError

    def _query(self, pk: str, sk_prefix: str, limit: int) -> List[Dict[str, Any]]:
        """Documents under `pk` whose sk starts with `sk_prefix`, highest sk first."""
        raise NotImplementedError

    def _add(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> None:
        """Atomically add to counters (created at 0) and set last_at = stamp."""
        raise NotImplementedError

    def _counters(self, pk: str, sk: str) -> Dict[str, Any]:
        raise NotImplementedError

    def _add_once(self, pk: str, sk: str, token: str, deltas: Dict[str, int], stamp: str, keep_s: float) -> bool:
        """`_add` and a record of `token`, atomically, unless `token` was recorded before (-> False)."""
        raise NotImplementedError

    # --- primitives on top -------------------------------------------------------------------------
    def _get(self, pk: str, sk: str) -> Optional[Dict[str, Any]]:
        return self._get_rev(pk, sk)[0]

    def mutate(self, pk: str, sk: str,
               change: Callable[[Optional[Dict[str, Any]]], Optional[Dict[str, Any]]]) -> Optional[Dict[str, Any]]:
        """Read-modify-write without lost updates: `change(doc or None)` returns the new document (None:
        write nothing) and is called again on the newer document when another writer got there first.
        Returns what was written (or the unchanged document)."""
        for _ in range(MUTATE_ATTEMPTS):
            doc, rev = self._get_rev(pk, sk)
            new = change(json.loads(json.dumps(doc)) if doc is not None else None)
            if new is None:
                return doc
            try:
                self._put_rev(pk, sk, new, rev)
                return new
            except Conflict:
                continue
        raise Conflict("{}/{}: still changing after {} attempts".format(pk, sk, MUTATE_ATTEMPTS))

    # --- configuration and counters ----------------------------------------------------------------
    def document(self, pk: str, sk: str) -> Optional[Dict[str, Any]]:
        """A document of another plane kept in this table (experiments), or None."""
        return self._get(pk, sk)

    def documents(self, pk: str, sk_prefix: str, limit: int) -> List[Dict[str, Any]]:
        """Documents under `pk` whose sk starts with `sk_prefix`, highest sk first."""
        return self._query(pk, sk_prefix, limit)

    def get_config(self, name: str) -> Optional[Dict[str, Any]]:
        """A service setting stored at run time (e.g. the trainer's restart policy)."""
        return self._get("config", name)

    def mutate_config(self, name: str, change: Callable[[Optional[Dict[str, Any]]], Optional[Dict[str, Any]]]
                      ) -> Optional[Dict[str, Any]]:
        return self.mutate("config", name, change)

    def add_counts(self, name: str, stamp: str, **deltas: int) -> None:
        """Running totals, e.g. the ingest consumer's stored actions and poison messages."""
        self._add("counters", name, deltas, stamp)

    def add_counts_once(self, name: str, token: str, stamp: str, keep_s: float = 21 * 86400.0,
                        **deltas: int) -> bool:
        """Add to running totals exactly once per `token` (e.g. a stored object's key), however often it
        is asked: the addition and the token's record are one atomic write. False: added before. The
        token is remembered for `keep_s` (longer than anything may ask again)."""
        return self._add_once("counters", name, token, deltas, stamp, keep_s)

    def counts(self, name: str) -> Dict[str, Any]:
        return self._counters("counters", name)

    # --- versions and the current pointer ----------------------------------------------------------
    def put_version(self, version: ModelVersion) -> None:
        self.mutate("model", "version#" + version.version, lambda _: asdict(version))

    def get_version(self, version: str) -> Optional[ModelVersion]:
        doc = self._get("model", "version#" + version)
        return _from_dict(ModelVersion, doc) if doc else None

    def list_versions(self, limit: int = 50) -> List[ModelVersion]:
        return [_from_dict(ModelVersion, d) for d in self._query("model", "version#", limit)]

    def pointer(self) -> Optional[Dict[str, Any]]:
        """The current pointer: {"version", "pinned", "updated_at", "reason", ...} or None."""
        return self._get("model", "current")

    def get_current(self) -> Optional[ModelVersion]:
        pointer = self.pointer()
        return self.get_version(pointer["version"]) if pointer else None

    def set_current(self, version: str, pinned: Optional[bool] = None, reason: str = "") -> Dict[str, Any]:
        """Make a servable version current, deliberately (a rollback, an operator's promotion): whatever
        the pointer was. `pinned`: True pins it (trainers publish beside it, never over it), False
        unpins, None keeps the pointer's pin as it was."""
        self._servable(version)

        def change(doc: Optional[Dict[str, Any]]) -> Dict[str, Any]:
            keep = bool(doc and doc.get("pinned")) if pinned is None else pinned
            return {"version": version, "pinned": keep, "reason": reason, "updated_at": isoformat_utc(utc_now())}

        return self.mutate("model", "current", change)  # type: ignore[return-value]

    def set_pinned(self, pinned: bool, reason: str = "") -> Optional[Dict[str, Any]]:
        """Pin or unpin the current version (None when there is none)."""
        def change(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            if doc is None:
                return None
            return dict(doc, pinned=pinned, reason=reason, updated_at=isoformat_utc(utc_now()))

        return self.mutate("model", "current", change)

    def promote(self, version: str, parent: Optional[str], reason: str = "promoted by the trainer") -> None:
        """A trainer's promotion: the pointer moves to `version` only if it still names `parent` (what the
        version was trained from; None: no current version yet) and is not pinned. Raises NotCurrent
        otherwise, so a rollback made during an update is never undone by that update."""
        self._servable(version)

        def change(doc: Optional[Dict[str, Any]]) -> Dict[str, Any]:
            found = doc.get("version") if doc else None
            if found != parent:
                raise NotCurrent("the current version is {}, not {} (changed during the update)".format(found, parent))
            if doc and doc.get("pinned"):
                raise NotCurrent("version {} is pinned ({})".format(found, doc.get("reason") or "rolled back"))
            return {"version": version, "pinned": False, "reason": reason, "updated_at": isoformat_utc(utc_now())}

        self.mutate("model", "current", change)

    def _servable(self, version: str) -> ModelVersion:
        record = self.get_version(version)
        if record is None:
            raise KeyError("no model version {}".format(version))
        if record.status != "ready":
            raise ValueError("version {} is {} and cannot serve".format(version, record.status))
        return record

    # --- jobs --------------------------------------------------------------------------------------
    def put_job(self, job: TrainingJob) -> None:
        """Record a new job (a job id is written once: a second put of the same id is a Conflict)."""
        self._put_rev("job", job.job_id, asdict(job), 0)

    def get_job(self, job_id: str) -> Optional[TrainingJob]:
        doc = self._get("job", job_id)
        return _from_dict(TrainingJob, doc) if doc else None

    def latest_job(self) -> Optional[TrainingJob]:
        docs = self._query("job", "", 1)
        return _from_dict(TrainingJob, docs[0]) if docs else None

    def update_job(self, job_id: str, only_from: Optional[Sequence[str]] = None, **changes: Any) -> TrainingJob:
        """Change fields of a job, applied to its latest document (never overwriting a concurrent change
        of other fields). `only_from`: statuses the job must be in for the change to apply; when it is
        in another (e.g. a stop was requested meanwhile) nothing is written and the job is returned as
        it is."""
        for name in changes:
            if name not in _JOB_FIELDS:
                raise AttributeError(name)

        def change(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            if doc is None:
                raise KeyError("no training job {}".format(job_id))
            if only_from is not None and doc.get("status") not in only_from:
                return None
            doc.update(changes)
            return doc

        return _from_dict(TrainingJob, self.mutate("job", job_id, change))

    # --- the trainer lease -------------------------------------------------------------------------
    def lease(self, name: str = TRAINER_LEASE) -> Optional[Dict[str, Any]]:
        """{"holder": job id, "expires_at": ISO time} or None."""
        return self._get("lease", name)

    def acquire_lease(self, holder: str, ttl_s: float, now: Optional[dt.datetime] = None,
                      name: str = TRAINER_LEASE) -> Dict[str, Any]:
        """Hold (or renew) the lease for `ttl_s` seconds. Raises LeaseHeld when another holder has it and
        neither has it expired nor has that holder's job ended."""
        moment = now or utc_now()

        def change(doc: Optional[Dict[str, Any]]) -> Dict[str, Any]:
            if doc and doc.get("holder") != holder and parse_timestamp(doc["expires_at"]) > moment:
                other = self.get_job(doc["holder"])
                if other is not None and other.active:
                    raise LeaseHeld(doc["holder"])
            return {"holder": holder, "expires_at": isoformat_utc(moment + dt.timedelta(seconds=ttl_s)),
                    "renewed_at": isoformat_utc(moment)}

        return self.mutate("lease", name, change)  # type: ignore[return-value]

    def release_lease(self, holder: str, name: str = TRAINER_LEASE) -> None:
        """Give the lease up (only its holder can); expired at once."""
        def change(doc: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
            if not doc or doc.get("holder") != holder:
                return None
            return dict(doc, expires_at=isoformat_utc(utc_now()), released=True)

        self.mutate("lease", name, change)

    def lease_holder(self, now: Optional[dt.datetime] = None, name: str = TRAINER_LEASE) -> Optional[str]:
        """The job holding an unexpired lease, if any."""
        doc = self.lease(name)
        if doc and not doc.get("released") and parse_timestamp(doc["expires_at"]) > (now or utc_now()):
            return str(doc["holder"])
        return None


_JOB_FIELDS = {f.name for f in fields(TrainingJob)}


class InMemoryStateStore(StateStore):
    def __init__(self) -> None:
        self._items: Dict[tuple, Tuple[str, int]] = {}
        self._counts: Dict[tuple, Dict[str, Any]] = {}
        self._tokens: set = set()
        self._lock = threading.Lock()

    def _get_rev(self, pk: str, sk: str) -> Tuple[Optional[Dict[str, Any]], int]:
        with self._lock:
            found = self._items.get((pk, sk))
        return (json.loads(found[0]), found[1]) if found else (None, 0)

    def _put_rev(self, pk: str, sk: str, doc: Dict[str, Any], expected_rev: int) -> None:
        with self._lock:
            found = self._items.get((pk, sk))
            if (found[1] if found else 0) != expected_rev:
                raise Conflict("{}/{} changed".format(pk, sk))
            self._items[(pk, sk)] = (json.dumps(doc), expected_rev + 1)

    def _query(self, pk: str, sk_prefix: str, limit: int) -> List[Dict[str, Any]]:
        with self._lock:
            keys = sorted((k for k in self._items if k[0] == pk and k[1].startswith(sk_prefix)), reverse=True)
            return [json.loads(self._items[k][0]) for k in keys[:limit]]

    def _add(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> None:
        with self._lock:
            counters = self._counts.setdefault((pk, sk), {})
            for name, delta in deltas.items():
                counters[name] = counters.get(name, 0) + delta
            counters["last_at"] = stamp

    def _counters(self, pk: str, sk: str) -> Dict[str, Any]:
        with self._lock:
            return dict(self._counts.get((pk, sk), {}))

    def _add_once(self, pk: str, sk: str, token: str, deltas: Dict[str, int], stamp: str, keep_s: float) -> bool:
        with self._lock:
            if (sk, token) in self._tokens:
                return False
            self._tokens.add((sk, token))
        self._add(pk, sk, deltas, stamp)  # no reader sees the token without the addition: both are local
        return True


class DynamoStateStore(StateStore):
    def __init__(self, dynamodb_client: Any, table: str) -> None:
        self._ddb = dynamodb_client
        self.table = table

    def _get_rev(self, pk: str, sk: str) -> Tuple[Optional[Dict[str, Any]], int]:
        item = self._ddb.get_item(
            TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
        ).get("Item")
        if not item or "doc" not in item:
            return None, 0
        # Records written before revisions existed count as revision 0 (see _put_rev).
        return json.loads(item["doc"]["S"]), int(item.get("rev", {}).get("N", "0"))

    def _put_rev(self, pk: str, sk: str, doc: Dict[str, Any], expected_rev: int) -> None:
        if expected_rev:
            condition, values = "rev = :rev", {":rev": {"N": str(expected_rev)}}
        else:
            condition, values = "attribute_not_exists(doc) OR attribute_not_exists(rev)", {}
        kwargs: Dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
        try:
            self._ddb.put_item(
                TableName=self.table, ConditionExpression=condition,
                Item={"pk": {"S": pk}, "sk": {"S": sk}, "doc": {"S": json.dumps(doc, sort_keys=True)},
                      "rev": {"N": str(expected_rev + 1)}}, **kwargs)
        except self._ddb.exceptions.ConditionalCheckFailedException:
            raise Conflict("{}/{} changed".format(pk, sk))

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
    def _addition(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> Dict[str, Any]:
        names = {"#n{}".format(i): name for i, name in enumerate(sorted(deltas))}
        values: Dict[str, Any] = {":v{}".format(i): {"N": str(deltas[name])} for i, name in enumerate(sorted(deltas))}
        values[":stamp"] = {"S": stamp}
        names["#last"] = "last_at"
        additions = ", ".join("#n{0} :v{0}".format(i) for i in range(len(deltas)))
        return dict(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}},
                    UpdateExpression="ADD {} SET #last = :stamp".format(additions) if deltas else "SET #last = :stamp",
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values)

    def _add(self, pk: str, sk: str, deltas: Dict[str, int], stamp: str) -> None:
        self._ddb.update_item(**self._addition(pk, sk, deltas, stamp))

    def _add_once(self, pk: str, sk: str, token: str, deltas: Dict[str, int], stamp: str, keep_s: float) -> bool:
        expires = str(int(dt.datetime.now(dt.timezone.utc).timestamp() + keep_s))
        try:
            self._ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(pk)",
                         "Item": {"pk": {"S": "once#" + token}, "sk": {"S": sk}, "expires_at": {"N": expires}}}},
                {"Update": self._addition(pk, sk, deltas, stamp)}])
            return True
        except self._ddb.exceptions.TransactionCanceledException as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            raise

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
