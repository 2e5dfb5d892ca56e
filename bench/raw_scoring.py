"""Raw TensorFlow scoring of a SavedModel (model runtime): the baseline the service is compared to.

Usage: .venv-model/bin/python bench/raw_scoring.py <saved_model_dir> <candidates> <repeats> [<feature_spec.json>]
Prints one JSON line: {"p50_ms", "p99_ms", "n"} of SavedModelScorer.score (one Session.run). With the
version's feature spec (its registry record's `feature_spec`), every input the model takes is fed,
its live features too (zeros: a Session.run costs the same whatever the values).

With <repeats> 0 it stays loaded and answers on stdout, for each line "<n>" read from stdin, one JSON
line: the list of n timings (ms). bench.serving alternates such blocks with blocks of end-to-end
requests, so both figures of a ratio come from the same minutes of a noisy machine.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared"))

from easyrec_online.artifacts.features.encode import Context, columns_for_pairs  # noqa: E402
from easyrec_online.artifacts.features.live import LIVE_KEYS  # noqa: E402
from easyrec_online.artifacts.features.spec import FeatureSpec  # noqa: E402
from easyrec_online.artifacts.scorer import SavedModelScorer  # noqa: E402
from easyrec_online.ingest.actions import utc_now  # noqa: E402


def main():
    path, candidates, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    scorer = SavedModelScorer(path)
    spec = None
    if len(sys.argv) > 4:
        with open(sys.argv[4]) as f:
            spec = FeatureSpec.from_json(json.load(f))
    live = {key: [0.0] * candidates for key in LIVE_KEYS} if spec is not None and spec.uses("live") else None
    columns = columns_for_pairs([(123, item) for item in range(candidates)], Context("", utc_now()), spec, live=live)
    for _ in range(20):
        scorer.score(columns)
    if repeats == 0:
        for line in sys.stdin:
            print(json.dumps(_timings(scorer, columns, int(line))), flush=True)
        return
    times = sorted(_timings(scorer, columns, repeats))
    print(json.dumps({"p50_ms": times[len(times) // 2], "p99_ms": times[int(len(times) * 0.99) - 1], "n": repeats}))


def _timings(scorer, columns, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        scorer.score(columns)
        times.append((time.perf_counter() - started) * 1000)
    return times


if __name__ == "__main__":
    main()
