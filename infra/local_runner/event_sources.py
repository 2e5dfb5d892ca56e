"""What AWS does between services, done locally: the SQS, Kinesis and Kafka (MSK) event source
mappings and the ECS agent."""
from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
import uuid
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from .workers import InvokeError, console, pump_lines

log = logging.getLogger("event-sources")


class SqsPoller(threading.Thread):
    """Lambda's SQS event source mapping: batches of real SQS records to the consumer function.

    Messages are deleted only after the function succeeded, minus those it named in
    batchItemFailures (ReportBatchItemFailures). Failed messages come back after the queue's
    visibility timeout; the queue's redrive policy moves repeat failures to the dead-letter queue.
    """

    def __init__(self, sqs: Any, queue_url: str, queue_arn: str, function: str, invoke: Callable[[str, Dict], Any],
                 batch_size: int, window_s: float, report_failures: bool, region: str) -> None:
        super().__init__(name="sqs-" + function, daemon=True)
        self.sqs = sqs
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.function = function
        self.invoke = invoke
        self.batch_size = batch_size
        self.window_s = window_s
        self.report_failures = report_failures
        self.region = region
        self.stopping = threading.Event()
        self.batches = 0

    def _receive(self) -> List[Dict[str, Any]]:
        messages: List[Dict[str, Any]] = []
        deadline = time.monotonic() + self.window_s
        while len(messages) < self.batch_size and not self.stopping.is_set():
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=1 if not messages else 0, AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])
            messages.extend(got)
            if not got and (messages or time.monotonic() >= deadline):
                break
            if messages and time.monotonic() >= deadline:
                break
        return messages

    def _record(self, message: Dict[str, Any]) -> Dict[str, Any]:
        attributes = {k: v for k, v in message.get("MessageAttributes", {}).items()}
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                k: {"stringValue": v.get("StringValue"), "binaryValue": v.get("BinaryValue"),
                    "stringListValues": [], "binaryListValues": [], "dataType": v.get("DataType")}
                for k, v in attributes.items()
            },
            "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }

    def poll_once(self) -> int:
        messages = self._receive()
        if not messages:
            return 0
        event = {"Records": [self._record(m) for m in messages]}
        try:
            result = self.invoke(self.function, event)
        except InvokeError as exc:
            # As on AWS: the whole batch becomes visible again after the visibility timeout.
            log.error("%s failed on a batch of %d: %s", self.function, len(messages), exc)
            return 0
        failed: Set[str] = set()
        if self.report_failures and isinstance(result, dict):
            failed = {f.get("itemIdentifier") for f in result.get("batchItemFailures") or []}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)])
        self.batches += 1
        return len(done)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - keep polling; the cloud may be restarting
                log.exception("SQS poller for %s", self.function)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()


