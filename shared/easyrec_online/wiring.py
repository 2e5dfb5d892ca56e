"""Builds the AWS-backed implementations from Settings: the one place functions get them from."""
from __future__ import annotations

from easyrec_online.control.launcher import EcsTrainingLauncher
from easyrec_online.core import aws
from easyrec_online.core.config import Settings
from easyrec_online.ingest.consumer import DeadLetters
from easyrec_online.ingest.publishers import ActionPublisher, KinesisActionPublisher, SqsActionPublisher
from easyrec_online.ingest.store import S3ActionStore
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
