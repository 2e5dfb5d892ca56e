"""Reading template.yaml: CloudFormation tags, intrinsic functions, and the app's shape.

The runner takes everything from the template: which resources exist, which function serves which
route, each function's runtime, handler, timeout, memory and environment, the SQS event sources,
and the training task definition. Nothing about the app is configured twice.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import yaml

MODEL_RUNTIME_DOCKERFILE = "infra/model-runtime/Dockerfile"
CONTROL_RUNTIME = "python3.12"
MODEL_RUNTIME = "model"  # Python 3.7 + TensorFlow 1.15 (the model-runtime image)

_TAGS = ["Ref", "Condition", "GetAtt", "Sub", "Join", "Select", "Split", "If", "Equals", "Not", "And",
         "Or", "FindInMap", "Base64", "GetAZs", "ImportValue", "Cidr"]


class _CfnLoader(yaml.SafeLoader):
    pass


def _constructor(tag: str) -> Callable:
    key = "Ref" if tag in ("Ref", "Condition") else "Fn::" + tag

    def construct(loader: yaml.Loader, node: yaml.Node) -> Dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in _TAGS:
    _CfnLoader.add_constructor("!" + _tag, _constructor(_tag))


def load_template(path: str) -> Dict[str, Any]:
    with open(path) as f:
        return yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass


class UnresolvedReference(Exception):
    pass


NO_VALUE_MARK = object()


NO_VALUE = "AWS::NoValue"


def evaluate_conditions(template: Dict[str, Any], parameters: Dict[str, Any]) -> Dict[str, bool]:
    """The template's Conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition) for these
    parameter values."""
    declared = template.get("Conditions", {}) or {}
    known: Dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and list(node) == ["Ref"]:
            return parameters.get(node["Ref"], node["Ref"])
        return node

    def truth(node: Any, seen: Tuple[str, ...] = ()) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Fn::Equals":
                return str(value(arg[0])) == str(value(arg[1]))
            if key == "Fn::Not":
                return not truth(arg[0], seen)
            if key == "Fn::And":
                return all(truth(a, seen) for a in arg)
            if key == "Fn::Or":
                return any(truth(a, seen) for a in arg)
            if key in ("Condition", "Ref") and isinstance(arg, str) and arg in declared:
                return named(arg, seen)
        raise ValueError("unsupported condition {!r}".format(node))

    def named(name: str, seen: Tuple[str, ...] = ()) -> bool:
        if name in seen:
            raise ValueError("circular conditions: {}".format(" -> ".join(seen + (name,))))
        if name not in known:
            known[name] = truth(declared[name], seen + (name,))
        return known[name]

    for name in declared:
        named(name)
    return known


def active_resources(template: Dict[str, Any], conditions: Dict[str, bool]) -> Dict[str, Any]:
    """The resources CloudFormation would create: those without a Condition or whose Condition holds."""
    return {name: resource for name, resource in (template.get("Resources") or {}).items()
            if conditions.get(resource.get("Condition", ""), True)}


class Resolver:
    """Evaluates intrinsic functions against known references, attributes and conditions."""

    def __init__(self, refs: Dict[str, Any], attrs: Dict[Tuple[str, str], Any],
                 conditions: Optional[Dict[str, bool]] = None) -> None:
        self.refs = refs
        self.attrs = attrs
        self.conditions = conditions or {}

    def resolve(self, node: Any) -> Any:
        resolved = self._resolve(node)
        return None if resolved is NO_VALUE_MARK else resolved

    def _resolve(self, node: Any) -> Any:
        # AWS::NoValue removes the list item or property it stands for.
        if isinstance(node, list):
            return [r for r in (self._resolve(n) for n in node) if r is not NO_VALUE_MARK]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref" and value == NO_VALUE:
                return NO_VALUE_MARK
            if key == "Fn::If":
                name, when_true, when_false = value
                if name not in self.conditions:
                    raise UnresolvedReference("condition " + name)
                return self._resolve(when_true if self.conditions[name] else when_false)
            if key == "Ref":
                if value not in self.refs:
                    raise UnresolvedReference(value)
                return self.refs[value]
            if key == "Fn::GetAtt":
                logical, attr = value if isinstance(value, list) else value.split(".", 1)
                if (logical, attr) not in self.attrs:
                    raise UnresolvedReference("{}.{}".format(logical, attr))
                return self.attrs[(logical, attr)]
            if key == "Fn::Join":
                sep, items = value
                resolved = self.resolve(items)
                flat: List[Any] = []
                for item in resolved:
                    flat.extend(item if isinstance(item, list) else [item])
                return sep.join(str(i) for i in flat)
            if key == "Fn::Sub":
                text, extra = (value, {}) if isinstance(value, str) else (value[0], self.resolve(value[1]))
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub_var(m.group(1), extra)), text)
            if key == "Fn::Select":
                index, items = value
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = value
                return str(self.resolve(text)).split(sep)
        resolved = {k: self._resolve(v) for k, v in node.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE_MARK}

    def _sub_var(self, name: str, extra: Dict[str, Any]) -> Any:
        if name in extra:
            return extra[name]
        if "." in name:
            logical, attr = name.split(".", 1)
            if (logical, attr) in self.attrs:
                return self.attrs[(logical, attr)]
            raise UnresolvedReference(name)
        if name in self.refs:
            return self.refs[name]
        raise UnresolvedReference(name)


def references(node: Any) -> List[str]:
    """Logical ids a template fragment refers to (to order resource creation)."""
    found: List[str] = []
    if isinstance(node, list):
        for n in node:
            found.extend(references(n))
    elif isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.append(value)
            elif key == "Fn::GetAtt":
                found.append(value[0] if isinstance(value, list) else value.split(".", 1)[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found.extend(m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", text))
                if not isinstance(value, str):
                    found.extend(references(value[1]))
            else:
                found.extend(references(value))
    return found


@dataclass
class Route:
    method: str
    path: str  # as declared, e.g. /users/{id}
    function: str
    auth: str = "open"  # open | client (Auth: ApiKeyRequired) | admin (Auth: Authorizer: AWS_IAM)

    def pattern(self) -> "re.Pattern[str]":
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\+\\\}", r"(?P<\1>.+)", re.escape(self.path))
        regex = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", regex)
        return re.compile("^" + regex + "$")


@dataclass
class SqsSource:
    function: str
    queue: str  # logical id
    batch_size: int
    window_s: float
    report_failures: bool


@dataclass
class KinesisSource:
    function: str
    stream: str  # logical id
    batch_size: int
    starting_position: str
    max_retries: int
    on_failure: Optional[str]  # logical id of the on-failure destination queue


@dataclass
class KafkaSource:
    """An MSK (or self-managed Kafka) event source. Locally the runner's broker stands in for the
    cluster: its records come from the function's KAFKA_BOOTSTRAP_SERVERS."""

    function: str
    topics: List[str]  # unresolved
    batch_size: int
    window_s: float
    starting_position: str
    cluster: Any  # unresolved (the MSK cluster ARN)


