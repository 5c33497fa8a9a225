"""Recipient validation: may the gateway accept mail for this address? Called at RCPT TO."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.recipients import RecipientQuery, answer
from mailpipe.services import directory, quotas

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    result = answer(directory(), RecipientQuery.from_event(event), quotas(read_only=True))
    logger.info("recipient checked", extra=result)
    return result
