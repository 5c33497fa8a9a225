"""SES events (bounces, complaints, delays, rejects) from SNS via SQS into the outbound queue state."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.outbound.ses_events import UnreadableEvent
from mailpipe.services import ses_events, sqs_batch_processor

logger = Logger()
tracer = Tracer()
# A record that fails (DynamoDB or S3 down) comes back after the growing back-off (redelivery.py).
processor = sqs_batch_processor()


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    try:
        ses_events().handle_notification(record.body)
    except UnreadableEvent as exc:
        # Not mail, and no retry can read it: logged for whoever looks, then dropped.
        logger.error("unreadable SES event dropped", extra={"reason": str(exc), "body": record.body[:2000]})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
