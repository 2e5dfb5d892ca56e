import os

import pytest

from infra.local_runner.template import (
    CONTROL_RUNTIME,
    MODEL_RUNTIME,
    Resolver,
    UnresolvedReference,
    load_template,
    parameter_values,
    parse_app,
    references,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SEED_ENDPOINTS = {
    ("POST", "/recommend"), ("POST", "/predict"), ("GET", "/health"), ("GET", "/model/info"),
    ("POST", "/model/export"), ("POST", "/online/data/add"), ("GET", "/online/training/status"),
    ("POST", "/online/training/start"), ("POST", "/online/training/stop"),
    ("PATCH", "/online/training/restart-policy"), ("GET", "/online/training/logs"),
    ("GET", "/online/updates/list"), ("GET", "/online/streaming/status"), ("POST", "/online/streaming/consume"),
}


@pytest.fixture(scope="module")
def app():
    return parse_app(load_template(os.path.join(ROOT, "template.yaml")))


EXTENSIONS = {("POST", "/model/rollback"), ("PUT", "/users/{user_id}"), ("GET", "/users/{user_id}"),
              ("PUT", "/items/{item_id}"), ("GET", "/items/{item_id}"), ("POST", "/users"), ("POST", "/items"),
              ("POST", "/model/unpin"), ("POST", "/experiments"), ("GET", "/experiments"),
              ("GET", "/experiments/{experiment_id}"), ("POST", "/experiments/{experiment_id}/stop"),
              ("POST", "/experiments/{experiment_id}/conclude"), ("GET", "/openapi.json")}


def test_every_seed_endpoint_is_declared_once(app):
    declared = [(r.method, r.path) for r in app.routes]
    assert set(declared) == SEED_ENDPOINTS | EXTENSIONS and len(declared) == len(set(declared))


def test_the_supervisor_runs_on_a_schedule_and_when_a_trainer_task_stops(app):
    assert [(s.function, s.rate_s) for s in app.schedules] == [("SupervisorFunction", 60.0)]
    (rule,) = app.event_rules
    assert rule.function == "SupervisorFunction" and rule.pattern["detail"]["lastStatus"] == ["STOPPED"]
    assert app.parameters["ContinuousTraining"] == "true"  # learning is on by default


def test_event_patterns_match_as_eventbridge_does():
    from infra.local_runner.event_sources import matches

    pattern = {"source": ["aws.ecs"], "detail": {"lastStatus": ["STOPPED"]}}
    assert matches(pattern, {"source": "aws.ecs", "detail": {"lastStatus": "STOPPED", "x": 1}, "id": "1"})
    assert not matches(pattern, {"source": "aws.ecs", "detail": {"lastStatus": "RUNNING"}})
    assert not matches(pattern, {"source": "aws.s3", "detail": {"lastStatus": "STOPPED"}})


def test_each_function_has_one_runtime_and_existing_code(app):
    runtimes = {f.name: f.runtime for f in app.functions.values()}
    assert runtimes == {"ApiFunction": CONTROL_RUNTIME, "IngestConsumerFunction": CONTROL_RUNTIME,  # default: sqs
                        "InferenceFunction": MODEL_RUNTIME, "SupervisorFunction": CONTROL_RUNTIME}
    for spec in app.functions.values():
        module = spec.handler.rsplit(".", 1)[0]
        assert os.path.exists(os.path.join(ROOT, spec.code_dir, module + ".py")), spec
    inference = app.functions["InferenceFunction"]
    assert inference.memory_mb == 2048 and inference.environment["DATA_BUCKET"] == {"Ref": "DataBucket"}


def test_consumer_and_training_task(app):
    (source,) = app.sqs_sources
    assert source.function == "IngestConsumerFunction" and source.queue == "ActionsQueue" and source.report_failures
    task = app.tasks["TrainerTaskDefinition"]
    assert task.argv == ["python", "task.py"] and os.path.exists(os.path.join(ROOT, task.code_dir, "task.py"))


def test_resolver_handles_the_intrinsics_the_template_uses():
    r = Resolver({"Bucket": "b", "AWS::Region": "us-east-1", "Subnets": ["s1", "s2"]}, {("Bucket", "Arn"): "arn:b"})
    assert r.resolve({"Fn::Sub": "${Bucket.Arn}/*"}) == "arn:b/*"
    assert r.resolve({"Fn::Join": [",", {"Ref": "Subnets"}]}) == "s1,s2"
    assert r.resolve({"Fn::Sub": ["${X}-${AWS::Region}", {"X": {"Ref": "Bucket"}}]}) == "b-us-east-1"
    with pytest.raises(UnresolvedReference):
        r.resolve({"Ref": "Missing"})
    assert sorted(references({"a": {"Fn::Sub": "${Bucket.Arn}"}, "b": [{"Ref": "T"}]})) == ["Bucket", "T"]


def test_parameters_are_strings_like_cloudformation_gives_them():
    template = {"Parameters": {"N": {"Type": "Number", "Default": 5}, "L": {"Type": "CommaDelimitedList", "Default": ""}}}
    assert parameter_values(template) == {"N": "5", "L": []}
    assert parameter_values(template, {"L": "a,b"})["L"] == ["a", "b"]


@pytest.mark.parametrize("transport, consumer, kinds", [
    ("sqs", "IngestConsumerFunction", ("sqs",)),
    ("kinesis", "IngestKinesisConsumerFunction", ("kinesis",)),
    ("kafka", "IngestKafkaConsumerFunction", ("kafka",)),
])
def test_stream_transport_selects_one_consumer_and_its_event_source(transport, consumer, kinds):
    app = parse_app(load_template(os.path.join(ROOT, "template.yaml")), {"StreamTransport": transport})
    consumers = sorted(name for name in app.functions if name.startswith("Ingest"))
    assert consumers == [consumer]
    sources = {"sqs": app.sqs_sources, "kinesis": app.kinesis_sources, "kafka": app.kafka_sources}
    assert {k for k, v in sources.items() if v} == set(kinds)
    assert all(s.function == consumer for s in sources[transport])
    assert ("ActionsStream" in app.resources) == (transport == "kinesis")
    if transport == "kinesis":
        (source,) = app.kinesis_sources
        assert source.stream == "ActionsStream" and source.on_failure == "ActionsDeadLetterQueue"
    env = app.functions["ApiFunction"].environment
    resolver = Resolver(dict(app.parameters, ActionsStream="stream-name", DataBucket="b", StateTable="s",
                             ProfilesTable="p", ActivityTable="act", LedgerTable="led", ExperimentsTable="exp", ActionsQueue="q", ActionsDeadLetterQueue="d",
                             TrainingCluster="c", TrainerTaskDefinition="t", TrainerLogGroup="g"),
                        {}, app.conditions)
    resolved = resolver.resolve(env)
    assert resolved["STREAM_TRANSPORT"] == transport
    assert resolved["ACTIONS_STREAM_NAME"] == ("stream-name" if transport == "kinesis" else "")


def test_conditions_and_if_with_no_value():
    template = {"Parameters": {"Mode": {"Type": "String", "Default": "a"}},
                "Conditions": {"IsA": {"Fn::Equals": [{"Ref": "Mode"}, "a"]},
                               "NotA": {"Fn::Not": [{"Condition": "IsA"}]},
                               "Both": {"Fn::And": [{"Condition": "IsA"}, {"Fn::Or": [{"Condition": "NotA"},
                                                                                        {"Fn::Equals": ["x", "x"]}]}]}}}
    from infra.local_runner.template import evaluate_conditions
    assert evaluate_conditions(template, parameter_values(template)) == {"IsA": True, "NotA": False, "Both": True}
    assert evaluate_conditions(template, parameter_values(template, {"Mode": "b"}))["NotA"] is True
    r = Resolver({"X": "x"}, {}, {"IsA": False})
    node = {"List": [1, {"Fn::If": ["IsA", 2, {"Ref": "AWS::NoValue"}]}], "Key": {"Fn::If": ["IsA", 1, {"Ref": "AWS::NoValue"}]},
            "Other": {"Fn::If": ["IsA", 1, {"Ref": "X"}]}}
    assert r.resolve(node) == {"List": [1], "Other": "x"}
