"""Inbound routing: spooled messages from the inbound queue into the recipients' mailboxes."""

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.config import ENV_IDEMPOTENCY_TABLE
from mailpipe.services import inbound_delivery, poison_reports, sqs_batch_processor
from mailpipe.spool import Envelope

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# A failed record comes back after a back-off that grows with each receive (redelivery.py).
processor = sqs_batch_processor()
# A redelivered record whose envelope was fully stored is answered from this record; the
# store's own per-mailbox markers still make a partly stored envelope safe to run again.
# Kept as long as SQS may still hold a copy of the envelope (14 days), since the spool
# object is deleted once the envelope is stored.
idempotency = IdempotencyConfig(event_key_jmespath="id", expires_after_seconds=15 * 24 * 3600)
persistence = DynamoDBPersistenceLayer(table_name=os.environ[ENV_IDEMPOTENCY_TABLE])


@idempotent_function(data_keyword_argument="envelope", config=idempotency, persistence_store=persistence)
def store_envelope(envelope: dict) -> dict:
    report = inbound_delivery().handle(Envelope.from_dict(envelope))
    metrics.add_metric(name="MessagesStored", unit=MetricUnit.Count, value=len(report.uids))
    if report.returned_as:
        metrics.add_metric(name="MessagesReturned", unit=MetricUnit.Count, value=1)
    return {"queue_id": report.envelope_id, "uids": report.uids, "returned_as": report.returned_as}


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    try:
        envelope = Envelope.from_json(record.body)
    except (ValueError, TypeError) as exc:
        queue_id = poison_reports().report_unreadable(record.body, str(exc), queue="inbound")
        logger.warning("unreadable queue entry reported", extra={"reported_as": queue_id})
        return
    result = store_envelope(envelope=envelope.to_dict())
    logger.info("delivered", extra=result)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    idempotency.register_lambda_context(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
