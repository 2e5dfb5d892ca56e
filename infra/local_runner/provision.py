"""Creating the template's resources in the local cloud, in dependency order.

Physical names are stable across restarts (<stack>-<logical id>, lower-cased), so the restored
state finds its bucket, queues and table again.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Tuple

from .cloud import REGION, LocalCloud
from .template import AppSpec, Resolver, UnresolvedReference, references

log = logging.getLogger("local-cloud")

ACCOUNT = "123456789012"


def _physical_name(stack: str, logical: str, limit: int = 63) -> str:
    return "{}-{}".format(stack, logical).lower()[:limit]


def _camel(node: Any) -> Any:
    """CloudFormation's PascalCase property names -> the ECS API's camelCase."""
    if isinstance(node, list):
        return [_camel(n) for n in node]
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: _camel(v) for k, v in node.items()}
    return node


def _lifecycle_rule(rule: Dict[str, Any]) -> Dict[str, Any]:
    """A CloudFormation lifecycle rule (AWS::S3::Bucket Rule) in the S3 API's shape."""
    tags = [{"Key": t["Key"], "Value": str(t["Value"])} for t in rule.get("TagFilters", [])]
    prefix = rule.get("Prefix", "")
    out: Dict[str, Any] = {"ID": rule.get("Id", ""), "Status": rule.get("Status", "Enabled"),
                           "Filter": {"And": {"Prefix": prefix, "Tags": tags}} if tags else {"Prefix": prefix}}
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])}
    return out


