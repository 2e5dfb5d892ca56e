"""`make run`: the whole service on one machine, from template.yaml, without Docker or AWS.

  moto (durable)  <- resources the template declares, state restored from .local/state
  functions       <- one warm worker pool per function, in the function's runtime
  API Gateway     <- http://127.0.0.1:5000, the template's routes as REST proxy events
  SQS/Kinesis/Kafka -> Lambda <- event source mappings (partial batch failures; commit after success)
  Kafka (MSK)     <- a real Kafka-protocol broker (Tansu) when StreamTransport=kafka
  ECS RunTask     <- training tasks run as model-runtime processes
  S3 lifecycle    <- the buckets' tag expiry rules, played sooner (lifecycle.py)

Ctrl-C (or SIGTERM) stops everything it started.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from easyrec_online.core.config import Settings
from easyrec_online.ingest.kafka import client_config as kafka_client_config

from .cloud import REGION, LocalCloud
from .event_sources import EcsAgent, EventBus, KafkaPoller, KinesisPoller, SchedulePoller, SqsPoller
from .gateway import Gateway, Keys
from .kafka_broker import LocalKafkaBroker
from .leftovers import marker_env, stop_leftovers
from .lifecycle import LifecycleSweeper
from .provision import Provisioner, default_network
from .template import CONTROL_RUNTIME, MODEL_RUNTIME, load_template, parse_app
from .workers import FunctionPool, console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
log = logging.getLogger("runner")


def _parse_env(pairs: List[str], flag: str = "--env") -> Dict[str, str]:
    out: Dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit("{} takes KEY=VALUE, got {!r}".format(flag, pair))
        out[key] = value
    return out


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="local_runner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", default=os.path.join(ROOT, "template.yaml"))
    p.add_argument("--host", default=os.environ.get("LOCAL_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_PORT", "5000")),
                   help="port of the API (0 picks a free one: see --ready-file)")
    p.add_argument("--cloud-port", type=int, default=int(os.environ.get("LOCAL_CLOUD_PORT", "4567")),
                   help="port of the moto server (0 picks a free one)")
    p.add_argument("--state-dir", default=os.environ.get("LOCAL_STATE_DIR", os.path.join(ROOT, ".local", "state")))
    p.add_argument("--stack", default="easyrec-online")
    p.add_argument("--control-python", default=os.path.join(ROOT, ".venv", "bin", "python"))
    p.add_argument("--model-python", default=os.path.join(ROOT, ".venv-model", "bin", "python"))
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="environment override for every function and task (repeatable)")
    p.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE",
                   help="template parameter override, as sam deploy --parameter-overrides (repeatable), "
                        "e.g. StreamTransport=kafka; also LOCAL_PARAMETERS='A=1 B=2'")
    p.add_argument("--max-workers", type=int, default=2, help="concurrent warm workers per function")
    p.add_argument("--ready-file", default=None,
                   help="once serving, write {\"url\", \"cloud_url\", \"pid\"} here (JSON): where a caller that "
                        "asked for port 0 finds the ports the system gave")
    args = p.parse_args(argv)
    args.parameter = os.environ.get("LOCAL_PARAMETERS", "").split() + args.parameter
    return args


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class LocalRunner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings = Settings.from_env(dict(os.environ, **_parse_env(args.env)))
        if args.host not in LOOPBACK and not (self.settings.client_keys or self.settings.admin_keys):
            raise SystemExit("refusing to serve on {} without API keys: set API_KEYS and ADMIN_API_KEYS "
                             "(x-api-key), or serve on 127.0.0.1".format(args.host))
        self.cloud = LocalCloud(os.path.join(args.state_dir, "cloud"), port=args.cloud_port)
        self.pools: Dict[str, FunctionPool] = {}
        self.pollers: List[Any] = []
        self.kafka_broker: Optional[LocalKafkaBroker] = None
        self.agent: Optional[EcsAgent] = None
        self.gateway: Optional[Gateway] = None
        self.lifecycle: Optional[LifecycleSweeper] = None

    def _python(self, runtime: str) -> str:
        path = self.args.control_python if runtime == CONTROL_RUNTIME else self.args.model_python
        if not os.path.exists(path):
            raise SystemExit("{} runtime interpreter {} is missing: run `make setup`".format(runtime, path))
        return path

    def start(self) -> None:
        started = time.monotonic()
        template = load_template(self.args.template)
        overrides = _parse_env(self.args.parameter, "--parameter")
        stop_leftovers(self.args.state_dir)  # before the cloud serves: none of them may write into it
        self.cloud.start()
        subnets, groups = default_network(self.cloud)
        overrides.update({"TrainingSubnets": ",".join(subnets), "TrainingSecurityGroups": ",".join(groups)})
        if parse_app(template, overrides).kafka_sources and not overrides.get("KafkaBootstrapServers"):
            # No Kafka named: the runner's own broker stands in for the MSK cluster.
            self.kafka_broker = LocalKafkaBroker(log=None, env=marker_env(self.args.state_dir)).start()
            overrides.update({"KafkaBootstrapServers": self.kafka_broker.bootstrap_servers,
                              "KafkaSecurityProtocol": "PLAINTEXT"})
            console("runner", "Kafka broker (Tansu) on {}".format(self.kafka_broker.bootstrap_servers))
        app = parse_app(template, overrides)
        resolver = Provisioner(self.cloud, app, self.args.stack).run()
        restored = self.cloud.restore()
        log.info("restored from %s: %s", self.cloud.state_dir, restored)
        s3 = self.cloud.client("s3")
        self.lifecycle = LifecycleSweeper(s3, [b["Name"] for b in s3.list_buckets().get("Buckets", [])]).start()

        base_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": os.path.join(ROOT, "shared"),
            "AWS_ENDPOINT_URL": self.cloud.endpoint_url, "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
            "POWERTOOLS_TRACE_DISABLED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
            **marker_env(self.args.state_dir),  # so that a runner after a kill -9 finds its leftovers
        }
        # Paths the template sets for AWS (/tmp) live under the state folder locally.
        local_overrides = {"MODEL_CACHE_DIR": os.path.join(self.args.state_dir, "model-cache")}
        local_overrides.update(_parse_env(self.args.env))

        for spec in app.functions.values():
            env = dict(base_env)
            env.update({k: str(v) for k, v in resolver.resolve(spec.environment).items()})
            env.update({
                "AWS_LAMBDA_FUNCTION_NAME": spec.name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
                "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s), "POWERTOOLS_SERVICE_NAME": spec.name,
            })
            env.update(local_overrides)
            self.pools[spec.name] = FunctionPool(
                spec.name, self._python(spec.runtime), os.path.join(ROOT, spec.code_dir), spec.handler, env,
                timeout_s=spec.timeout_s, max_workers=self.args.max_workers if spec.runtime != MODEL_RUNTIME else 1,
            )
        self._prewarm()

        for source in app.sqs_sources:
            poller = SqsPoller(
                self.cloud.client("sqs"), resolver.refs[source.queue], resolver.attrs[(source.queue, "Arn")],
                source.function, self.invoke, source.batch_size, source.window_s, source.report_failures, REGION,
            )
            poller.start()
            self.pollers.append(poller)
        for kinesis_source in app.kinesis_sources:
            on_failure = kinesis_source.on_failure
            poller = KinesisPoller(
                self.cloud.client("kinesis"), resolver.refs[kinesis_source.stream],
                resolver.attrs[(kinesis_source.stream, "Arn")], kinesis_source.function, self.invoke,
                kinesis_source.batch_size, kinesis_source.starting_position, kinesis_source.max_retries,
                (self.cloud.client("sqs"), resolver.refs[on_failure]) if on_failure else None, REGION,
            )
            poller.start()
            self.pollers.append(poller)
        for kafka_source in app.kafka_sources:
            env = self.pools[kafka_source.function].env
            settings = Settings.from_env(env)
            topics = [str(t) for t in resolver.resolve(kafka_source.topics)]
            if self.kafka_broker is not None:
                for topic in topics:
                    self.kafka_broker.create_topic(topic)
            poller = KafkaPoller(kafka_client_config(settings), topics, kafka_source.function, self.invoke,
                                 kafka_source.batch_size, kafka_source.window_s, kafka_source.starting_position,
                                 str(resolver.resolve(kafka_source.cluster)))
            poller.start()
            self.pollers.append(poller)

        # EventBridge: schedules, and rules that ECS task state changes are put to.
        bus = EventBus([(rule.function, resolver.resolve(rule.pattern)) for rule in app.event_rules], self.invoke,
                       REGION)
        for schedule in app.schedules:
            rate_s = float(os.environ.get("LOCAL_SCHEDULE_SECONDS") or schedule.rate_s)
            poller = SchedulePoller(schedule.function, rate_s, self.invoke, REGION)
            poller.start()
            self.pollers.append(poller)
        if app.tasks:
            families: Dict[str, Dict[str, Any]] = {}
            for task in app.tasks.values():
                env = {k: str(v) for k, v in resolver.resolve(task.environment).items()}
                env.update(local_overrides)
                families[resolver.attrs[(task.name, "Family")]] = {
                    "logical": task.name, "name": task.container, "argv": task.argv, "env": env,
                    "code_dir": os.path.join(ROOT, task.code_dir),
                    "logs": {k: str(v) for k, v in resolver.resolve(task.log_options).items()},
                }
            clusters = [n for n, r in app.template["Resources"].items() if r["Type"] == "AWS::ECS::Cluster"]
            self.agent = EcsAgent(self.cloud.client("ecs"), resolver.refs[clusters[0]], families,
                                  self._python(MODEL_RUNTIME), base_env, logs=self.cloud.client("logs"), events=bus,
                                  cluster_arn=resolver.attrs[(clusters[0], "Arn")])
            self.agent.start()

        keys = Keys(self.settings.client_keys, self.settings.admin_keys)
        self.gateway = Gateway(app.routes, self.invoke, self.args.host, self.args.port, keys=keys)
        url = "http://{}:{}".format(self.args.host, self.gateway.server.server_address[1])
        if not keys.enabled:
            console("runner", "no API_KEYS/ADMIN_API_KEYS: every route is open, on loopback only")
        console("runner", "EasyRec Online is up on {} ({} routes, {} functions, ready in {:.1f} s)".format(
            url, len(app.routes), len(app.functions), time.monotonic() - started))
        if self.args.ready_file:
            partial = self.args.ready_file + ".part"
            with open(partial, "w") as f:
                json.dump({"url": url, "cloud_url": self.cloud.endpoint_url, "pid": os.getpid()}, f)
            os.replace(partial, self.args.ready_file)

    def _prewarm(self) -> None:
        errors: List[str] = []

        def warm(pool: FunctionPool) -> None:
            try:
                pool.prewarm()
            except Exception as exc:  # noqa: BLE001
                errors.append("{}: {}".format(pool.name, exc))

        threads = [threading.Thread(target=warm, args=(p,)) for p in self.pools.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise SystemExit("functions failed their cold start: " + "; ".join(errors))

    def invoke(self, function: str, event: Dict[str, Any]) -> Any:
        return self.pools[function].invoke(event)

    def serve(self) -> None:
        assert self.gateway is not None
        self.gateway.serve_forever()

    def stop(self) -> None:
        console("runner", "stopping")
        if self.gateway is not None:
            self.gateway.server.server_close()
        for poller in self.pollers:
            poller.stop()
        for poller in self.pollers:
            poller.join(timeout=5)
        if self.agent is not None:
            self.agent.stop()
        for pool in self.pools.values():
            pool.stop()
        if self.kafka_broker is not None:
            self.kafka_broker.stop()
        if self.lifecycle is not None:
            self.lifecycle.stop()
        self.cloud.stop()
        console("runner", "stopped")


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(name)s] %(levelname)s %(message)s", stream=sys.stdout)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    logging.getLogger("gateway").setLevel(logging.WARNING if os.environ.get("LOCAL_QUIET_ACCESS_LOG") else logging.INFO)
    args = parse_args(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    runner = LocalRunner(args)
    try:
        runner.start()
        runner.serve()
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        console("runner", "could not start: {}".format(exc))
        return 1
    finally:
        runner.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
