"""Inbound routing: spooled messages from the inbound queue into the recipients' mailboxes."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.services import inbound_delivery
from mailpipe.spool import Envelope

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    report = inbound_delivery().deliver(Envelope.from_json(record.body))
    logger.info("delivered", extra={"queue_id": report.envelope_id, "uids": report.uids})
    metrics.add_metric(name="MessagesStored", unit=MetricUnit.Count, value=len(report.uids))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
