"""Outbound delivery: messages from the outbound queue to other mail servers, with retries and bounces."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.outbound.queue import OutboundMessage
from mailpipe.services import outbound_delivery, poison_reports, sqs_batch_processor

logger = Logger()
tracer = Tracer()
# Delivery retries follow the schedule (outbound/schedule.py); this back-off is for the function
# itself failing (S3 or DynamoDB unreachable, a crash), as for the inbound function.
processor = sqs_batch_processor()


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    try:
        message = OutboundMessage.from_json(record.body)
    except (ValueError, TypeError, KeyError) as exc:
        # No retry can read it: a postmaster gets it rather than the dead-letter queue (poison.py).
        queue_id = poison_reports().report_unreadable(record.body, str(exc), queue="outbound")
        logger.warning("unreadable queue entry reported", extra={"reported_as": queue_id})
        return
    outbound_delivery().process(message)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
