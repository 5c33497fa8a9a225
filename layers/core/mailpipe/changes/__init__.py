"""The change feed: what changed in which mailbox, pushed to every access gateway task.

The mailbox table's DynamoDB Stream has one reader, the relay (`relay.py`, run by the
mailbox_changes function), which publishes `MailboxNotice`s (`notice.py`) to an SNS topic; each
gateway process receives them through its own SQS queue (`feed.py`). docs/change-feed.md says why.
"""
