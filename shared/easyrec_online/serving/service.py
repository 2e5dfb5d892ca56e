"""POST /recommend and POST /predict: request models, validation and scoring.

Pure logic over a `ModelCache`-like source of (version, scorer); no TensorFlow import here, so it
is unit-testable with any scorer that maps feature columns to probabilities.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, field_validator

from ..actions import EntityId, id_key, parse_timestamp, utc_now
from ..config import Settings
from ..features import Context, Profiles, columns_for_pairs
from ..http import ApiError
from ..registry import ModelVersion

NO_MODEL_DETAIL = (
    "no model has been trained yet: add actions with POST /online/data/add, then start training "
    "with POST /online/training/start (GET /online/training/status shows progress)"
)


class RequestContext(BaseModel):
    """The situation to score for: the fields an action carries. Keys other than action_type,
    timestamp and parameters (e.g. {"device": "mobile"}) are read as parameters."""

    model_config = ConfigDict(extra="allow")

    action_type: Optional[StrictStr] = Field(None, min_length=1, max_length=64)
    timestamp: Optional[Union[StrictInt, StrictFloat, StrictStr]] = None
    parameters: Optional[Dict[str, Any]] = None

    @field_validator("timestamp")
    @classmethod
    def _timestamp(cls, value: Any) -> Any:
        if value is not None:
            parse_timestamp(value)
        return value

    def to_context(self, default_action_type: str) -> Context:
        parameters = dict(self.model_extra or {})
        parameters.update(self.parameters or {})
        moment = parse_timestamp(self.timestamp) if self.timestamp is not None else utc_now()
        return Context(self.action_type or default_action_type, moment, parameters)


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    candidate_items: List[EntityId] = Field(..., min_length=1)
    top_k: StrictInt = Field(10, ge=1)
    context: Optional[RequestContext] = None


class PredictPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    item_id: EntityId


class PredictRequest(BaseModel):
    """One pair (user_id + item_id), one user with many items (user_id + item_ids), or `pairs`."""

    model_config = ConfigDict(extra="forbid")

    user_id: Optional[EntityId] = None
    item_id: Optional[EntityId] = None
    item_ids: Optional[List[EntityId]] = Field(None, min_length=1)
    pairs: Optional[List[PredictPair]] = Field(None, min_length=1)
    context: Optional[RequestContext] = None

    def as_pairs(self) -> Tuple[List[Tuple[Union[int, str], Union[int, str]]], bool]:
        """(pairs, single): `single` when the request named exactly one pair via user_id/item_id."""
        forms = [self.item_id is not None, self.item_ids is not None, self.pairs is not None]
        if sum(forms) != 1:
            raise ApiError(400, "invalid_request",
                           "send exactly one of: user_id + item_id, user_id + item_ids, or pairs",
                           ["item_id", "item_ids", "pairs"])
        if self.pairs is not None:
            if self.user_id is not None:
                raise ApiError(400, "invalid_request", "user_id goes inside each pair when pairs is used",
                               ["user_id"])
            return [(p.user_id, p.item_id) for p in self.pairs], False
        if self.user_id is None:
            raise ApiError(400, "invalid_request", "user_id: Field required", ["user_id"])
        if self.item_id is not None:
            return [(self.user_id, self.item_id)], True
        return [(self.user_id, item) for item in (self.item_ids or [])], False


class ScoringService:
    def __init__(self, settings: Settings, models: Any, profiles: Any = None) -> None:
        self._settings = settings
        self._models = models  # .current() -> Optional[(ModelVersion, scorer)]
        self._profiles = profiles  # .attributes_of(kind, ids), e.g. profiles.CachedProfiles; None: no profiles

    def _model(self) -> Tuple[Any, Any]:
        loaded = self._models.current()
        if loaded is None:
            raise ApiError(503, "no_model", NO_MODEL_DETAIL, headers={"Retry-After": "30"})
        return loaded

    def _profiles_for(self, version: ModelVersion, pairs: Sequence[Tuple[Union[int, str], Union[int, str]]]) -> Profiles:
        spec = version.spec
        if self._profiles is None or not (spec.uses("user") or spec.uses("item")):
            return Profiles()
        try:
            users = self._profiles.attributes_of("user", {id_key(u) for u, _ in pairs}) if spec.uses("user") else {}
            items = self._profiles.attributes_of("item", {id_key(i) for _, i in pairs}) if spec.uses("item") else {}
        except Exception as exc:
            raise ApiError(503, "profiles_unavailable", "could not read user/item profiles: {}".format(exc),
                           headers={"Retry-After": "5"})
        return Profiles(users, items)

    def _score(self, version: ModelVersion, scorer: Any,
               pairs: Sequence[Tuple[Union[int, str], Union[int, str]]],
               request_context: Optional[RequestContext] = None) -> List[float]:
        # What a recommendation predicts by default: the version's serving action type, now.
        default_type = version.serving_defaults.get("action_type", "")
        context = (request_context.to_context(default_type) if request_context is not None
                   else Context(default_type, utc_now()))
        columns = columns_for_pairs(pairs, context, version.spec, self._profiles_for(version, pairs))
        try:
            return [float(p) for p in scorer.score(columns)]
        except Exception as exc:
            # Never a 200 with made-up scores.
            raise ApiError(500, "scoring_failed", "the model could not score this request: {}".format(exc))

    def recommend(self, request: RecommendRequest) -> Dict[str, Any]:
        limit = self._settings.max_candidates
        if len(request.candidate_items) > limit:
            raise ApiError(400, "invalid_request",
                           "candidate_items: at most {} items per request (got {})".format(
                               limit, len(request.candidate_items)), ["candidate_items"])
        if request.top_k > self._settings.max_top_k:
            raise ApiError(400, "invalid_request",
                           "top_k: at most {}".format(self._settings.max_top_k), ["top_k"])
        seen = set()
        for item in request.candidate_items:
            if id_key(item) in seen:
                raise ApiError(400, "invalid_request",
                               "candidate_items: duplicate item {!r}".format(item), ["candidate_items"])
            seen.add(id_key(item))
        version, scorer = self._model()
        scores = self._score(version, scorer, [(request.user_id, item) for item in request.candidate_items],
                             request.context)
        ranked = sorted(zip(request.candidate_items, scores), key=lambda pair: -pair[1])[: request.top_k]
        return {
            "user_id": request.user_id,
            "recommendations": [{"item_id": item, "score": score} for item, score in ranked],
            "model_version": version.version,
        }

    def predict(self, request: PredictRequest) -> Dict[str, Any]:
        pairs, single = request.as_pairs()
        if len(pairs) > self._settings.max_candidates:
            raise ApiError(400, "invalid_request",
                           "at most {} pairs per request (got {})".format(self._settings.max_candidates, len(pairs)),
                           ["pairs"])
        version, scorer = self._model()
        scores = self._score(version, scorer, pairs, request.context)
        predictions = [{"user_id": u, "item_id": i, "score": s} for (u, i), s in zip(pairs, scores)]
        if single:
            result = dict(predictions[0])
            result["model_version"] = version.version
            return result
        return {"predictions": predictions, "model_version": version.version}
