"""Parameters and profiles as features, for real: the seed's three kinds of action (a rating, an
agriculture watering, a plain like) with nested parameters, plus user and item profiles, train a
DeepFM through the training task; the inference function builds the same features from a
request's context and the stored profiles; keys first seen later never break an update and enter
with the next full retrain (a new lineage)."""
import datetime as dt
import random

import pytest

from easyrec_online import wiring
from easyrec_online.core import aws
from easyrec_online.ingest.actions import ActionIn, StoredAction
from tests.integration.conftest import make_cloud
from tests.integration.runtime import EPOCH, inference_worker, run_trainer

pytestmark = pytest.mark.model_runtime


def seed_like_actions(n, rng, prefix, extra_parameters=None, start=EPOCH):
    """Liked on mobile, not on desktop: a signal only the `device` parameter carries. Event ids
    `<prefix>-<n>` and fixed times: the same holdout and the same model every run."""
    actions = []
    for number in range(n):
        user, item, device = rng.randrange(20), rng.randrange(12), rng.choice(["mobile", "desktop"])
        liked = device == "mobile"
        kind = rng.choice(["rating", "watering", "like"])
        if kind == "rating":  # the label comes from the stars rule; stars never become a feature
            sample = {"action_type": "rating", "parameters": {"stars": 5 if liked else 1, "device": device,
                                                              "time": rng.choice(["friday_evening", "monday_morning"])}}
        elif kind == "watering":
            sample = {"action_type": "watering", "label": int(liked),
                      "parameters": {"device": device, "liters": round(rng.uniform(1, 20), 1),
                                     "soil": {"type": rng.choice(["clay", "loam"]), "moisture": rng.random()},
                                     "sensors": rng.sample(["ph", "temp", "light"], 2), "automated": rng.random() < .5}}
        else:
            sample = {"action_type": "like", "label": int(liked), "parameters": {"device": device}}
        sample.update(user_id=user, item_id="plot-{}".format(item), event_id="{}-{}".format(prefix, number))
        if extra_parameters:
            sample["parameters"].update(extra_parameters(rng))
        actions.append(StoredAction.accept(ActionIn.model_validate(sample), now=start + dt.timedelta(seconds=10 * number)))
    return actions


@pytest.fixture(scope="module")
def featured(moto_endpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("features")
    # Explicit likes and dislikes: the holdout AUC below measures liked-vs-disliked, so no sampled
    # unseen items beside them (NEGATIVE_SAMPLING=always would score those too).
    settings = make_cloud(moto_endpoint, TRAIN_STEPS="300", NEGATIVE_SAMPLING="auto")
    profiles = wiring.profile_store(settings)
    for user in range(20):
        profiles.put("user", user, {"segment": "ab"[user % 2], "age": 20 + user})
    for item in range(12):
        profiles.put("item", "plot-{}".format(item), {"crop": ["wheat", "corn", "rice"][item % 3], "area_ha": item + 1})
    store = wiring.action_store(settings)
    rng = random.Random(11)
    actions = seed_like_actions(600, rng, "seed")
    for start in range(0, len(actions), 100):
        store.put_batch(actions[start:start + 100])
    job_id, result = run_trainer(settings, tmp, TRAINING_MODE="full")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return settings, tmp, job_id, rng


def _features(version):
    return {(f["source"], f["key"]): f["kind"] for f in version.feature_spec}


def test_parameters_and_profiles_become_features_of_the_lineage(featured):
    settings, _, job_id, _ = featured
    state = wiring.state_store(settings)
    version = state.get_version(state.get_job(job_id).version)
    features = _features(version)
    assert {("param", "device"): "id", ("param", "liters"): "raw", ("param", "soil.type"): "id",
            ("param", "soil.moisture"): "raw", ("param", "sensors"): "tags", ("param", "automated"): "id",
            ("param", "time"): "id", ("user", "segment"): "id", ("user", "age"): "raw", ("item", "crop"): "id",
            ("item", "area_ha"): "raw"}.items() <= features.items()
    assert ("param", "stars") not in features  # the rating rule's input is the label, not a feature
    config = aws.client("s3", settings).get_object(Bucket=settings.data_bucket,
                                                   Key=version.s3_prefix + "pipeline.config")["Body"].read().decode()
    assert 'input_names: "p_liters" feature_type: RawFeature' in config
    assert 'input_names: "p_sensors" feature_type: TagFeature' in config
    assert version.metrics["auc"] > 0.8, version.metrics  # the device signal is learnt


@pytest.fixture(scope="module")
def inference(featured):
    settings, tmp, _, _ = featured
    with inference_worker(settings, tmp) as call:
        yield call


def test_serving_reads_the_request_context_as_the_same_features(featured, inference):
    items = ["plot-{}".format(i) for i in range(12)]
    scores = {}
    for device in ("mobile", "desktop"):
        status, body = inference("/predict", {"user_id": 3, "item_ids": items,
                                              "context": {"action_type": "like", "parameters": {"device": device}}})
        assert status == 200, body
        scores[device] = [p["score"] for p in body["predictions"]]
    assert all(m > d for m, d in zip(scores["mobile"], scores["desktop"])), scores
    # Top-level context keys are parameters too; the time can be given.
    status, body = inference("/recommend", {"user_id": 3, "candidate_items": items, "top_k": 3,
                                            "context": {"device": "mobile", "timestamp": "2026-11-27T20:15:00Z"}})
    assert status == 200 and len(body["recommendations"]) == 3, body
    status, body = inference("/recommend", {"user_id": 3, "candidate_items": items, "context": {"timestamp": "soon"}})
    assert status == 400 and body["fields"] == ["context.timestamp"], body


def test_keys_never_seen_are_stored_ignored_by_updates_and_taken_in_by_the_next_full_retrain(featured, tmp_path):
    settings, _, job_id, rng = featured
    state = wiring.state_store(settings)
    first = state.get_version(state.get_job(job_id).version)
    newer = seed_like_actions(120, rng, "newer", start=EPOCH + dt.timedelta(hours=2), extra_parameters=lambda r: {
        "weather": {"rain_mm": round(r.uniform(0, 9), 1), "forecast": r.choice(["storm", "sun"])}})
    wiring.action_store(settings).put_batch(newer)

    job_id, result = run_trainer(settings, tmp_path, TRAINING_MODE="incremental")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    update = state.get_version(state.get_job(job_id).version)
    assert update.lineage == first.lineage and update.feature_spec == first.feature_spec
    stored = [a for key in wiring.action_store(settings).keys() for a in wiring.action_store(settings).read(key)]
    assert sum("weather" in (a.parameters or {}) for a in stored) == 120  # kept with the actions

    job_id, result = run_trainer(settings, tmp_path, TRAINING_MODE="full")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    retrained = state.get_version(state.get_job(job_id).version)
    assert retrained.lineage != first.lineage
    assert {("param", "weather.rain_mm"), ("param", "weather.forecast")} <= set(_features(retrained))