@dataclass
class ScheduleSource:
    """An EventBridge schedule (SAM `Schedule` event): rate(N unit) expressions."""

    function: str
    rate_s: float
    name: str


@dataclass
class EventRuleSource:
    """An EventBridge rule (SAM `EventBridgeRule` event); its pattern is unresolved."""

    function: str
    pattern: Dict[str, Any]
    name: str


_RATE = re.compile(r"^rate\((\d+) (second|minute|hour|day)s?\)$")
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def schedule_rate_s(expression: str) -> float:
    found = _RATE.match(expression.strip())
    if not found:
        raise ValueError("the local runner plays rate(N unit) schedules, not {!r}".format(expression))
    return float(found.group(1)) * _UNIT_S[found.group(2)]


@dataclass
class FunctionSpec:
    name: str
    runtime: str  # CONTROL_RUNTIME or MODEL_RUNTIME
    code_dir: str
    handler: str
    timeout_s: int
    memory_mb: int
    environment: Dict[str, Any] = field(default_factory=dict)  # unresolved


@dataclass
class TaskSpec:
    name: str  # logical id of the task definition
    code_dir: str
    container: str
    argv: List[str]
    environment: Dict[str, Any] = field(default_factory=dict)  # unresolved
    # awslogs options (unresolved): where ECS would ship the container's output
    log_options: Dict[str, Any] = field(default_factory=dict)


