"""Ingest consumer (control plane, Python 3.12): actions stream -> durable S3 storage.

One handler per event source; template.yaml wires the one its StreamTransport parameter selects:
SQS (default), Kinesis Data Streams, or Kafka (an MSK event source).
"""
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from easyrec_online import wiring
from easyrec_online.core.config import Settings
from easyrec_online.ingest.consumer import new_processor, store_kafka_batch, store_kinesis_batch, store_sqs_batch

logger = Logger(service="ingest-consumer")
metrics = Metrics(namespace="EasyRecOnline", service="ingest-consumer")

settings = Settings.from_env()
store = wiring.action_store(settings)
state = wiring.state_store(settings)
sqs_processor = new_processor("sqs")
kinesis_processor = new_processor("kinesis")
dead_letters = wiring.dead_letters(settings)


def _record_metrics(stored: int, poison: int) -> None:
    metrics.add_metric(name="RecordsStored", unit=MetricUnit.Count, value=stored)
    metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=poison)


def _partial_batch(store_batch, processor, event):
    response = store_batch(event, processor, store, state)
    failed = len(response["batchItemFailures"])
    _record_metrics(len(event.get("Records", [])) - failed, failed)
    return response


@metrics.log_metrics
@logger.inject_lambda_context
def sqs_handler(event, context):
    return _partial_batch(store_sqs_batch, sqs_processor, event)


@metrics.log_metrics
@logger.inject_lambda_context
def kinesis_handler(event, context):
    return _partial_batch(store_kinesis_batch, kinesis_processor, event)


@metrics.log_metrics
@logger.inject_lambda_context
def kafka_handler(event, context):
    summary = store_kafka_batch(event, store, dead_letters, state)
    _record_metrics(summary["records"] - summary["poison_records"], summary["poison_records"])
    return summary
