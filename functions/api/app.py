"""API function (control plane, Python 3.12): routes only; the logic is in easyrec_online.control."""
from aws_lambda_powertools import Logger
from chalice import Chalice

from easyrec_online import wiring
from easyrec_online.control import openapi
from easyrec_online.control.export import ExportRequest, ModelExporter
from easyrec_online.control.ingest import IngestService
from easyrec_online.control.logs import TrainingLogs
from easyrec_online.control.models import (
    RollbackRequest,
    health,
    list_updates,
    model_info,
    parse_limit,
    rollback,
    unpin,
)
from easyrec_online.control.profiles import get_profile, put_profile, put_profiles
from easyrec_online.control.streaming import ConsumeRequest, StreamingService
from easyrec_online.control.supervisor import RestartPolicyPatch, TrainingSupervisor, patch_policy
from easyrec_online.control.training import TrainingService, TrainingStartRequest
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.core.http import (
    JSON_CONTENT_TYPES,
    json_errors,
    json_response,
    json_route,
    parse_json_body,
    validate,
)
from easyrec_online.experiments.control import ExperimentService
from easyrec_online.experiments.definition import ConcludeIn, ExperimentIn
from easyrec_online.ingest.actions import AddDataRequest

logger = Logger(service="api")
app = Chalice(app_name="easyrec-online-api")
app.register_middleware(json_errors, "http")

settings = Settings.from_env()
state = wiring.state_store(settings)
ingest = IngestService(settings, wiring.action_publisher(settings), wiring.activity_store(settings))
training = TrainingService(state, wiring.training_launcher(settings))
profiles = wiring.profile_store(settings)
exporter = ModelExporter(settings, state, aws.client("s3", settings))
supervisor = TrainingSupervisor(settings, state, training)
logs = TrainingLogs(settings, state, aws.client("logs", settings))
experiments = ExperimentService(settings, state, wiring.experiment_definitions(settings), wiring.experiment_log(settings))
streaming = StreamingService(settings, aws.client("sqs", settings), state, wiring.consumer_sinks(settings))


def _json_body():
    return parse_json_body(app.current_request.raw_body)


def _optional_json_body():
    """For endpoints whose body may be left out (the seed's calls send none)."""
    return _json_body() if app.current_request.raw_body else {}


@app.route("/health", methods=["GET"])
@json_route
def get_health():
    return health(settings, state)


@app.route("/openapi.json", methods=["GET"])
@json_route
def get_openapi():
    return openapi.built()


@app.route("/model/info", methods=["GET"])
@json_route
def get_model_info():
    return model_info(state)


@app.route("/online/data/add", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def add_data():
    accepted = ingest.add(validate(AddDataRequest, _json_body()))
    _keep_trainer_running(supervisor.maybe_ensure)
    return accepted


def _keep_trainer_running(ensure):
    try:
        ensure()
    except Exception:  # noqa: BLE001 - accepted actions stay accepted; the next call tries again
        logger.exception("could not ensure the continuous trainer")


@app.route("/online/training/start", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def start_training():
    body = _optional_json_body()
    return json_response(training.start(validate(TrainingStartRequest, body).mode), status=202)


@app.route("/model/rollback", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def rollback_model():
    return rollback(state, validate(RollbackRequest, _json_body()))


@app.route("/model/unpin", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def unpin_model():
    return unpin(state)


@app.route("/online/training/status", methods=["GET"])
@json_route
def training_status():
    _keep_trainer_running(supervisor.ensure)
    return supervisor.status()


@app.route("/users/{user_id}", methods=["PUT"], content_types=JSON_CONTENT_TYPES)
@json_route
def put_user(user_id):
    return put_profile(profiles, "user", user_id, _json_body())


@app.route("/users", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def put_users():
    return put_profiles(profiles, "user", _json_body())


@app.route("/users/{user_id}", methods=["GET"])
@json_route
def get_user(user_id):
    return get_profile(profiles, "user", user_id)


@app.route("/items/{item_id}", methods=["PUT"], content_types=JSON_CONTENT_TYPES)
@json_route
def put_item(item_id):
    return put_profile(profiles, "item", item_id, _json_body())


@app.route("/items", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def put_items():
    return put_profiles(profiles, "item", _json_body())


@app.route("/items/{item_id}", methods=["GET"])
@json_route
def get_item(item_id):
    return get_profile(profiles, "item", item_id)


@app.route("/model/export", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def export_model():
    body = _optional_json_body()
    return exporter.export(validate(ExportRequest, body))


@app.route("/online/updates/list", methods=["GET"])
@json_route
def get_updates():
    query = app.current_request.query_params or {}
    return list_updates(state, parse_limit(query.get("limit")), query.get("lineage") or None)


@app.route("/online/training/stop", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def stop_training():
    return training.stop()


@app.route("/online/training/restart-policy", methods=["PATCH"], content_types=JSON_CONTENT_TYPES)
@json_route
def patch_restart_policy():
    return patch_policy(state, validate(RestartPolicyPatch, _json_body()))


@app.route("/online/training/logs", methods=["GET"])
@json_route
def training_logs():
    query = app.current_request.query_params or {}
    return logs.tail(query.get("lines"), query.get("job_id"))


@app.route("/online/streaming/status", methods=["GET"])
@json_route
def streaming_status():
    return streaming.status()


@app.route("/online/streaming/consume", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def streaming_consume():
    body = _optional_json_body()
    return streaming.consume(validate(ConsumeRequest, body))


@app.route("/experiments", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def create_experiment():
    return json_response(experiments.create(validate(ExperimentIn, _json_body())), status=201)


@app.route("/experiments", methods=["GET"])
@json_route
def list_experiments():
    return experiments.list()


@app.route("/experiments/{experiment_id}", methods=["GET"])
@json_route
def get_experiment(experiment_id):
    return experiments.get(experiment_id)


@app.route("/experiments/{experiment_id}/stop", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def stop_experiment(experiment_id):
    return experiments.stop(experiment_id)


@app.route("/experiments/{experiment_id}/conclude", methods=["POST"], content_types=JSON_CONTENT_TYPES)
@json_route
def conclude_experiment(experiment_id):
    return experiments.conclude(experiment_id, validate(ConcludeIn, _optional_json_body()))
