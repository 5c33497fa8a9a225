"""Inbound routing: spooled messages from the inbound queue into the recipients' mailboxes."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.config import ENV_IDEMPOTENCY_TABLE
from mailpipe.services import inbound_delivery
from mailpipe.spool import Envelope

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)
# A redelivered record whose envelope was fully stored is answered from this record; the
# store's own per-mailbox markers still make a partly stored envelope safe to run again.
idempotency = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=24 * 3600)
persistence = DynamoDBPersistenceLayer(table_name=os.environ[ENV_IDEMPOTENCY_TABLE])


@idempotent_function(data_keyword_argument="envelope", config=idempotency, persistence_store=persistence)
def store_envelope(envelope: dict) -> dict:
    report = inbound_delivery().deliver(Envelope.from_dict(envelope))
    metrics.add_metric(name="MessagesStored", unit=MetricUnit.Count, value=len(report.uids))
    return {"queue_id": report.envelope_id, "uids": report.uids}


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    result = store_envelope(envelope=Envelope.from_json(record.body).to_dict())
    logger.info("delivered", extra=result)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
