"""The mailbox table's stream, relayed to the changes topic as mailbox notices (mailpipe.changes).

The stream's one reader: every access gateway task hears of every mailbox change through the topic
(docs/change-feed.md). The event source mapping's filter passes only mailbox items.
"""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.services import mailbox_relay

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@event_source(data_class=DynamoDBStreamEvent)
def lambda_handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict:
    # A publish that fails raises: the event source retries the batch (halving it), then describes
    # it on the on-failure queue, whose alarm pages (docs/change-feed.md, "When the relay fails").
    published = mailbox_relay().relay(record.raw_event for record in event.records)
    return {"notices": published}
