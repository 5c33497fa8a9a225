"""Scheduled: prune expunge tombstones below each mailbox's floor and old delivery markers."""

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailpipe.services import prune

logger = Logger()
tracer = Tracer()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    # Bounded work per run (store/pruning.py's budget): what is left waits for the next run.
    report = prune(time_left=lambda: context.get_remaining_time_in_millis() / 1000)
    logger.info(report.line(), extra={"report": report.__dict__})
    return report.__dict__
