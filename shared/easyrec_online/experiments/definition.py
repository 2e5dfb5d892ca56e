"""What an experiment is: the body of POST /experiments, and the record the service keeps.

An experiment splits the users of a layer between arms. Each arm serves /recommend with one
strategy:

  current       the service's current version (what everyone outside the experiment gets)
  version       a pinned model version
  lineage       a lineage's newest promoted version (it follows that lineage's updates)
  new_lineage   a model of its own: the continuous trainer trains a new lineage with this model name and
                these settings on every stored action, registered beside the current version (never
                current by itself: the gate's floors judge it, not a comparison with the current one);
                the arm serves it once it is trained, and its users get the default answer until then
  popularity    the most positively acted-on items of the current version's catalog
  trending      the items with the most recent positive actions (TRENDING_HALF_LIFE_HOURS)

`ab` gives each user one arm (weights in percent, summing to 100); `interleaving` shows every user
one list merged from exactly two arms (team draft), and credits each arm with the successes on the
items it contributed (an item both arms would have shown credits neither: interleave.SHARED).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from typing_extensions import Annotated, Literal

from easyrec_online.experiments.interleave import SHARED
from easyrec_online.ingest.actions import isoformat_utc, utc_now

Name = Annotated[StrictStr, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
MODEL_STRATEGIES = ("current", "version", "lineage", "new_lineage")
CATALOG_STRATEGIES = ("popularity", "trending")
STRATEGIES = MODEL_STRATEGIES + CATALOG_STRATEGIES
LAYER_BUCKETS = 1000  # a layer's users are hashed into this many buckets; an experiment takes a range
ARM_BUCKETS = 10000  # an experiment's users are hashed into this many, split by the arms' weights
MAX_ARMS = 10
EXPERIMENT_ID = re.compile(r"^exp-[0-9a-f]{12}$")


# What a "new_lineage" arm may set for its own full training: the model and how it learns, nothing about
# where the service runs or how it serves (core/config.py declares and parses each).
NEW_LINEAGE_SETTINGS = (
    "TRAIN_STEPS", "OPTIMIZER", "ADAGRAD_ACCUMULATOR_CAP", "LEARNING_RATE", "ID_HASH_BUCKETS", "TRAIN_BATCH_SIZE",
    "NEGATIVES_PER_POSITIVE", "NEGATIVE_SAMPLING", "NEGATIVE_SAMPLING_POWER", "LIVE_FEATURES", "ITEM_SIMILARITY",
    "CF_BLEND_MAX", "SELF_BLEND", "COLD_START_RATE", "FEATURE_MIN_SUPPORT", "MAX_PARAMETER_FEATURES",
    "MAX_PROFILE_FEATURES", "PARAMETER_FEATURES_EXCLUDE", "RANDOM_SEED")
SettingValue = Union[StrictBool, StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)],
                     Annotated[StrictStr, StringConstraints(max_length=1000)]]


class StrategyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    type: Literal["current", "version", "lineage", "new_lineage", "popularity", "trending"]
    version: Optional[Annotated[StrictStr, StringConstraints(min_length=1, max_length=128)]] = None
    lineage: Optional[Annotated[StrictStr, StringConstraints(min_length=1, max_length=128)]] = None
    # new_lineage: the model its full training builds, and settings of that training (NEW_LINEAGE_SETTINGS).
    model_name: Optional[Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]] = None
    settings: Optional[Dict[str, SettingValue]] = Field(None, max_length=len(NEW_LINEAGE_SETTINGS))

    @model_validator(mode="after")
    def _parameters(self) -> "StrategyIn":
        if self.type == "version" and not self.version:
            raise ValueError("a 'version' strategy names its version")
        if self.type == "lineage" and not self.lineage:
            raise ValueError("a 'lineage' strategy names its lineage")
        if self.type == "new_lineage" and not self.model_name:
            raise ValueError("a 'new_lineage' strategy names its model_name")
        if self.type != "version" and self.version:
            raise ValueError("only a 'version' strategy takes a version")
        if self.type != "lineage" and self.lineage:
            raise ValueError("only a 'lineage' strategy takes a lineage")
        if self.type != "new_lineage" and (self.model_name or self.settings):
            raise ValueError("only a 'new_lineage' strategy takes a model_name and settings")
        unknown = sorted(set(self.settings or {}) - set(NEW_LINEAGE_SETTINGS))
        if unknown:
            raise ValueError("a new lineage cannot set {}; it may set {}".format(
                ", ".join(unknown), ", ".join(NEW_LINEAGE_SETTINGS)))
        return self

    def environment(self) -> Dict[str, str]:
        """A new_lineage arm's training settings as environment values (how Settings reads them)."""
        env = {"MODEL_NAME": str(self.model_name)}
        for key, value in (self.settings or {}).items():
            env[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return env


class ArmIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    weight: Optional[Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)]]] = Field(None, gt=0, le=100)
    # A bare type ("current", "popularity", "trending") or {"type": ..., "version" | "lineage": ...}, or
    # {"type": "new_lineage", "model_name": ..., "settings": {...}}.
    strategy: Union[Literal["current", "popularity", "trending"], StrategyIn]

    def strategy_dict(self) -> Dict[str, Any]:
        if isinstance(self.strategy, str):
            return {"type": self.strategy}
        found = self.strategy.model_dump(exclude_none=True)
        if self.strategy.type == "new_lineage":
            found["environment"] = self.strategy.environment()
        return found


