"""POST /recommend and POST /predict: request models, validation and scoring.

Pure logic over a `ModelCache`-like source of (version, scorer); no TensorFlow import here, so it
is unit-testable with any scorer that maps feature columns to probabilities.
"""
from __future__ import annotations

import heapq
import logging
import uuid
from itertools import repeat
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from easyrec_online.artifacts.blend import ServedBlend, served_scores
from easyrec_online.artifacts.features.encode import Context, Profiles, columns_for_pairs
from easyrec_online.artifacts.features.live import LIVE_HISTORY, LIVE_KEYS, live_columns, similar_items
from easyrec_online.artifacts.features.spec import spec_of
from easyrec_online.core.config import Settings
from easyrec_online.core.http import ApiError
from easyrec_online.experiments.definition import Arm, Experiment, Impression
from easyrec_online.experiments.interleave import credited_arms, team_draft
from easyrec_online.ingest.actions import EntityId, id_key, isoformat_utc, parse_timestamp, utc_now
from easyrec_online.serving.arms import ArmServing
from easyrec_online.serving.cache import LoadedModel
from easyrec_online.state.registry import ModelVersion

logger = logging.getLogger(__name__)

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


class RecommendFilters(BaseModel):
    """Which candidates may be recommended."""

    model_config = ConfigDict(extra="forbid")

    # Leave out items the user already acted on (action types: EXCLUDE_ACTED_ACTION_TYPES).
    # Default: on when candidates come from the catalog, off when the request lists them.
    exclude_acted_on: Optional[StrictBool] = None
    include_items: Optional[List[EntityId]] = Field(None, max_length=10000)  # only these
    exclude_items: Optional[List[EntityId]] = Field(None, max_length=10000)  # never these
    # Only items whose profile field ITEM_CATEGORY_FIELD equals (or, for a list, contains) one of these.
    category: Optional[Union[StrictStr, List[StrictStr]]] = None


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: EntityId
    # Without candidate_items, candidates come from the version's catalog (see ScoringService).
    candidate_items: Optional[List[EntityId]] = Field(None, min_length=1)
    top_k: StrictInt = Field(10, ge=1)
    context: Optional[RequestContext] = None
    filters: Optional[RecommendFilters] = None


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


Pair = Tuple[Union[int, str], Union[int, str]]


