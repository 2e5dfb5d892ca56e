"""Inference function (model runtime, Python 3.7 + TensorFlow 1.15): /recommend and /predict.

TensorFlow is imported at module load so a warm container pays for it once, at cold start.
"""
import tensorflow  # noqa: F401  (cold-start cost paid here, not on the first request)
from aws_lambda_powertools import Logger
from chalice import Chalice

from easyrec_online import wiring
from easyrec_online.artifacts.scorer import SavedModelScorer
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.core.http import JSON_CONTENT_TYPES, json_errors, json_route, parse_json_body, validate
from easyrec_online.serving.arms import ArmServing
from easyrec_online.serving.cache import ModelCache
from easyrec_online.serving.service import PredictRequest, RecommendRequest, ScoringService
from easyrec_online.state.activity import CachedActivity
from easyrec_online.state.profiles import CachedProfiles

logger = Logger(service="inference")
app = Chalice(app_name="easyrec-online-inference")
app.register_middleware(json_errors, "http")

settings = Settings.from_env()
state = wiring.state_store(settings)
models = ModelCache(settings, state, aws.client("s3", settings), load=SavedModelScorer)
arms = ArmServing(wiring.running_experiments(settings), models, state, wiring.experiment_log(settings),
                  settings.experiment_refresh_ms / 1000.0)
scoring = ScoringService(settings, models, CachedProfiles(wiring.profile_store(settings), settings.profile_cache_ttl_s),
                         CachedActivity(wiring.activity_store(settings), settings.activity_cache_ttl_ms / 1000.0), arms)


@app.route("/recommend", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def recommend():
    return scoring.recommend(validate(RecommendRequest, parse_json_body(app.current_request.raw_body)))


@app.route("/predict", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def predict():
    return scoring.predict(validate(PredictRequest, parse_json_body(app.current_request.raw_body)))