@dataclass
class AppSpec:
    template: Dict[str, Any]
    functions: Dict[str, FunctionSpec]
    routes: List[Route]
    sqs_sources: List[SqsSource]
    tasks: Dict[str, TaskSpec]
    parameters: Dict[str, Any]  # values, as CloudFormation hands them over (strings)
    conditions: Dict[str, bool] = field(default_factory=dict)
    kinesis_sources: List[KinesisSource] = field(default_factory=list)
    kafka_sources: List[KafkaSource] = field(default_factory=list)
    schedules: List[ScheduleSource] = field(default_factory=list)
    event_rules: List[EventRuleSource] = field(default_factory=list)

    @property
    def resources(self) -> Dict[str, Any]:
        """The resources that exist for these parameter values (Conditions applied)."""
        return active_resources(self.template, self.conditions)


def route_auth(event_properties: Dict[str, Any]) -> str:
    """Who may call an Api event's route, as its `Auth` says: admin (IAM), client (an API key) or open."""
    auth = event_properties.get("Auth") or {}
    if auth.get("Authorizer") == "AWS_IAM":
        return "admin"
    if auth.get("ApiKeyRequired"):
        return "client"
    return "open"


def _function_runtime(props: Dict[str, Any], meta: Dict[str, Any], name: str) -> Tuple[str, str, str]:
    """(runtime, code_dir, handler) of a function, read the way SAM reads it."""
    if props.get("PackageType") == "Image":
        if meta.get("Dockerfile") != MODEL_RUNTIME_DOCKERFILE:
            raise ValueError("{}: image functions must be built from {}".format(name, MODEL_RUNTIME_DOCKERFILE))
        code_dir = meta.get("DockerBuildArgs", {}).get("FUNCTION_DIR")
        command = props.get("ImageConfig", {}).get("Command", [])
        if not code_dir or not command:
            raise ValueError("{}: needs Metadata.DockerBuildArgs.FUNCTION_DIR and ImageConfig.Command".format(name))
        return MODEL_RUNTIME, code_dir, command[0]
    runtime = props.get("Runtime")
    if runtime != CONTROL_RUNTIME:
        raise ValueError("{}: runtime {!r} is not one this project runs ({} or the model-runtime image)".format(
            name, runtime, CONTROL_RUNTIME))
    return runtime, props["CodeUri"].rstrip("/"), props["Handler"]