class ScoringService:
    """Scores pairs with the current version; ranks candidates for /recommend.

    Candidates: the request's candidate_items, or (when it names none) the catalog's popular and
    trending items, plus nearest items by embedding for two-tower versions (DSSM), up to
    CATALOG_CANDIDATES. Filters then remove items (already acted on, include/exclude lists,
    category). Cold start: pairs whose user or item the version never trained on are flagged
    `cold_start`. When the lineage learnt new users and items (COLD_START_RATE > 0) the model scores
    them as such (the unknown id left out; profiles, the other side and the context as usual);
    otherwise they get the item's popularity prior (catalog.Catalog.prior). Scores by the model are
    blended with the live CF score, with the weight the trainer fitted for the version (artifacts/blend.py).
    """

    def __init__(self, settings: Settings, models: Any, profiles: Any = None, activity: Any = None,
                 arms: Optional[ArmServing] = None) -> None:
        self._settings = settings
        self._arms = arms  # experiments (serving/arms.py); None: every request gets the current version
        self._models = models  # .current() -> Optional[LoadedModel]
        self._profiles = profiles  # .attributes_of(kind, ids), e.g. profiles.CachedProfiles; None: no profiles
        # .recent(user_ids, limit), e.g. activity.CachedActivity: users' actions since the version (live
        # features); None: the version's catalog only.
        self._activity = activity
        self._item_index: Optional[Tuple[Any, Any, List[str]]] = None  # (scorer, unit vectors, item ids)

    def _model(self) -> LoadedModel:
        loaded = self._models.current()
        if loaded is None:
            raise ApiError(503, "no_model", NO_MODEL_DETAIL, headers={"Retry-After": "30"})
        return loaded

    def _attributes(self, kind: str, ids: Iterable[str]) -> Dict[str, Dict[str, Any]]:
        try:
            return self._profiles.attributes_of(kind, ids) if self._profiles is not None else {}
        except Exception:  # the reason goes to the log, not to the client
            logger.exception("could not read user/item profiles")
            raise ApiError(503, "profiles_unavailable", "could not read user/item profiles; try again",
                           headers={"Retry-After": "5"})

    def _profiles_for(self, loaded: LoadedModel, pairs: Sequence[Pair]) -> Profiles:
        spec = spec_of(loaded.version)
        users = self._attributes("user", {id_key(u) for u, _ in pairs}) if spec.uses("user") else {}
        items = self._attributes("item", {id_key(i) for _, i in pairs}) if spec.uses("item") else {}
        # Sequence models: the user's history as of the version (its catalog).
        histories = ({u: loaded.catalog.history(u) for u in {id_key(u) for u, _ in pairs}}
                     if spec.uses("history") else None)
        return Profiles(users, items, histories)

    @staticmethod
    def _context(version: ModelVersion, request_context: Optional[RequestContext]) -> Context:
        # What a recommendation predicts by default: the version's serving action type, now.
        default_type = version.serving_defaults.get("action_type", "")
        return (request_context.to_context(default_type) if request_context is not None
                else Context(default_type, utc_now()))

    def _run(self, scorer: Any, columns: Dict[str, Any], output: Optional[str] = None) -> Any:
        """The model's logits for these feature columns (or a tower's embeddings: `output`)."""
        try:
            return scorer.logits(columns) if output is None else scorer.embed(output, columns)
        except Exception:
            # Never a 200 with made-up scores; the reason goes to the log, not to the client.
            logger.exception("the model could not score a request")
            raise ApiError(500, "scoring_failed", "the model could not score this request")

    def _score(self, loaded: LoadedModel, pairs: Sequence[Pair], request_context: Optional[RequestContext],
               item_keys: Optional[List[str]] = None) -> Tuple[List[float], List[bool]]:
        """(scores, cold_start flags), one each per pair, in order. `item_keys`: the pairs' item id keys,
        when the caller has them (/recommend: computed once per request, not once per step)."""
        version, scorer, catalog = loaded
        if item_keys is None:
            item_keys = [id_key(i) for _, i in pairs]
        cold: List[bool] = []
        new_users: Set[str] = set()
        new_items: Set[str] = set()
        if catalog.actions:  # versions from before catalogs score every pair with the model
            # Hot path (1000 candidates): one dict lookup per pair, no function call.
            known_users = {u: catalog.knows_user(u) for u in {u for u, _ in pairs}}
            known_items = catalog.items
            if len(known_users) == 1 and all(known_users.values()):  # /recommend: one known user
                cold = [key not in known_items for key in item_keys]
            else:
                cold = [not (known_users[u] and key in known_items) for (u, _), key in zip(pairs, item_keys)]
            if any(cold):
                new_users = {id_key(u) for u, known in known_users.items() if not known}
                new_items = {key for key, is_cold in zip(item_keys, cold) if is_cold and key not in known_items}
        any_cold = any(cold)
        if any_cold and not version.learnt_cold_start:
            # A lineage that did not learn new users and items: the model cannot score such pairs.
            modelled = [pair for pair, is_cold in zip(pairs, cold) if not is_cold]
            scores = self._model_scores(loaded, modelled, request_context) if modelled else []
            it = iter(scores)
            return [catalog.prior(i) if is_cold else next(it) for (_, i), is_cold in zip(pairs, cold)], cold
        # Every pair by the model; unknown users and items as the new ones the lineage learnt about.
        scores = self._model_scores(loaded, pairs, request_context, new_users, new_items, item_keys)
        return scores, cold if any_cold else [False] * len(pairs)

    def _model_scores(self, loaded: LoadedModel, pairs: Sequence[Pair], request_context: Optional[RequestContext],
                      new_users: Optional[Set[str]] = None, new_items: Optional[Set[str]] = None,
                      item_keys: Optional[List[str]] = None) -> List[float]:
        context = self._context(loaded.version, request_context)
        spec = spec_of(loaded.version)
        live = self._live(loaded, pairs, context, item_keys) if spec.uses("live") else None
        columns = columns_for_pairs(pairs, context, spec, self._profiles_for(loaded, pairs),
                                    cold_users=new_users, cold_items=new_items, live=live)
        # The calibrations and weights the trainer recorded in the version (the promotion gate judged these
        # scores); each live term leaves the pairs it has nothing to say about alone (no CF evidence
        # without a history, no popularity term with one, no own-actions term on untouched items).
        return served_scores(self._run(loaded.scorer, columns), live, spec, ServedBlend.of(loaded.version))

    def _histories(self, catalog: Any, users: Set[str]) -> Dict[str, List[Any]]:
        """Users' recent actions: their live activity (what they did moments ago), else what the version's
        catalog knows of them."""
        found: Dict[str, List[Any]] = {}
        if self._activity is not None:
            try:
                found = self._activity.recent(users, LIVE_HISTORY)
            except Exception:  # noqa: BLE001 - rank with what the version knows rather than fail
                logger.exception("could not read users' recent activity; using the version's catalog")
        return {user: found.get(user) or catalog.users.get(user, []) for user in users}

    def _live(self, loaded: LoadedModel, pairs: Sequence[Pair], context: Context,
              item_keys: Optional[List[str]] = None) -> Dict[str, Sequence[float]]:
        """The pairs' live features (features/live.py), in pair order."""
        moment = context.moment.timestamp()
        histories = self._histories(loaded.catalog, {id_key(u) for u in {u for u, _ in pairs}})
        if len(histories) == 1:  # /recommend: one user, many items
            keys = item_keys if item_keys is not None else [id_key(i) for _, i in pairs]
            return live_columns(loaded.catalog, next(iter(histories.values())), keys, moment)
        users = [id_key(u) for u, _ in pairs]
        positions: Dict[str, List[int]] = {}
        for index, user in enumerate(users):
            positions.setdefault(user, []).append(index)
        out: Dict[str, Sequence[float]] = {key: [0.0] * len(pairs) for key in LIVE_KEYS}
        for user, indices in positions.items():
            columns = live_columns(loaded.catalog, histories[user], [id_key(pairs[i][1]) for i in indices], moment)
            for key in LIVE_KEYS:
                target, values = out[key], columns[key]
                for k, index in enumerate(indices):
                    target[index] = values[k]
        return out

    # --- candidates ------------------------------------------------------------------------------
    def _nearest_items(self, loaded: LoadedModel, user_id: Union[int, str],
                       request_context: Optional[RequestContext], n: int) -> List[str]:
        """Two-tower versions: the items whose embedding is closest to the user's (cosine)."""
        version, scorer, catalog = loaded
        outputs = getattr(scorer, "output_names", ())
        if "user_emb" not in outputs or "item_emb" not in outputs or not catalog.items:
            return []
        import numpy as np  # model runtime only: retrieval happens where the model is

        context = self._context(version, request_context)
        index = self._item_index
        if index is None or index[0] is not scorer:
            items = catalog.all_items()
            vectors = []
            for start in range(0, len(items), 1000):
                chunk = [(user_id, item) for item in items[start:start + 1000]]
                vectors.append(self._run(scorer, columns_for_pairs(chunk, context, spec_of(version),
                                                                   self._profiles_for(loaded, chunk)), "item_emb")[:, 0, :])
            matrix = np.vstack(vectors)
            matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
            index = self._item_index = (scorer, matrix, items)
        pair = [(user_id, index[2][0])]
        new_user = ({id_key(user_id)} if version.learnt_cold_start and catalog.actions
                    and not catalog.knows_user(user_id) else None)  # the user tower of a new user
        interests = self._run(scorer, columns_for_pairs(pair, context, spec_of(version), self._profiles_for(loaded, pair),
                                                        cold_users=new_user), "user_emb")[0]
        # One vector per interest (MIND has several; unused ones are zero): an item's similarity is
        # its best match.
        norms = np.linalg.norm(interests, axis=1)
        interests = interests[norms > 1e-9] / norms[norms > 1e-9][:, None]
        if not len(interests):
            return []
        similarity = index[1].dot(interests.T).max(axis=1)
        best = np.argsort(-similarity)[:n]
        return [index[2][int(i)] for i in best]

    def _catalog_candidates(self, loaded: LoadedModel, request: RecommendRequest) -> Tuple[List[str], List[str]]:
        """(candidates, where they came from) when the request names none."""
        catalog, n = loaded.catalog, self._settings.catalog_candidates
        filters = request.filters
        if filters is not None and filters.include_items:
            return list(filters.include_items), ["include_items"]
        sources: List[str] = []
        candidates: List[str] = []
        taken: set = set()
        history = self._histories(catalog, {id_key(request.user_id)})[id_key(request.user_id)]
        for name, items in (("retrieval", self._nearest_items(loaded, request.user_id, request.context, n)),
                            ("similar", similar_items(catalog, history, n // 2)),
                            ("trending", catalog.trending(n // 2)), ("popular", catalog.popular(n))):
            fresh = [i for i in items if i not in taken][: max(0, n - len(candidates))]
            if fresh:
                sources.append(name)
            candidates.extend(fresh)
            taken.update(fresh)
        return candidates, sources

    def _apply_filters(self, loaded: LoadedModel, request: RecommendRequest, candidates: List[Any],
                       from_catalog: bool) -> List[Any]:
        filters = request.filters or RecommendFilters()
        keep = candidates
        exclude_acted = filters.exclude_acted_on if filters.exclude_acted_on is not None else from_catalog
        if exclude_acted:
            # What the version knows the user did, and what they did since (their live activity).
            types = self._settings.acted_action_types
            acted = loaded.catalog.acted_on(request.user_id, types)
            recent = self._histories(loaded.catalog, {id_key(request.user_id)})[id_key(request.user_id)]
            acted |= {entry[0] for entry in recent if types is None or entry[1] in types}
            keep = [i for i in keep if id_key(i) not in acted]
        if filters.include_items is not None:
            allowed = {id_key(i) for i in filters.include_items}
            keep = [i for i in keep if id_key(i) in allowed]
        if filters.exclude_items:
            banned = {id_key(i) for i in filters.exclude_items}
            keep = [i for i in keep if id_key(i) not in banned]
        if filters.category is not None:
            wanted = {filters.category} if isinstance(filters.category, str) else set(filters.category)
            field = self._settings.item_category_field
            profiles = self._attributes("item", {id_key(i) for i in keep})

            def matches(item: Any) -> bool:
                value = profiles.get(id_key(item), {}).get(field)
                values = value if isinstance(value, list) else [value]
                return any(isinstance(v, str) and v in wanted for v in values)

            keep = [i for i in keep if matches(i)]
        return keep

    # --- ranking ---------------------------------------------------------------------------------
    def _ranked(self, loaded: LoadedModel, request: RecommendRequest) -> Dict[str, Any]:
        """The model's top_k for the request, with where catalog candidates came from."""
        sources: List[str] = []
        if request.candidate_items is None:
            candidates, sources = self._catalog_candidates(loaded, request)
        else:
            candidates = list(request.candidate_items)
        candidates = self._apply_filters(loaded, request, candidates, request.candidate_items is None)
        pairs = list(zip(repeat(request.user_id, len(candidates)), candidates))
        scores, cold = self._score(loaded, pairs, request.context, list(map(id_key, candidates)))
        best = heapq.nlargest(request.top_k, range(len(candidates)), key=scores.__getitem__)
        result: Dict[str, Any] = {
            "user_id": request.user_id,
            "recommendations": [dict({"item_id": candidates[i], "score": scores[i]},
                                     **({"cold_start": True} if cold[i] else {})) for i in best],
            "model_version": loaded.version.version,
        }
        if request.candidate_items is None:
            result["candidate_sources"] = sources
        return result

    def _ranked_by_catalog(self, loaded: LoadedModel, request: RecommendRequest, strategy: str) -> Dict[str, Any]:
        """An experiment's `popularity` or `trending` arm: the current catalog's ranking. Scores are
        relative to the best candidate (1.0), not probabilities."""
        catalog = loaded.catalog
        if request.candidate_items is None:
            n = self._settings.catalog_candidates
            candidates: List[Any] = catalog.popular(n) if strategy == "popularity" else catalog.trending(n)
        else:
            candidates = list(request.candidate_items)
        candidates = self._apply_filters(loaded, request, candidates, request.candidate_items is None)
        moment = utc_now().timestamp()
        if strategy == "popularity":
            raw = [catalog.items[id_key(i)][1] if id_key(i) in catalog.items else 0.0 for i in candidates]
        else:
            raw = [catalog.trend_at(i, moment) for i in candidates]
        top = max(raw) if raw and max(raw) > 0 else 1.0
        order = sorted(range(len(candidates)), key=lambda k: (-raw[k], id_key(candidates[k])))[:request.top_k]
        result: Dict[str, Any] = {
            "user_id": request.user_id,
            "recommendations": [dict({"item_id": candidates[k], "score": raw[k] / top},
                                     **({} if id_key(candidates[k]) in catalog.items else {"cold_start": True}))
                                for k in order],
            "model_version": loaded.version.version,
        }
        if request.candidate_items is None:
            result["candidate_sources"] = [strategy]
        return result

    def _ranked_by_arm(self, arm: Arm, loaded: Optional[LoadedModel], request: RecommendRequest) -> Dict[str, Any]:
        if loaded is None:  # a catalog strategy
            return self._ranked_by_catalog(self._model(), request, arm.type)
        return self._ranked(loaded, request)

    def _under_experiment(self, experiment: Experiment, arm: Arm, request: RecommendRequest,
                          recommendation_id: str) -> Optional[Dict[str, Any]]:
        """The arm's answer and its logged impression; None when an arm it needs cannot serve yet."""
        assert self._arms is not None
        needed = list(experiment.arms) if experiment.kind == "interleaving" else [arm]
        models = [self._arms.model(a) for a in needed]
        if not all(servable for servable, _ in models):
            return None
        if experiment.kind == "interleaving":
            first, second = experiment.arms
            ranked = (self._ranked_by_arm(first, models[0][1], request), self._ranked_by_arm(second, models[1][1], request))
            by_arm = [{id_key(r["item_id"]): r for r in answer["recommendations"]} for answer in ranked]
            lists = [[id_key(r["item_id"]) for r in answer["recommendations"]] for answer in ranked]
            items, picked = team_draft(lists[0], lists[1], (first.name, second.name), request.top_k, recommendation_id)
            item_arms = credited_arms(items, picked, lists[0], lists[1], request.top_k)
            result = dict(ranked[0], recommendations=[
                dict(by_arm[0 if by == first.name else 1][item], arm=credit)
                for item, by, credit in zip(items, picked, item_arms)])
            result["arm_versions"] = {first.name: ranked[0]["model_version"], second.name: ranked[1]["model_version"]}
            arm_name = "interleaved"
        else:
            result = self._ranked_by_arm(arm, models[0][1], request)
            items, item_arms, arm_name = [id_key(r["item_id"]) for r in result["recommendations"]], [], arm.name
        recorded = self._arms.record(Impression(
            recommendation_id=recommendation_id, experiment_id=experiment.experiment_id, arm=arm_name,
            user_id=id_key(request.user_id), at=isoformat_utc(utc_now()), items=items, item_arms=item_arms))
        result.update({"experiment": experiment.experiment_id, "arm": arm_name})
        if not recorded:
            result["impression_recorded"] = False
        return result

    # --- endpoints -------------------------------------------------------------------------------
    def recommend(self, request: RecommendRequest) -> Dict[str, Any]:
        limit = self._settings.max_candidates
        if request.candidate_items is not None and len(request.candidate_items) > limit:
            raise ApiError(400, "invalid_request",
                           "candidate_items: at most {} items per request (got {})".format(
                               limit, len(request.candidate_items)), ["candidate_items"])
        if request.top_k > self._settings.max_top_k:
            raise ApiError(400, "invalid_request",
                           "top_k: at most {}".format(self._settings.max_top_k), ["top_k"])
        items = request.candidate_items or []
        if len(set(map(id_key, items))) != len(items):
            seen = set()
            for item in items:
                if id_key(item) in seen:
                    raise ApiError(400, "invalid_request",
                                   "candidate_items: duplicate item {!r}".format(item), ["candidate_items"])
                seen.add(id_key(item))
        loaded = self._model()
        # Every answer has an id: an action that follows it may name it (experiments credit that answer).
        recommendation_id = uuid.uuid4().hex
        served = self._arms.assign(request.user_id) if self._arms is not None else None
        result = self._under_experiment(served[0], served[1], request, recommendation_id) if served else None
        if result is None:
            result = self._ranked(loaded, request)
        result["recommendation_id"] = recommendation_id
        return result

    def predict(self, request: PredictRequest) -> Dict[str, Any]:
        pairs, single = request.as_pairs()
        if len(pairs) > self._settings.max_candidates:
            raise ApiError(400, "invalid_request",
                           "at most {} pairs per request (got {})".format(self._settings.max_candidates, len(pairs)),
                           ["pairs"])
        loaded = self._model()
        scores, cold = self._score(loaded, pairs, request.context)
        predictions = [dict({"user_id": u, "item_id": i, "score": score}, **({"cold_start": True} if is_cold else {}))
                       for (u, i), score, is_cold in zip(pairs, scores, cold)]
        if single:
            result = dict(predictions[0])
            result["model_version"] = loaded.version.version
            return result
        return {"predictions": predictions, "model_version": loaded.version.version}