class ExperimentIn(BaseModel):
    """POST /experiments."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[StrictStr, StringConstraints(min_length=1, max_length=128, pattern=r"\S")]
    kind: Literal["ab", "interleaving"] = "ab"
    arms: List[ArmIn] = Field(..., min_length=2, max_length=MAX_ARMS)
    # Action types that count as a success; default (null): any action whose label is positive.
    success_actions: Optional[List[Annotated[StrictStr, StringConstraints(min_length=1, max_length=64)]]] = Field(
        None, min_length=1, max_length=50)
    # An action counts for the impression that showed its item this long before it, at most.
    attribution_window_s: StrictInt = Field(86400, ge=60, le=30 * 86400)
    layer: Name = "default"
    # The one effect size the sequential test is to be most sensitive to (A/B: a difference of rates per
    # impression; interleaving: a mean preference); default: a grid of sizes (experiments/results.py).
    mixing_sd: Optional[Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] = None
    # Percent of the layer's users in the experiment (the rest of the layer is free for others).
    traffic: Union[StrictInt, Annotated[StrictFloat, Field(allow_inf_nan=False)]] = Field(100, gt=0, le=100)

    @field_validator("arms")
    @classmethod
    def _arms(cls, arms: List[ArmIn], info: ValidationInfo) -> List[ArmIn]:
        names = [arm.name for arm in arms]
        if len(set(names)) != len(names):
            raise ValueError("names must be unique")
        if info.data.get("kind") == "interleaving":
            if len(arms) != 2:
                raise ValueError("an interleaving experiment has exactly 2 arms")
            if any(arm.weight is not None for arm in arms):
                raise ValueError("interleaving shows both arms to every user; leave out the weights")
            if SHARED in names:
                raise ValueError("{!r} marks the items both arms would show; name the arms otherwise".format(SHARED))
        else:
            if any(arm.weight is None for arm in arms):
                raise ValueError("every arm of an A/B experiment has a weight (percent)")
            total = sum(float(arm.weight or 0) for arm in arms)
            if abs(total - 100.0) > 1e-6:
                raise ValueError("weights are percentages and must sum to 100 (they sum to {:g})".format(total))
        return arms

    @field_validator("traffic")
    @classmethod
    def _traffic(cls, traffic: float) -> float:
        if round(traffic * LAYER_BUCKETS / 100.0) < 1:
            raise ValueError("too small a share of the layer (at least {:g} %)".format(100.0 / LAYER_BUCKETS))
        return traffic


class ConcludeIn(BaseModel):
    """POST /experiments/{id}/conclude: `apply` makes the winning arm's version current (pinned)."""

    model_config = ConfigDict(extra="forbid")

    apply: bool = False


@dataclass
class Arm:
    name: str
    # {"type": ..., "version"?: ..., "lineage"?: ...}; new_lineage: {"type", "model_name", "settings"?,
    # "environment" (what its training reads), "version" (the id its training publishes, chosen at creation)}
    strategy: Dict[str, Any]
    weight: Optional[float] = None  # percent (ab); None (interleaving)

    @property
    def type(self) -> str:
        return str(self.strategy["type"])


@dataclass
class Experiment:
    experiment_id: str
    name: str
    kind: str
    arms: List[Arm]
    salt: str
    layer: str
    buckets: List[int]  # [first, last + 1) of the layer's LAYER_BUCKETS
    created_at: str
    success_actions: Optional[List[str]] = None
    attribution_window_s: int = 86400
    traffic: float = 100.0
    status: str = "running"  # running -> stopped (serves no more; results stay) -> concluded
    stopped_at: Optional[str] = None
    concluded: Optional[Dict[str, Any]] = None  # the decision: winner, applied version, figures
    mixing_sd: Optional[float] = None  # the sequential test's mixture scale (None: the default, results.py)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def arm(self, name: str) -> Arm:
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(name)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Experiment":
        known = set(cls.__dataclass_fields__)
        data = {k: v for k, v in doc.items() if k in known}
        data["arms"] = [Arm(**arm) for arm in doc["arms"]]
        return cls(**data)

    @classmethod
    def new(cls, spec: ExperimentIn, buckets: List[int]) -> "Experiment":
        return cls(
            experiment_id="exp-" + secrets.token_hex(6), name=spec.name, kind=spec.kind,
            arms=[Arm(name=a.name, strategy=a.strategy_dict(), weight=float(a.weight) if a.weight is not None else None)
                  for a in spec.arms],
            salt=secrets.token_hex(8), layer=spec.layer, buckets=buckets, created_at=isoformat_utc(utc_now()),
            success_actions=spec.success_actions, attribution_window_s=spec.attribution_window_s,
            traffic=float(spec.traffic), mixing_sd=spec.mixing_sd)


@dataclass
class Impression:
    """One /recommend answer served under an experiment: which items, in which order, from which arm."""

    recommendation_id: str
    experiment_id: str
    arm: str
    user_id: str
    at: str  # when it was served (ISO-8601 UTC)
    items: List[str]
    # Interleaving: the arm that contributed each item (same order as `items`).
    item_arms: List[str] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Impression":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass
class Success:
    """An action that counts as a success for an experiment the user is in (attributed when read)."""

    event_id: str
    user_id: str
    item_id: str
    at: str  # when the service accepted the action (the impressions' clock)
    action_type: Optional[str] = None
    recommendation_id: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Dict[str, Any]) -> "Success":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in known})
