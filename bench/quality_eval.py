"""Scores (user, item) pairs with given model versions, as /predict would (model runtime, Python 3.7).

  .venv-model/bin/python bench/quality_eval.py < tasks.jsonl > scores.jsonl

Input, JSON lines: first {"settings": {...env of the service's cloud...}}, then messages:
  {"add": [action, ...]}   actions the users have taken by now (their live activity; no output)
  {"version": "v...", "pairs": [[u, i], ...], "timestamps": [t, ...]}   a task: one output line
Output: a JSON list of scores a line, one per task, in task order, each written as soon as it is scored
(the benchmark sends a day's tasks while it replays the next days: the evaluator works beside the trainer).
Each version is loaded once from the registry and S3 (download_saved_model, load_catalog) and scored
through ScoringService.predict: the same features, profiles, live activity and cold-start rule as the
service, with the users' activity as of the task (an in-memory activity store fed by the "add" messages).
"""
import collections
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "shared"))

from easyrec_online import wiring  # noqa: E402
from easyrec_online.artifacts.download import download_saved_model, load_catalog  # noqa: E402
from easyrec_online.artifacts.scorer import SavedModelScorer  # noqa: E402
from easyrec_online.core import aws  # noqa: E402
from easyrec_online.core.config import Settings  # noqa: E402
from easyrec_online.ingest.actions import ActionIn, StoredAction  # noqa: E402
from easyrec_online.serving.cache import LoadedModel  # noqa: E402
from easyrec_online.serving.service import PredictRequest, ScoringService  # noqa: E402
from easyrec_online.state.activity import InMemoryActivityStore  # noqa: E402
from easyrec_online.state.profiles import CachedProfiles  # noqa: E402


class Fixed(object):
    def __init__(self, loaded):
        self.loaded = loaded

    def current(self):
        return self.loaded


def main():
    settings = Settings.from_env(dict(json.loads(sys.stdin.readline())["settings"], MAX_CANDIDATES="5000"))
    state, s3 = wiring.state_store(settings), aws.client("s3", settings)
    cache_dir = tempfile.mkdtemp(prefix="quality-eval-")
    profiles = CachedProfiles(wiring.profile_store(settings), 3600.0)  # the profiles PUT through the API
    activity = InMemoryActivityStore()
    loaded = collections.OrderedDict()  # the frozen version and the day's online one: two at a time
    for line in sys.stdin:
        task = json.loads(line)
        if "add" in task:
            activity.record([StoredAction.accept(ActionIn.model_validate(a)) for a in task["add"]])
            continue
        name = task["version"]
        if name in loaded:
            loaded.move_to_end(name)
        else:
            while len(loaded) >= 2:
                old_name, (_, old_scorer) = loaded.popitem(last=False)
                old_scorer.close()
                shutil.rmtree(os.path.join(cache_dir, old_name), ignore_errors=True)
                os.remove(os.path.join(cache_dir, old_name + ".catalog.json"))
            version = state.get_version(name)
            path = download_saved_model(s3, settings.data_bucket, version, cache_dir)
            catalog = load_catalog(s3, settings.data_bucket, version, cache_dir)
            scorer = SavedModelScorer(path)
            loaded[name] = (ScoringService(settings, Fixed(LoadedModel(version, scorer, catalog)), profiles, activity),
                            scorer)
        service = loaded[name][0]
        scores = []
        pairs = task["pairs"]
        # The moment of each pair (its rating's), as a client's request at that moment says it.
        moments = task.get("timestamps") or [None] * len(pairs)
        start = 0
        while start < len(pairs):
            end = start + 1
            while (end < len(pairs) and end - start < 5000 and moments[end] == moments[start]
                   and pairs[end][0] == pairs[start][0]):
                end += 1
            body = {"pairs": [{"user_id": u, "item_id": i} for u, i in pairs[start:end]]}
            if moments[start] is not None:
                body["context"] = {"timestamp": moments[start]}
            answer = service.predict(PredictRequest.model_validate(body))
            scores.extend(p["score"] for p in answer["predictions"])
            start = end
        sys.stdout.write(json.dumps(scores) + "\n")
        sys.stdout.flush()
    shutil.rmtree(cache_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
