"""Ingest consumer (control plane, Python 3.12): actions stream -> durable S3 storage, each event once.

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
sinks = wiring.consumer_sinks(settings)
sqs_processor = new_processor("sqs")
kinesis_processor = new_processor("kinesis")
dead_letters = wiring.dead_letters(settings)


def _record_metrics(records: int, failed: int) -> None:
    metrics.add_metric(name="RecordsStored", unit=MetricUnit.Count, value=records - failed)
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=failed)


@metrics.log_metrics
@logger.inject_lambda_context
def sqs_handler(event, context):
    response = store_sqs_batch(event, sqs_processor, sinks, context.get_remaining_time_in_millis)
    _record_metrics(len(event.get("Records", [])), len(response["batchItemFailures"]))
    return response


@metrics.log_metrics
@logger.inject_lambda_context
def kinesis_handler(event, context):
    response = store_kinesis_batch(event, kinesis_processor, sinks, context.get_remaining_time_in_millis)
    _record_metrics(len(event.get("Records", [])), len(response["batchItemFailures"]))
    return response


@metrics.log_metrics
@logger.inject_lambda_context
def kafka_handler(event, context):
    summary = store_kafka_batch(event, sinks, dead_letters, context.get_remaining_time_in_millis)
    _record_metrics(summary["records"], summary["poison_records"])
    return summary