class KinesisPoller(threading.Thread):
    """Lambda's Kinesis event source mapping: each shard's records in order, in batches.

    With ReportBatchItemFailures the batch is retried from its first failed record; a failed
    invocation retries the whole batch. After MaximumRetryAttempts the records still failing are
    reported to the on-failure destination (an SQS queue; as on AWS, the message names the shard and
    sequence numbers, the records stay in the stream) and the shard moves on. Positions are kept in
    memory: moto's Kinesis does not outlive the runner either.
    """

    def __init__(self, kinesis: Any, stream_name: str, stream_arn: str, function: str,
                 invoke: Callable[[str, Dict], Any], batch_size: int, starting_position: str,
                 max_retries: int, on_failure: Optional[Tuple[Any, str]], region: str) -> None:
        super().__init__(name="kinesis-" + function, daemon=True)
        self.kinesis = kinesis
        self.stream_name = stream_name
        self.stream_arn = stream_arn
        self.function = function
        self.invoke = invoke
        self.batch_size = batch_size
        self.starting_position = "LATEST" if starting_position == "LATEST" else "TRIM_HORIZON"
        self.max_retries = max_retries
        self.on_failure = on_failure  # (sqs client, queue url) or None
        self.region = region
        self.stopping = threading.Event()
        self._iterators: Dict[str, Optional[str]] = {}

    def _record(self, shard_id: str, record: Dict[str, Any]) -> Dict[str, Any]:
        return {
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventName": "aws:kinesis:record",
            "eventID": "{}:{}".format(shard_id, record["SequenceNumber"]), "eventSourceARN": self.stream_arn,
            "awsRegion": self.region, "invokeIdentityArn": "arn:aws:iam::123456789012:role/local",
            "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record["PartitionKey"],
                        "sequenceNumber": record["SequenceNumber"],
                        "data": base64.b64encode(record["Data"]).decode(),
                        "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp()},
        }

    def _refresh_shards(self) -> None:
        shards = self.kinesis.list_shards(StreamName=self.stream_name)["Shards"]
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self.kinesis.get_shard_iterator(
                    StreamName=self.stream_name, ShardId=shard["ShardId"],
                    ShardIteratorType=self.starting_position)["ShardIterator"]

    def poll_once(self) -> int:
        self._refresh_shards()
        delivered = 0
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None or self.stopping.is_set():
                continue
            answer = self.kinesis.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = answer["Records"]
            if records:
                self._deliver(shard_id, records)
                delivered += len(records)
            self._iterators[shard_id] = answer.get("NextShardIterator")
        return delivered

    def _deliver(self, shard_id: str, records: List[Dict[str, Any]]) -> None:
        pending = records
        for attempt in range(self.max_retries + 1):
            try:
                result = self.invoke(self.function, {"Records": [self._record(shard_id, r) for r in pending]})
            except Exception as exc:  # noqa: BLE001 - InvokeError, or the cloud restarting
                log.error("%s failed on %d Kinesis records: %s", self.function, len(pending), exc)
            else:
                failed = {f.get("itemIdentifier") for f in (result or {}).get("batchItemFailures") or []} \
                    if isinstance(result, dict) else set()
                first = next((i for i, r in enumerate(pending) if r["SequenceNumber"] in failed), None)
                if first is None:
                    return
                pending = pending[first:]
            if self.stopping.wait(min(10.0, 0.5 * 2 ** attempt)):
                return
        self._report_failure(shard_id, pending)

    def _report_failure(self, shard_id: str, records: List[Dict[str, Any]]) -> None:
        log.error("%s: %d Kinesis records of %s failed every retry", self.function, len(records), shard_id)
        if self.on_failure is None:
            return
        sqs, queue_url = self.on_failure
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps({
            "requestContext": {"functionArn": "arn:aws:lambda:{}:123456789012:function:{}".format(
                self.region, self.function), "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.max_retries + 1},
            "KinesisBatchInfo": {"shardId": shard_id, "startSequenceNumber": records[0]["SequenceNumber"],
                                 "endSequenceNumber": records[-1]["SequenceNumber"], "batchSize": len(records),
                                 "streamArn": self.stream_arn}}))

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                if not self.poll_once():
                    self.stopping.wait(0.25)
            except Exception:  # noqa: BLE001 - keep polling; the cloud may be restarting
                log.exception("Kinesis poller for %s", self.function)
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()


class KafkaPoller(threading.Thread):
    """Lambda's Kafka event source mapping (MSK or self-managed Kafka): a consumer group of its own,
    batches of up to BatchSize records (waiting at most MaximumBatchingWindowInSeconds) in the
    Kafka event shape. Offsets are committed only after the function succeeded; a failed
    invocation gets the same batch again (with backoff), and a poller that dies before committing
    leaves the batch to be delivered again to the next one: at least once, as on AWS."""

    def __init__(self, client_config: Dict[str, Any], topics: List[str], function: str,
                 invoke: Callable[[str, Dict], Any], batch_size: int, window_s: float, starting_position: str,
                 source_arn: str) -> None:
        super().__init__(name="kafka-" + function, daemon=True)
        self.config = dict(client_config, **{
            "group.id": "lambda-" + function, "enable.auto.commit": False,
            "auto.offset.reset": "latest" if starting_position == "LATEST" else "earliest",
            # Fast group (re)joins after a restart; an invocation may take minutes.
            "session.timeout.ms": 6000, "heartbeat.interval.ms": 500, "max.poll.interval.ms": 600000,
        })
        self.topics = topics
        self.function = function
        self.invoke = invoke
        self.batch_size = batch_size
        self.window_s = max(0.1, window_s)
        self.source_arn = source_arn
        self.stopping = threading.Event()
        self.batches = 0
        self.ready = threading.Event()  # set once the group has assigned partitions to this poller

    def run(self) -> None:
        from confluent_kafka import Consumer

        from easyrec_online.ingest.kafka import kafka_event

        consumer = Consumer(self.config)
        consumer.subscribe(self.topics, on_assign=lambda c, partitions: self.ready.set())
        try:
            while not self.stopping.is_set():
                messages = consumer.consume(self.batch_size, self.window_s)
                good = []
                for message in messages:
                    if message.error():
                        log.warning("Kafka poller for %s: %s", self.function, message.error())
                    else:
                        good.append(message)
                if not good:
                    continue
                event = kafka_event([(m.topic(), m.partition(), m.offset(), m.timestamp()[1], m.key(), m.value())
                                     for m in good], self.source_arn, self.config["bootstrap.servers"])
                attempt = 0
                while not self.stopping.is_set():
                    try:
                        self.invoke(self.function, event)
                    except Exception as exc:  # noqa: BLE001 - InvokeError, or the cloud restarting
                        log.error("%s failed on %d Kafka records (attempt %d): %s", self.function, len(good),
                                  attempt + 1, exc)
                        self.stopping.wait(min(30.0, 0.5 * 2 ** attempt))
                        attempt += 1
                        continue
                    consumer.commit(asynchronous=False)
                    self.batches += 1
                    break
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stopping.set()


