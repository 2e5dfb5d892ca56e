"""The client: one method per route of the service (its /openapi.json names them all).

Retries. A request is retried (with exponential backoff) on a lost connection, a timeout, 429, 502,
503 (but not 503 no_model) and 504, only where sending it twice changes nothing:
  - reads (GET), and PUT (a profile stored twice is the same profile);
  - POST /online/data/add: every sample gets an `event_id` on the client before the first attempt
    (a uuid4, unless it names one), and the service stores each event id once, so a retry of a
    request whose answer was lost adds nothing twice;
  - /recommend and /predict (a retried /recommend answers a new recommendation id; the lost answer's
    impression, if any, is never shown, so no success is ever attributed to it).
Everything else (starting or stopping training, rollbacks, experiments) is sent once: a lost answer
raises, and the caller decides.
"""
import itertools
import random
import time
import uuid
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import requests

from easyrec_online_client.errors import ApiError, NoModel, error_for

Id = Union[int, str]
JSON = Dict[str, Any]
# The service's MAX_SAMPLES_PER_REQUEST and its profile batch limit, by default.
SAMPLES_PER_REQUEST = 500
PROFILES_PER_REQUEST = 1000
_RETRY_STATUSES = (429, 502, 503, 504)


class Client:
    """EasyRec Online over HTTP.

        client = Client("http://127.0.0.1:5000", api_key="...")
        client.add_actions([{"user_id": 1, "item_id": 7, "action_type": "purchase"}])
        client.recommend(1, top_k=5)["recommendations"]

    `api_key`: sent as x-api-key (a client key for client routes, an admin key for admin routes);
    `retries`: extra attempts where retrying is safe (see the module); `backoff_s`: the first wait,
    doubled each attempt, with jitter."""

    def __init__(self, base_url: str, api_key: Optional[str] = None, timeout_s: float = 30.0, retries: int = 3,
                 backoff_s: float = 0.5, session: Optional[requests.Session] = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._session = session or requests.Session()
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["x-api-key"] = api_key

    # --- plumbing --------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Optional[Any] = None, params: Optional[Mapping[str, Any]] = None,
                 safe: bool = False) -> Any:
        attempts = 1 + (self.retries if safe else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                answer = self._session.request(method, self.base_url + path, json=body, params=params,
                                               headers=self._headers, timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout):
                if last:
                    raise
                self._wait(attempt)
                continue
            if answer.status_code < 400:
                return answer.json() if answer.content else None
            try:
                doc: Any = answer.json()
            except ValueError:
                doc = answer.text[:500]
            error = error_for(answer.status_code, doc)
            if last or answer.status_code not in _RETRY_STATUSES or isinstance(error, NoModel):
                raise error
            self._wait(attempt)
        raise AssertionError("unreachable")

    def _wait(self, attempt: int) -> None:
        time.sleep(self.backoff_s * (2 ** attempt) * (0.5 + random.random()))

    # --- health and description --------------------------------------------------------------------
    def health(self) -> JSON:
        return self._request("GET", "/health", safe=True)

    def openapi(self) -> JSON:
        """The service's OpenAPI 3.1 document."""
        return self._request("GET", "/openapi.json", safe=True)

    # --- actions ---------------------------------------------------------------------------------------
    def add_action(self, user_id: Id, item_id: Id, action_type: Optional[str] = None, label: Optional[float] = None,
                   parameters: Optional[Mapping[str, Any]] = None, timestamp: Optional[str] = None,
                   event_id: Optional[str] = None, recommendation_id: Optional[str] = None) -> JSON:
        """One action; answers the service's acceptance (`event_ids`: the one it stored it under)."""
        sample: JSON = {"user_id": user_id, "item_id": item_id}
        for key, value in (("action_type", action_type), ("label", label), ("parameters", parameters),
                           ("timestamp", timestamp), ("event_id", event_id),
                           ("recommendation_id", recommendation_id)):
            if value is not None:
                sample[key] = dict(value) if isinstance(value, Mapping) else value
        return self._add([sample])

    def add_actions(self, samples: Iterable[Mapping[str, Any]], chunk_size: int = SAMPLES_PER_REQUEST,
                    progress: Optional[Callable[[int], None]] = None) -> List[str]:
        """Send any number of actions (an iterable: a generator over a file streams), in requests of
        `chunk_size`, each sample with an event id of its own (a uuid4 unless it names one), so that
        retries are safe. `progress(accepted so far)` after each request. Answers every event id, in
        order. A rejected request raises BadRequest, naming the sample within that request: the requests
        before it are stored (their ids are in the error's `accepted_event_ids`), the rest not sent."""
        accepted: List[str] = []
        iterator = iter(samples)
        while True:
            chunk = [self._with_event_id(s) for s in itertools.islice(iterator, max(1, chunk_size))]
            if not chunk:
                return accepted
            try:
                answer = self._add(chunk)
            except ApiError as exc:
                setattr(exc, "accepted_event_ids", list(accepted))
                raise
            accepted.extend(answer["event_ids"])
            if progress is not None:
                progress(len(accepted))

    @staticmethod
    def _with_event_id(sample: Mapping[str, Any]) -> JSON:
        found = dict(sample)
        found.setdefault("event_id", uuid.uuid4().hex)
        return found

    def _add(self, samples: List[JSON]) -> JSON:
        return self._request("POST", "/online/data/add", {"samples": [self._with_event_id(s) for s in samples]},
                             safe=True)

    # --- scoring ---------------------------------------------------------------------------------------
    def recommend(self, user_id: Id, candidate_items: Optional[Sequence[Id]] = None, top_k: int = 10,
                  context: Optional[Mapping[str, Any]] = None, filters: Optional[Mapping[str, Any]] = None) -> JSON:
        """{"recommendations": [{"item_id", "score", ...}], "model_version", "recommendation_id", and under an
        experiment "experiment" and "arm"}. Without candidates, they come from the catalog."""
        body: JSON = {"user_id": user_id, "top_k": top_k}
        if candidate_items is not None:
            body["candidate_items"] = list(candidate_items)
        if context is not None:
            body["context"] = dict(context)
        if filters is not None:
            body["filters"] = dict(filters)
        return self._request("POST", "/recommend", body, safe=True)

    def predict(self, user_id: Optional[Id] = None, item_id: Optional[Id] = None,
                item_ids: Optional[Sequence[Id]] = None, pairs: Optional[Sequence[Tuple[Id, Id]]] = None,
                context: Optional[Mapping[str, Any]] = None) -> JSON:
        """Probabilities: of one pair (user_id, item_id), of one user's items (user_id, item_ids), or of
        `pairs` [(user_id, item_id), ...]."""
        body: JSON = {}
        if user_id is not None:
            body["user_id"] = user_id
        if item_id is not None:
            body["item_id"] = item_id
        if item_ids is not None:
            body["item_ids"] = list(item_ids)
        if pairs is not None:
            body["pairs"] = [{"user_id": u, "item_id": i} for u, i in pairs]
        if context is not None:
            body["context"] = dict(context)
        return self._request("POST", "/predict", body, safe=True)

    # --- profiles --------------------------------------------------------------------------------------
    def put_user(self, user_id: Id, profile: Mapping[str, Any]) -> JSON:
        return self._request("PUT", "/users/{}".format(_segment(user_id)), dict(profile), safe=True)

    def get_user(self, user_id: Id) -> JSON:
        return self._request("GET", "/users/{}".format(_segment(user_id)), safe=True)

    def put_users(self, profiles: Union[Mapping[Id, Mapping[str, Any]], Iterable[Tuple[Id, Mapping[str, Any]]]],
                  progress: Optional[Callable[[int], None]] = None) -> int:
        """Bulk import: {user_id: profile} or (user_id, profile) pairs, PROFILES_PER_REQUEST a request.
        Answers how many were stored."""
        return self._put_profiles("users", "user_id", profiles, progress)

    def put_item(self, item_id: Id, profile: Mapping[str, Any]) -> JSON:
        return self._request("PUT", "/items/{}".format(_segment(item_id)), dict(profile), safe=True)

    def get_item(self, item_id: Id) -> JSON:
        return self._request("GET", "/items/{}".format(_segment(item_id)), safe=True)

    def put_items(self, profiles: Union[Mapping[Id, Mapping[str, Any]], Iterable[Tuple[Id, Mapping[str, Any]]]],
                  progress: Optional[Callable[[int], None]] = None) -> int:
        return self._put_profiles("items", "item_id", profiles, progress)

    def _put_profiles(self, kind: str, key: str, profiles: Any, progress: Optional[Callable[[int], None]]) -> int:
        pairs: Iterator[Tuple[Id, Mapping[str, Any]]] = iter(profiles.items() if isinstance(profiles, Mapping)
                                                             else profiles)
        stored = 0
        while True:
            chunk = [{key: k, "profile": dict(v)} for k, v in itertools.islice(pairs, PROFILES_PER_REQUEST)]
            if not chunk:
                return stored
            # All or none per request, and replacing: safe to retry.
            stored += int(self._request("POST", "/" + kind, {kind: chunk}, safe=True)["stored"])
            if progress is not None:
                progress(stored)

    # --- models and training (admin) -------------------------------------------------------------------
    def model_info(self) -> JSON:
        return self._request("GET", "/model/info", safe=True)

    def updates(self, limit: Optional[int] = None, lineage: Optional[str] = None) -> JSON:
        params = {k: v for k, v in (("limit", limit), ("lineage", lineage)) if v is not None}
        return self._request("GET", "/online/updates/list", params=params, safe=True)

    def rollback(self, version: str, pin: bool = True) -> JSON:
        return self._request("POST", "/model/rollback", {"version": version, "pin": pin})

    def unpin(self) -> JSON:
        return self._request("POST", "/model/unpin")

    def export(self, version: Optional[str] = None, destination: Optional[str] = None) -> JSON:
        body = {k: v for k, v in (("version", version), ("destination", destination)) if v is not None}
        return self._request("POST", "/model/export", body)

    def training_status(self) -> JSON:
        return self._request("GET", "/online/training/status", safe=True)

    def start_training(self, mode: Optional[str] = None) -> JSON:
        """mode: "auto" (default), "full", "incremental" or "continuous"."""
        return self._request("POST", "/online/training/start", {"mode": mode} if mode else None)

    def stop_training(self) -> JSON:
        return self._request("POST", "/online/training/stop")

    def set_restart_policy(self, **policy: Any) -> JSON:
        """policy, max_restarts, backoff_s, healthy_after_s (any of them)."""
        return self._request("PATCH", "/online/training/restart-policy", policy)

    def training_logs(self, lines: int = 100, job_id: Optional[str] = None) -> JSON:
        params: JSON = {"lines": lines}
        if job_id:
            params["job_id"] = job_id
        return self._request("GET", "/online/training/logs", params=params, safe=True)

    def wait_for_training(self, timeout_s: float = 600.0, poll_s: float = 1.0,
                          progress: Optional[Callable[[JSON], None]] = None) -> JSON:
        """Poll the training status until a one-shot training ends (succeeded or failed), or a continuous
        trainer has a current version; answers the last status. `progress(status)` at each poll."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.training_status()
            if progress is not None:
                progress(status)
            if status.get("status") in ("succeeded", "failed", "stopped") or (
                    status.get("continuous_training") and status.get("current_model")):
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError("training still {} after {:.0f} s".format(status.get("status"), timeout_s))
            time.sleep(poll_s)

    def streaming_status(self) -> JSON:
        return self._request("GET", "/online/streaming/status", safe=True)

    def consume(self, max_messages: int = 10) -> JSON:
        return self._request("POST", "/online/streaming/consume", {"max_messages": max_messages})

    # --- experiments (admin) ---------------------------------------------------------------------------
    def create_experiment(self, definition: Mapping[str, Any]) -> JSON:
        """POST /experiments: {"name", "kind": "ab" | "interleaving", "arms": [...], ...} (README, Experiments)."""
        return self._request("POST", "/experiments", dict(definition))

    def experiments(self) -> List[JSON]:
        return self._request("GET", "/experiments", safe=True)["experiments"]

    def experiment(self, experiment_id: str) -> JSON:
        """The definition and live results."""
        return self._request("GET", "/experiments/{}".format(_segment(experiment_id)), safe=True)

    def stop_experiment(self, experiment_id: str) -> JSON:
        return self._request("POST", "/experiments/{}/stop".format(_segment(experiment_id)))

    def conclude_experiment(self, experiment_id: str, apply: bool = False) -> JSON:
        return self._request("POST", "/experiments/{}/conclude".format(_segment(experiment_id)), {"apply": apply})


def _segment(value: Id) -> str:
    from urllib.parse import quote

    return quote(str(value), safe="")