class Provisioner:
    def __init__(self, cloud: LocalCloud, app: AppSpec, stack: str) -> None:
        self.cloud = cloud
        self.app = app
        self.stack = stack
        refs: Dict[str, Any] = {
            "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": stack,
            "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": None,
        }
        refs.update(app.parameters)
        self.resolver = Resolver(refs, {}, app.conditions)

    def run(self) -> Resolver:
        resources = self.app.resources
        pending = list(resources)
        handlers: Dict[str, Callable[[str, Dict[str, Any]], None]] = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::SQS::Queue": self._queue,
            "AWS::DynamoDB::Table": self._table,
            "AWS::ECS::Cluster": self._cluster,
            "AWS::ECS::TaskDefinition": self._task_definition,
            "AWS::IAM::Role": self._role,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::Kinesis::Stream": self._stream,
            "AWS::Serverless::Function": self._named,
            "AWS::Serverless::LayerVersion": self._named,
            "AWS::Serverless::Api": self._named,
        }
        while pending:
            progressed = False
            for logical in list(pending):
                resource = resources[logical]
                deps = [d for d in references(resource.get("Properties", {})) if d in resources and d != logical]
                # Serverless resources refer to each other freely (events, layers); they create nothing here.
                if not resource["Type"].startswith("AWS::Serverless::") and any(d in pending for d in deps):
                    continue
                handler = handlers.get(resource["Type"])
                if handler is None:
                    raise ValueError("{}: the local runner cannot create {}".format(logical, resource["Type"]))
                handler(logical, resource.get("Properties", {}))
                pending.remove(logical)
                progressed = True
            if not progressed:
                raise ValueError("circular references between resources: {}".format(pending))
        return self.resolver

    def _set(self, logical: str, ref: Any, **attrs: Any) -> None:
        self.resolver.refs[logical] = ref
        for name, value in attrs.items():
            self.resolver.attrs[(logical, name)] = value

    def _props(self, props: Dict[str, Any]) -> Dict[str, Any]:
        try:
            return self.resolver.resolve(props)
        except UnresolvedReference as exc:
            raise ValueError("unresolved reference {}".format(exc))

    def _named(self, logical: str, props: Dict[str, Any]) -> None:
        name = _physical_name(self.stack, logical)
        self._set(logical, name, Arn="arn:aws:local:{}:{}:{}".format(REGION, ACCOUNT, name))

    def _log_group(self, logical: str, props: Dict[str, Any]) -> None:
        # The local ECS agent ships task output here, as the awslogs driver does on AWS.
        name = props.get("LogGroupName") or _physical_name(self.stack, logical)
        logs = self.cloud.client("logs")
        if not logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups"):
            logs.create_log_group(logGroupName=name)
        self._set(logical, name, Arn="arn:aws:logs:{}:{}:log-group:{}".format(REGION, ACCOUNT, name))

    def _bucket(self, logical: str, props: Dict[str, Any]) -> None:
        name = props.get("BucketName") or _physical_name(self.stack, logical)
        s3 = self.cloud.client("s3")
        if name not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=name)
        rules = [_lifecycle_rule(rule) for rule in props.get("LifecycleConfiguration", {}).get("Rules", [])]
        if rules:  # stored for the local runner's sweeper (lifecycle.py): moto never runs them
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        self._set(logical, name, Arn="arn:aws:s3:::" + name, DomainName=name + ".s3.amazonaws.com")

    def _queue(self, logical: str, props: Dict[str, Any]) -> None:
        props = self._props(props)
        name = props.get("QueueName") or _physical_name(self.stack, logical, 80)
        attributes: Dict[str, str] = {}
        for key in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "ReceiveMessageWaitTimeSeconds",
                    "MaximumMessageSize"):
            if key in props:
                attributes[key] = str(props[key])
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        sqs = self.cloud.client("sqs")
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self._set(logical, url, Arn=arn, QueueName=name, QueueUrl=url)

    def _stream(self, logical: str, props: Dict[str, Any]) -> None:
        props = self._props(props)
        name = props.get("Name") or _physical_name(self.stack, logical, 128)
        kinesis = self.cloud.client("kinesis")
        if name not in kinesis.list_streams().get("StreamNames", []):
            kinesis.create_stream(StreamName=name, ShardCount=int(props.get("ShardCount", 1)))
            kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        self._set(logical, name, Arn=arn)

    def _table(self, logical: str, props: Dict[str, Any]) -> None:
        props = self._props(props)
        name = props.get("TableName") or _physical_name(self.stack, logical, 255)
        ddb = self.cloud.client("dynamodb")
        if name not in ddb.list_tables()["TableNames"]:
            ddb.create_table(
                TableName=name, AttributeDefinitions=props["AttributeDefinitions"], KeySchema=props["KeySchema"],
                BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
            )
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        self._set(logical, name, Arn=arn)

    def _cluster(self, logical: str, props: Dict[str, Any]) -> None:
        name = props.get("ClusterName") or _physical_name(self.stack, logical)
        arn = self.cloud.client("ecs").create_cluster(clusterName=name)["cluster"]["clusterArn"]
        self._set(logical, name, Arn=arn)

    def _role(self, logical: str, props: Dict[str, Any]) -> None:
        name = props.get("RoleName") or _physical_name(self.stack, logical)
        self._set(logical, name, Arn="arn:aws:iam::{}:role/{}".format(ACCOUNT, name))

    def _task_definition(self, logical: str, props: Dict[str, Any]) -> None:
        props = self._props(props)
        family = props.get("Family") or _physical_name(self.stack, logical, 255)
        containers = _camel(props["ContainerDefinitions"])
        for container in containers:
            container.pop("logConfiguration", None)  # the local ECS agent ships the logs itself
        arn = self.cloud.client("ecs").register_task_definition(
            family=family, containerDefinitions=containers,
            requiresCompatibilities=props.get("RequiresCompatibilities", ["FARGATE"]),
            networkMode=props.get("NetworkMode", "awsvpc"), cpu=str(props.get("Cpu", "1024")),
            memory=str(props.get("Memory", "2048")),
        )["taskDefinition"]["taskDefinitionArn"]
        self._set(logical, arn, Arn=arn, Family=family)


def default_network(cloud: LocalCloud) -> Tuple[List[str], List[str]]:
    """moto's default VPC subnets and security group, for the Fargate RunTask call."""
    ec2 = cloud.client("ec2")
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    groups = [g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]][:1]
    return subnets, groups
