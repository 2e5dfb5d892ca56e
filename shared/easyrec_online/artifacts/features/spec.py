"""A lineage's features (FeatureSpec): the columns of its training rows and its SavedModel's inputs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

# CSVInput's field separator. Values are cleaned of it (and of line breaks) by feature_value.
CSV_SEPARATOR = "\t"
TAG_SEPARATOR = "|"
LABEL = "label"
# Second label, for multi-task models: the action was a positive conversion (a purchase, a booking),
# not just engagement. Single-task models ignore the column.
CONVERSION_LABEL = "conversion"
CONVERSION_ACTION_TYPES = frozenset(["purchase", "book_tickets"])
LABEL_COLUMNS = (LABEL, CONVERSION_LABEL)  # the CSV's first columns, in this order

KINDS = ("id", "raw", "tags", "seq")
SOURCES = ("base", "param", "user", "item", "history", "live")
# Sequence models (MIND) read the user's history: the items they acted on positively before, oldest
# first, up to MAX_HISTORY. An empty history is one placeholder token (a sequence is never empty).
MAX_HISTORY = 20
NO_HISTORY = "__none__"
# The id feature of a user or item the lineage does not know. Real ids are never blank (validated
# at the edge); inside the graph a blank id hashes to no bucket at all: a zero embedding.
UNKNOWN_ID = ""
HISTORY_FEATURE_NAME = "hist_item_id"
EMBEDDING_DIM = 16  # one dimension for every feature: FM and AutoInt interact embeddings pairwise
RAW_CLIP = 5.0
MAX_FLATTEN_DEPTH = 4
MAX_TAGS = 20
Value = Union[str, float]


@dataclass(frozen=True)
class FeatureDef:
    name: str  # model input / CSV column name
    kind: str  # id | raw | tags | seq
    source: str  # base | param | user | item | history | live (features/live.py)
    key: str  # dotted path inside the source (the base feature's own name for base)
    hash_bucket_size: int = 0  # id and tags
    mean: float = 0.0  # raw
    std: float = 1.0  # raw
    embedding_dim: int = EMBEDDING_DIM
    # raw live features of the user's history: the range the lineage's first training saw (None:
    # unbounded). A value beyond it is read as the range's edge: the model is not asked about a
    # user unlike any it was trained on.
    # A user with 40 purchases more than any training user's history once moved a version's scores
    # from 0.77 to 0.06 with no weight changed, and a warm update's scores of the item bought to 1e-7.
    lo: Optional[float] = None
    hi: Optional[float] = None

    def to_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        if self.lo is None and self.hi is None:  # the records of lineages without bounds stay as they were
            del out["lo"], out["hi"]
        return out

    @property
    def z_bounds(self) -> Tuple[float, float]:
        """The encoded (standardised) value's bounds: +-RAW_CLIP, within the feature's range if it has one."""
        cached = self.__dict__.get("_z_bounds")  # encode asks once per row and feature
        if cached is None:
            std = self.std or 1.0
            low = -RAW_CLIP if self.lo is None else max(-RAW_CLIP, (self.lo - self.mean) / std)
            high = RAW_CLIP if self.hi is None else min(RAW_CLIP, (self.hi - self.mean) / std)
            cached = self.__dict__["_z_bounds"] = (low, high)
        return cached


BASE_FEATURES: Tuple[FeatureDef, ...] = (
    FeatureDef("user_id", "id", "base", "user_id", hash_bucket_size=200000),
    FeatureDef("item_id", "id", "base", "item_id", hash_bucket_size=200000),
    FeatureDef("action_type", "id", "base", "action_type", hash_bucket_size=1000),
    FeatureDef("hour", "id", "base", "hour", hash_bucket_size=100),
    FeatureDef("dow", "id", "base", "dow", hash_bucket_size=20),
)
BASE_NAMES: Tuple[str, ...] = tuple(f.name for f in BASE_FEATURES)
PREFIXES = {"param": "p", "user": "u", "item": "i", "live": "l"}


@dataclass(frozen=True)
class FeatureSpec:
    features: Tuple[FeatureDef, ...] = BASE_FEATURES
    # Derived once: encode() asks for every row (hundreds of thousands in a full training).
    _sources: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_sources", frozenset(f.source for f in self.features))

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.features]

    def uses(self, source: str) -> bool:
        return source in self._sources

    def to_json(self) -> List[Dict[str, Any]]:
        return [f.to_dict() for f in self.features]

    @classmethod
    def from_json(cls, data: Optional[Sequence[Mapping[str, Any]]]) -> "FeatureSpec":
        if not data:
            return cls()
        return cls(tuple(FeatureDef(**dict(d)) for d in data))


def spec_of(version: Any) -> FeatureSpec:
    """The FeatureSpec of a registry ModelVersion, parsed once per record (serving asks on every request)."""
    cached = version.__dict__.get("_spec")
    if cached is None or cached[0] is not version.feature_spec:
        cached = (version.feature_spec, FeatureSpec.from_json(version.feature_spec))
        version.__dict__["_spec"] = cached
    return cached[1]
