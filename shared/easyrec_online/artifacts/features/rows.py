"""Training rows as EasyRec's CSVInput reads them, and the serving defaults derived from them."""
from __future__ import annotations

from typing import Dict, Iterable, Sequence

from easyrec_online.artifacts.features.encode import NO_PROFILES, Example, Profiles, encode
from easyrec_online.artifacts.features.spec import CSV_SEPARATOR, FeatureSpec, Value
from easyrec_online.ingest.actions import StoredAction


def _csv_value(value: Value) -> str:
    return repr(float(value)) if isinstance(value, float) else value


def csv_lines(examples: Iterable[Example], spec: FeatureSpec, profiles: Profiles = NO_PROFILES) -> Iterable[str]:
    """CSV rows in the pipeline config's column order: the label columns, then the spec's features."""
    names = spec.names
    for example in examples:
        row = encode(example, spec, profiles)
        yield CSV_SEPARATOR.join([repr(v) for v in example.label_values()]
                                 + [_csv_value(row[n]) for n in names]) + "\n"


def serving_action_type(actions: Sequence[StoredAction]) -> str:
    """The action type a version predicts at serving: the most common one among positives."""
    counts: Dict[str, int] = {}
    for a in actions:
        if a.label >= 0.5:
            counts[a.action_type or ""] = counts.get(a.action_type or "", 0) + 1
    return max(sorted(counts), key=lambda k: counts[k]) if counts else ""
