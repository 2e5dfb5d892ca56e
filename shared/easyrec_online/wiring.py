"""Builds the AWS-backed implementations from Settings: the one place functions get them from."""
from __future__ import annotations

from easyrec_online.control.launcher import EcsTrainingLauncher
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.experiments.router import RunningExperiments, SuccessRecorder
from easyrec_online.experiments.store import DynamoExperimentLog, ExperimentDefinitions
from easyrec_online.ingest.consumer import DeadLetters, Sinks
from easyrec_online.ingest.labels import check_rules
from easyrec_online.ingest.ledger import DynamoEventLedger
from easyrec_online.ingest.publishers import ActionPublisher, KinesisActionPublisher, SqsActionPublisher
from easyrec_online.ingest.quarantine import S3Quarantine
from easyrec_online.ingest.store import QuarantiningStore, S3ActionStore
from easyrec_online.state.activity import DynamoActivityStore
from easyrec_online.state.profiles import DynamoProfileStore
from easyrec_online.state.registry import DynamoStateStore


def state_store(settings: Settings) -> DynamoStateStore:
    return DynamoStateStore(aws.client("dynamodb", settings), settings.state_table)


def action_store(settings: Settings) -> S3ActionStore:
    return S3ActionStore(aws.client("s3", settings), settings.data_bucket, settings.actions_prefix)


def action_publisher(settings: Settings) -> ActionPublisher:
    if settings.stream_transport == "kinesis":
        return KinesisActionPublisher(aws.client("kinesis", settings), settings.actions_stream_name)
    if settings.stream_transport == "kafka":
        from easyrec_online.ingest.kafka import (  # confluent-kafka only for this transport
            KafkaActionPublisher,
            new_producer,
        )

        return KafkaActionPublisher(new_producer(settings), settings.kafka_topic)
    if settings.stream_transport != "sqs":
        raise ValueError("STREAM_TRANSPORT must be sqs, kinesis or kafka, not {!r}".format(settings.stream_transport))
    return SqsActionPublisher(aws.client("sqs", settings), settings.actions_queue_url)


def dead_letters(settings: Settings) -> DeadLetters:
    return DeadLetters(aws.client("sqs", settings), settings.actions_dlq_url)


def training_launcher(settings: Settings) -> EcsTrainingLauncher:
    return EcsTrainingLauncher(aws.client("ecs", settings), settings)


def profile_store(settings: Settings) -> DynamoProfileStore:
    return DynamoProfileStore(aws.client("dynamodb", settings), settings.profiles_table)


def activity_store(settings: Settings) -> DynamoActivityStore:
    return DynamoActivityStore(aws.client("dynamodb", settings), settings.activity_table, settings.activity_ttl_days)


def event_ledger(settings: Settings) -> DynamoEventLedger:
    return DynamoEventLedger(aws.client("dynamodb", settings), settings.ledger_table, settings.ledger_ttl_days)


def experiment_definitions(settings: Settings) -> ExperimentDefinitions:
    return ExperimentDefinitions(state_store(settings))


def experiment_log(settings: Settings) -> DynamoExperimentLog:
    return DynamoExperimentLog(aws.client("dynamodb", settings), settings.experiments_table)


def running_experiments(settings: Settings) -> RunningExperiments:
    return RunningExperiments(experiment_definitions(settings), settings.experiment_refresh_ms / 1000.0)


def consumer_sinks(settings: Settings) -> Sinks:
    """What the ingest consumer writes a batch to: the store, the ledger, the counters, users' activity,
    running experiments' successes."""
    return Sinks(store=action_store(settings), ledger=event_ledger(settings), counters=state_store(settings),
                 activity=activity_store(settings),
                 experiments=SuccessRecorder(running_experiments(settings), experiment_log(settings)),
                 label_rules=check_rules(settings.label_rules),
                 count_keep_s=settings.ledger_ttl_days * 86400.0)


def trainer_store(settings: Settings) -> QuarantiningStore:
    """The action store as the trainer reads it: unreadable lines set apart under quarantine/."""
    return QuarantiningStore(action_store(settings), S3Quarantine(aws.client("s3", settings), settings.data_bucket,
                                                                   state_store(settings)))
