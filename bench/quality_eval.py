"""Scores (user, item) pairs with given model versions, as /predict would (model runtime, Python 3.7).

  .venv-model/bin/python bench/quality_eval.py < tasks.json > scores.json

Input: {"settings": {...env of the service's cloud...},
        "tasks": [{"version": "v...", "pairs": [[u, i], ...], "timestamps": [t, ...] (optional, one per pair)}]}.
Each version is loaded once from the registry and S3 (download_saved_model, load_catalog) and scored
through ScoringService.predict: the same features, profiles and cold-start rule as the service.
Output: {"scores": [[...], ...]} in task order.
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared"))

from easyrec_online import aws, wiring  # noqa: E402
from easyrec_online.config import Settings  # noqa: E402
from easyrec_online.profiles import CachedProfiles  # noqa: E402
from easyrec_online.serving.cache import LoadedModel, download_saved_model, load_catalog  # noqa: E402
from easyrec_online.serving.scorer import SavedModelScorer  # noqa: E402
from easyrec_online.serving.service import PredictRequest, ScoringService  # noqa: E402


class Fixed(object):
    def __init__(self, loaded):
        self.loaded = loaded

    def current(self):
        return self.loaded


def main():
    request = json.load(sys.stdin)
    settings = Settings.from_env(request["settings"])
    state, s3 = wiring.state_store(settings), aws.client("s3", settings)
    cache_dir = tempfile.mkdtemp(prefix="quality-eval-")
    profiles = CachedProfiles(wiring.profile_store(settings), 3600.0)  # the profiles PUT through the API
    loaded = {}
    out = []
    for task in request["tasks"]:
        name = task["version"]
        if name not in loaded:
            version = state.get_version(name)
            path = download_saved_model(s3, settings.data_bucket, version, cache_dir)
            catalog = load_catalog(s3, settings.data_bucket, version, cache_dir)
            if os.environ.get("QUALITY_COLD_START") == "model":  # experiment: the model scores unknown ids too
                catalog.actions = 0
            loaded[name] = ScoringService(settings, Fixed(LoadedModel(version, SavedModelScorer(path), catalog)),
                                          profiles)
        service = loaded[name]
        scores = []
        pairs = task["pairs"]
        # The moment of each pair (its rating's), as a client's request at that moment says it: the
        # context features (hour, day of week) are those of the action, not of the evaluation.
        moments = task.get("timestamps") or [None] * len(pairs)
        start = 0
        while start < len(pairs):
            end = start + 1
            while end < len(pairs) and end - start < 1000 and moments[end] == moments[start]:
                end += 1
            body = {"pairs": [{"user_id": u, "item_id": i} for u, i in pairs[start:end]]}
            if moments[start] is not None:
                body["context"] = {"timestamp": moments[start]}
            answer = service.predict(PredictRequest.model_validate(body))
            scores.extend(p["score"] for p in answer["predictions"])
            start = end
        out.append(scores)
    shutil.rmtree(cache_dir, ignore_errors=True)
    json.dump({"scores": out}, sys.stdout)


if __name__ == "__main__":
    main()