class EcsAgent(threading.Thread):
    """Runs the tasks that RunTask started in the local cloud as model-runtime processes.

    A task's container runs `<entryPoint + command>` from the task definition, in the model
    runtime, in the code folder its image would hold, with the definition's environment plus the
    RunTask overrides. When the process exits the task is stopped with the exit code as reason.
    """

    def __init__(self, ecs: Any, cluster: str, families: Dict[str, Dict[str, Any]], python: str,
                 base_env: Dict[str, str], poll_s: float = 0.5, logs: Any = None,
                 events: Optional["EventBus"] = None, cluster_arn: str = "") -> None:
        super().__init__(name="ecs-agent", daemon=True)
        self.ecs = ecs
        self.cluster = cluster
        self.families = families  # family -> {"code_dir", "argv", "env", "name"}
        self.python = python
        self.base_env = base_env
        self.poll_s = poll_s
        self.stopping = threading.Event()
        self.started: Set[str] = set()
        self.processes: Dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self.logs = logs  # CloudWatch Logs client: task output is shipped as the awslogs driver would
        self.events = events  # ECS Task State Change events go to EventBridge rules (the supervisor)
        self.cluster_arn = cluster_arn

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                arns = self.ecs.list_tasks(cluster=self.cluster, desiredStatus="RUNNING").get("taskArns", [])
                new = [a for a in arns if a not in self.started]
                if new:
                    for task in self.ecs.describe_tasks(cluster=self.cluster, tasks=new).get("tasks", []):
                        self._start(task)
                self._stop_stopped(set(arns))
            except Exception:  # noqa: BLE001
                log.exception("ECS agent")
            self.stopping.wait(self.poll_s)

    def _stop_stopped(self, running_arns: Set[str]) -> None:
        """StopTask: a task no longer desired RUNNING gets SIGTERM (as ECS sends its container)."""
        with self._lock:
            told = [(arn, p) for arn, p in self.processes.items() if arn not in running_arns and p.poll() is None]
        for arn, process in told:
            console("ecs", "stopping task {} (StopTask)".format(arn.rsplit("/", 1)[-1][:8]))
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _start(self, task: Dict[str, Any]) -> None:
        arn = task["taskArn"]
        self.started.add(arn)
        family = task["taskDefinitionArn"].rsplit("/", 1)[-1].rsplit(":", 1)[0]
        spec = self.families.get(family)
        if spec is None:
            log.error("task %s uses task definition %s, which the template does not declare", arn, family)
            self.ecs.stop_task(cluster=self.cluster, task=arn, reason="unknown task definition")
            return
        env = dict(self.base_env)
        env.update(spec["env"])
        for override in task.get("overrides", {}).get("containerOverrides", []):
            if override.get("name") == spec["name"]:
                env.update({e["name"]: e["value"] for e in override.get("environment", [])})
        argv = list(spec["argv"])
        if argv and argv[0] == "python":
            argv[0] = self.python
        short = arn.rsplit("/", 1)[-1][:8]
        console("ecs", "starting task {} ({}): {}".format(short, family, " ".join(spec["argv"])))
        process = subprocess.Popen(argv, cwd=spec["code_dir"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        with self._lock:
            self.processes[arn] = process
        assert process.stdout is not None
        shipper = self._log_shipper(spec, arn)
        pumping = pump_lines(process.stdout, "{}:{}".format(spec["logical"], short), shipper.add if shipper else None)
        if shipper is not None:
            shipper.close_after(pumping)
        threading.Thread(target=self._wait, args=(arn, process, short), daemon=True).start()

    def _log_shipper(self, spec: Dict[str, Any], arn: str) -> Optional["LogShipper"]:
        options = spec.get("logs") or {}
        group, prefix = options.get("awslogs-group"), options.get("awslogs-stream-prefix")
        if self.logs is None or not group or not prefix:
            return None
        # awslogs names a task's stream <prefix>/<container>/<task id>.
        stream = "{}/{}/{}".format(prefix, spec["name"], arn.rsplit("/", 1)[-1])
        try:
            self.logs.create_log_stream(logGroupName=group, logStreamName=stream)
        except Exception:  # noqa: BLE001 - logs are a convenience; the task runs regardless
            log.exception("could not create log stream %s", stream)
            return None
        return LogShipper(self.logs, group, stream)

    def _wait(self, arn: str, process: subprocess.Popen, short: str) -> None:
        code = process.wait()
        with self._lock:
            self.processes.pop(arn, None)
        console("ecs", "task {} exited with code {}".format(short, code))
        try:
            self.ecs.stop_task(cluster=self.cluster, task=arn, reason="Essential container exited (exit code {})".format(code))
        except Exception:  # noqa: BLE001 - the cloud may be shutting down
            pass
        if self.events is not None and not self.stopping.is_set():
            self.events.put("aws.ecs", "ECS Task State Change", {
                "clusterArn": self.cluster_arn, "taskArn": arn, "lastStatus": "STOPPED", "desiredStatus": "STOPPED",
                "stopCode": "EssentialContainerExited", "containers": [{"exitCode": code}]})

    def stop(self, grace_s: float = 10.0) -> None:
        self.stopping.set()
        with self._lock:
            running = list(self.processes.values())
        for process in running:
            process.terminate()
        deadline = time.monotonic() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()



class LogShipper:
    """Buffers a task's output lines and puts them to its CloudWatch Logs stream every second."""

    def __init__(self, logs: Any, group: str, stream: str, interval_s: float = 1.0) -> None:
        self.logs, self.group, self.stream = logs, group, stream
        self._lines: List[Dict[str, Any]] = []
        self._lock = threading.Lock()
        self._interval = interval_s
        self._source: Optional[threading.Thread] = None
        threading.Thread(target=self._run, name="logs-" + stream[-8:], daemon=True).start()

    def close_after(self, source: threading.Thread) -> None:
        """Ship what is left and stop once `source` (the thread reading the output) ends."""
        self._source = source

    def add(self, line: str) -> None:
        message = line.rstrip("\n")
        if not message:  # CloudWatch Logs refuses empty events (and would refuse the whole batch)
            return
        with self._lock:
            self._lines.append({"timestamp": int(time.time() * 1000), "message": message})

    def _run(self) -> None:
        while True:
            time.sleep(self._interval)
            done = self._source is not None and not self._source.is_alive()
            with self._lock:
                batch, self._lines = self._lines[:1000], self._lines[1000:]
            if done and not batch:
                return
            if batch:
                try:
                    self.logs.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=batch)
                except Exception:  # noqa: BLE001
                    log.exception("could not ship logs to %s", self.stream)


def matches(pattern: Any, value: Any) -> bool:
    """EventBridge's pattern matching, as far as the template uses it: a dict matches field by field,
    a list of values matches one of them."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(matches(p, value.get(k)) for k, p in pattern.items())
    if isinstance(pattern, list):
        return value in pattern
    return pattern == value


class EventBus:
    """The default EventBridge bus: events put on it go to every rule whose pattern matches."""

    def __init__(self, rules: List[Tuple[str, Dict[str, Any]]], invoke: Callable[[str, Dict], Any], region: str) -> None:
        self.rules = rules  # (function, resolved pattern)
        self.invoke = invoke
        self.region = region

    def put(self, source: str, detail_type: str, detail: Dict[str, Any]) -> int:
        event = {"version": "0", "id": uuid.uuid4().hex, "detail-type": detail_type, "source": source,
                 "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "region": self.region, "resources": [], "detail": detail}
        delivered = 0
        for function, pattern in self.rules:
            if matches(pattern, event):
                # EventBridge invokes asynchronously: the putter never waits for the function.
                threading.Thread(target=self._deliver, args=(function, event), daemon=True).start()
                delivered += 1
        return delivered

    def _deliver(self, function: str, event: Dict[str, Any]) -> None:
        try:
            self.invoke(function, event)
        except Exception as exc:  # noqa: BLE001 - as an async invoke: logged, not retried here
            log.error("%s failed on a %s event: %s", function, event["detail-type"], exc)


class SchedulePoller(threading.Thread):
    """An EventBridge schedule: invokes the function every `rate_s` seconds with a Scheduled Event.
    The first tick comes shortly after the runner starts (EventBridge's next tick, on AWS, comes within
    the rate), so a trainer interrupted by a restart resumes without waiting a whole period."""

    def __init__(self, function: str, rate_s: float, invoke: Callable[[str, Dict], Any], region: str,
                 first_after_s: float = 2.0) -> None:
        super().__init__(name="schedule-" + function, daemon=True)
        self.function, self.rate_s, self.invoke, self.region = function, rate_s, invoke, region
        self.first_after_s = first_after_s
        self.stopping = threading.Event()
        self.ticks = 0

    def run(self) -> None:
        wait = self.first_after_s
        while not self.stopping.wait(wait):
            wait = self.rate_s
            try:
                self.invoke(self.function, {
                    "version": "0", "id": uuid.uuid4().hex, "detail-type": "Scheduled Event", "source": "aws.events",
                    "account": "123456789012", "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "region": self.region, "resources": [], "detail": {}})
                self.ticks += 1
            except Exception as exc:  # noqa: BLE001 - the next tick tries again
                log.error("scheduled %s failed: %s", self.function, exc)

    def stop(self) -> None:
        self.stopping.set()
