"""What template.yaml grants: each route's auth is the README's, and each function and task gets only
the access it needs (inference reads models/ only; the trainer never writes actions/)."""
import os
import re

import pytest

from infra.local_runner.template import load_template, parse_app
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def template():
    return load_template(os.path.join(ROOT, "template.yaml"))


def _readme_roles():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Who may call what"):text.index("## Serving")]
    return {(m.group(1), m.group(2)): m.group(3)
            for m in re.finditer(r"^\| `(GET|POST|PUT|PATCH|DELETE) ([^`]+)` \| (open|client|admin) \|$", section, re.M)}


def test_every_route_has_the_role_the_readme_names(template):
    declared = {(r.method, r.path): r.auth for r in parse_app(template).routes}
    assert declared == _readme_roles()


def test_client_routes_are_in_a_usage_plan_and_refusals_are_json(template):
    api = template["Resources"]["EasyRecApi"]["Properties"]
    assert api["Auth"]["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    assert {"Throttle", "Quota"} <= set(api["Auth"]["UsagePlan"])
    for kind in ("API_KEY", "MISSING_AUTHENTICATION_TOKEN", "ACCESS_DENIED", "THROTTLED"):
        body = api["GatewayResponses"][kind]["ResponseTemplates"]["application/json"]
        assert '"error"' in body and '"detail"' in body


def _statements(resource):
    for policy in resource["Properties"].get("Policies", []):
        for statement in policy.get("Statement", []) if isinstance(policy, dict) else []:
            yield statement


def _resources(statement):
    found = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return [str(r) for r in found]


def test_inference_reads_model_versions_only(template):
    inference = template["Resources"]["InferenceFunction"]
    assert not any("S3ReadPolicy" in p for p in inference["Properties"]["Policies"] if isinstance(p, dict))
    s3 = [s for s in _statements(inference) if any(a.startswith("s3:") for a in s["Action"])]
    objects = [r for s in s3 if "s3:GetObject" in s["Action"] for r in _resources(s)]
    assert objects and all("/models/*" in r for r in objects)
    listing = [s for s in s3 if "s3:ListBucket" in s["Action"]]
    assert listing and all(s["Condition"]["StringLike"]["s3:prefix"] == ["models/*"] for s in listing)


def test_the_trainer_never_writes_actions_and_gets_a_public_ip_only_when_asked(template):
    role = template["Resources"]["TrainerTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writes = [r for s in role for r in _resources(s) if any(a in s["Action"] for a in ("s3:PutObject", "s3:DeleteObject"))]
    assert writes and not any("actions/" in r or r.endswith("}/*") for r in writes)
    assert template["Parameters"]["TrainingAssignPublicIp"]["Default"] == "DISABLED"


def test_the_launcher_asks_for_a_public_ip_only_when_configured():
    from easyrec_online.control.launcher import EcsTrainingLauncher
    from easyrec_online.core.config import Settings

    for value, expected in (("", "DISABLED"), ("DISABLED", "DISABLED"), ("ENABLED", "ENABLED")):
        settings = Settings.from_env({"TRAINING_SUBNETS": "subnet-1", "TRAINING_ASSIGN_PUBLIC_IP": value})
        assert EcsTrainingLauncher.network(settings)["awsvpcConfiguration"]["assignPublicIp"] == expected


# The calls the ingest consumer makes (ingest/consumer.py, ledger.py, store.py, state/registry.py's
# add_counts_once, a TransactWriteItems of a Put and an Update), by what they reach. IAM checks a
# transaction's items by their own actions, and S3's HeadObject by s3:GetObject.
CONSUMER_NEEDS = {"LedgerTable": {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:GetItem"},
                  "StateTable": {"dynamodb:UpdateItem", "dynamodb:PutItem"},
                  "ActivityTable": {"dynamodb:BatchWriteItem"},
                  "/actions/*": {"s3:PutObject", "s3:GetObject"}}


@pytest.mark.parametrize("function", ["IngestConsumerFunction", "IngestKinesisConsumerFunction",
                                      "IngestKafkaConsumerFunction"])
def test_each_consumer_may_make_every_call_the_consumer_makes(template, function):
    resource = template["Resources"][function]
    granted = {}
    for statement in _statements(resource):
        for target in _resources(statement):
            granted.setdefault(target, set()).update(statement["Action"])
    for target, actions in CONSUMER_NEEDS.items():
        have = set().union(*[a for r, a in granted.items() if target in r] or [set()])
        assert actions <= have, (function, target, actions - have)


def _task_or_function_statements(resource):
    """Statements of a function's Policies, or of a task role's inline policies."""
    yield from _statements(resource)
    for policy in resource["Properties"].get("Policies", []) if resource["Type"] == "AWS::IAM::Role" else []:
        yield from policy.get("PolicyDocument", {}).get("Statement", [])


def test_whoever_reads_objects_may_list_their_prefix_so_a_missing_key_is_a_404(template):
    """Without s3:ListBucket, S3 answers a GetObject or HeadObject of a missing key with 403, not 404:
    the consumer's "is this batch object stored yet?" raised, its whole batch failed and went to the
    dead-letter queue (a Kafka partition stalled), and a reader could not tell "not yet written" from
    "forbidden"."""
    readers = 0
    for name, resource in template["Resources"].items():
        if resource["Type"] not in ("AWS::Serverless::Function", "AWS::IAM::Role"):
            continue
        statements = list(_task_or_function_statements(resource))

        def actions(statement):
            found = statement.get("Action", [])
            return [found] if isinstance(found, str) else found

        def arns(statement):
            found = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            return [r.get("Fn::Sub", "") if isinstance(r, dict) else str(r) for r in found]

        read = {r.split("}/", 1)[1].rstrip("*") for s in statements if "s3:GetObject" in actions(s)
                for r in arns(s) if "}/" in r}
        listed = set()
        for s in statements:
            if "s3:ListBucket" in actions(s):
                prefixes = s.get("Condition", {}).get("StringLike", {}).get("s3:prefix", ["*"])
                listed |= {p.rstrip("*") for p in prefixes}
        for prefix in read:
            readers += 1
            assert "" in listed or prefix in listed, "{} reads {}* but may not list it".format(name, prefix)
    assert readers >= 4


def test_the_trainer_gets_the_longest_stop_timeout_fargate_allows(template):
    """Fargate SIGKILLs 30 s after SIGTERM by default: an update or a cold training still running then
    ended "failed" and counted against the restart policy."""
    (container,) = template["Resources"]["TrainerTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert container["StopTimeout"] == 120
