"""Ingest consumer (control plane, Python 3.12): actions stream (SQS, or Kinesis with
STREAM_TRANSPORT=kinesis) -> durable S3 storage."""
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from easyrec_online import wiring
from easyrec_online.config import Settings
from easyrec_online.consumer import new_processor, store_kinesis_batch, store_sqs_batch

logger = Logger(service="ingest-consumer")
metrics = Metrics(namespace="EasyRecOnline", service="ingest-consumer")

settings = Settings.from_env()
store = wiring.action_store(settings)
state = wiring.state_store(settings)
processor = new_processor(settings.stream_transport)
store_batch = store_kinesis_batch if settings.stream_transport == "kinesis" else store_sqs_batch


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event, context):
    response = store_batch(event, processor, store, state)
    failed = len(response["batchItemFailures"])
    metrics.add_metric(name="ActionsStored", unit=MetricUnit.Count, value=len(event.get("Records", [])) - failed)
    metrics.add_metric(name="PoisonMessages", unit=MetricUnit.Count, value=failed)
    return response