def parse_app(template: Dict[str, Any], parameter_overrides: Optional[Dict[str, Any]] = None) -> AppSpec:
    parameters = parameter_values(template, parameter_overrides)
    conditions = evaluate_conditions(template, parameters)
    globals_fn = template.get("Globals", {}).get("Function", {})
    functions: Dict[str, FunctionSpec] = {}
    routes: List[Route] = []
    sources: List[SqsSource] = []
    kinesis_sources: List[KinesisSource] = []
    kafka_sources: List[KafkaSource] = []
    tasks: Dict[str, TaskSpec] = {}
    schedules: List[ScheduleSource] = []
    event_rules: List[EventRuleSource] = []
    for name, resource in active_resources(template, conditions).items():
        kind = resource.get("Type")
        props = resource.get("Properties", {})
        meta = resource.get("Metadata", {})
        if kind == "AWS::Serverless::Function":
            runtime, code_dir, handler = _function_runtime(props, meta, name)
            env = dict(globals_fn.get("Environment", {}).get("Variables", {}))
            env.update(props.get("Environment", {}).get("Variables", {}))
            functions[name] = FunctionSpec(
                name=name, runtime=runtime, code_dir=code_dir, handler=handler,
                timeout_s=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                memory_mb=int(props.get("MemorySize", globals_fn.get("MemorySize", 128))),
                environment=env,
            )
            for event_name, event in props.get("Events", {}).items():
                eprops = event.get("Properties", {})
                if event.get("Type") == "Api":
                    routes.append(Route(eprops["Method"].upper(), eprops["Path"], name, route_auth(eprops)))
                elif event.get("Type") == "SQS":
                    queue = references(eprops["Queue"])[0]
                    sources.append(SqsSource(
                        function=name, queue=queue, batch_size=int(eprops.get("BatchSize", 10)),
                        window_s=float(eprops.get("MaximumBatchingWindowInSeconds", 0)),
                        report_failures="ReportBatchItemFailures" in eprops.get("FunctionResponseTypes", []),
                    ))
                elif event.get("Type") == "Kinesis":
                    on_failure = (eprops.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
                    kinesis_sources.append(KinesisSource(
                        function=name, stream=references(eprops["Stream"])[0],
                        batch_size=int(eprops.get("BatchSize", 100)),
                        starting_position=eprops.get("StartingPosition", "TRIM_HORIZON"),
                        max_retries=int(eprops.get("MaximumRetryAttempts", 3)),
                        on_failure=references(on_failure)[0] if on_failure else None,
                    ))
                elif event.get("Type") == "Schedule":
                    schedules.append(ScheduleSource(name, schedule_rate_s(eprops["Schedule"]), event_name))
                elif event.get("Type") == "EventBridgeRule":
                    event_rules.append(EventRuleSource(name, eprops["Pattern"], event_name))
                elif event.get("Type") in ("MSK", "SelfManagedKafka"):
                    kafka_sources.append(KafkaSource(
                        function=name, topics=eprops.get("Topics", []), batch_size=int(eprops.get("BatchSize", 100)),
                        window_s=float(eprops.get("MaximumBatchingWindowInSeconds", 0.5)),
                        starting_position=eprops.get("StartingPosition", "TRIM_HORIZON"),
                        cluster=eprops.get("Stream", "self-managed"),
                    ))
        elif kind == "AWS::ECS::TaskDefinition":
            code_dir = meta.get("DockerBuildArgs", {}).get("FUNCTION_DIR")
            if meta.get("Dockerfile") != MODEL_RUNTIME_DOCKERFILE or not code_dir:
                raise ValueError("{}: task definitions must name the model-runtime Dockerfile and FUNCTION_DIR".format(name))
            container = props["ContainerDefinitions"][0]
            tasks[name] = TaskSpec(
                name=name, code_dir=code_dir, container=container["Name"],
                argv=list(container.get("EntryPoint", [])) + list(container.get("Command", [])),
                environment={e["Name"]: e["Value"] for e in container.get("Environment", [])},
                log_options=dict((container.get("LogConfiguration") or {}).get("Options") or {}),
            )
    return AppSpec(template, functions, routes, sources, tasks, parameters, conditions, kinesis_sources, kafka_sources,
                   schedules, event_rules)


def parameter_values(template: Dict[str, Any], overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    values: Dict[str, Any] = {}
    for name, spec in template.get("Parameters", {}).items():
        value = (overrides or {}).get(name, spec.get("Default", ""))
        # CloudFormation hands every parameter over as a string (lists as lists of strings).
        if spec.get("Type") == "CommaDelimitedList":
            value = [v for v in value.split(",") if v] if isinstance(value, str) else [str(v) for v in value]
        else:
            value = str(value)
        values[name] = value
    return values


def repo_path(root: str, relative: str) -> str:
    return os.path.normpath(os.path.join(root, relative))
