"""Names of the cloud resources, read from the environment the template (or `mailpipe dev`) sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

ENV_MAIL_BUCKET = "MAILPIPE_MAIL_BUCKET"
ENV_INBOUND_QUEUE_URL = "MAILPIPE_INBOUND_QUEUE_URL"
ENV_DIRECTORY_TABLE = "MAILPIPE_DIRECTORY_TABLE"
ENV_MAILBOX_TABLE = "MAILPIPE_MAILBOX_TABLE"
ENV_VALIDATE_FUNCTION = "MAILPIPE_VALIDATE_FUNCTION"
ENV_IDEMPOTENCY_TABLE = "MAILPIPE_IDEMPOTENCY_TABLE"
ENV_OUTBOUND_QUEUE_URL = "MAILPIPE_OUTBOUND_QUEUE_URL"
ENV_OUTBOUND_TABLE = "MAILPIPE_OUTBOUND_TABLE"
ENV_TRANSPORTS = "MAILPIPE_TRANSPORTS"  # transport map entries, "DOMAIN=ROUTE" separated by commas
ENV_HOSTNAME = "MAILPIPE_HOSTNAME"  # this MTA's name: HELO, Reporting-MTA, Received
ENV_DNS_SERVER = "MAILPIPE_DNS_SERVER"  # "host:port" of the resolver for MX lookups (default: the system's)
# The SES configuration set the `ses` transport sends with: its events reach the ses-events function.
ENV_SES_CONFIGURATION_SET = "MAILPIPE_SES_CONFIGURATION_SET"
ENV_RETRY_SCHEDULE = "MAILPIPE_RETRY_SCHEDULE"  # "5m,10m,...;5d;4h": intervals; give up; warn
# The SNS topic of mailbox notices (mailpipe.changes): the relay publishes, access gateways subscribe.
ENV_CHANGES_TOPIC_ARN = "MAILPIPE_CHANGES_TOPIC_ARN"
# JMAP's own state: session tokens, failed-login counts, push connections (docs/jmap.md).
ENV_JMAP_TABLE = "MAILPIPE_JMAP_TABLE"
# The JMAP WebSocket API: its wss:// URL for the session resource, and the https:// endpoint of its
# @connections management API, where the relay posts StateChange (docs/jmap.md, "Push").
ENV_JMAP_WEBSOCKET_URL = "MAILPIPE_JMAP_WEBSOCKET_URL"
ENV_PUSH_ENDPOINT = "MAILPIPE_PUSH_ENDPOINT"
# The largest JMAP download answered inline, in bytes (jmap/downloads.py): only lowers the 3 MB
# default, which is what fits in a Lambda response; larger blobs go by a presigned S3 URL.
ENV_JMAP_INLINE_DOWNLOAD = "MAILPIPE_JMAP_INLINE_DOWNLOAD"
# The web side's own host names (template.yaml JmapDomainName, ...; empty when not set): the session
# resource names them rather than the execute-api or cloudfront.net names (docs/deploy-domain.md).
ENV_JMAP_DOMAIN_NAME = "MAILPIPE_JMAP_DOMAIN_NAME"
ENV_JMAP_WEBSOCKET_DOMAIN_NAME = "MAILPIPE_JMAP_WEBSOCKET_DOMAIN_NAME"
ENV_WEBMAIL_DOMAIN_NAME = "MAILPIPE_WEBMAIL_DOMAIN_NAME"


class ConfigError(RuntimeError):
    """A required setting is missing."""


@dataclass(frozen=True)
class Resources:
    mail_bucket: str
    inbound_queue_url: str
    directory_table: str
    mailbox_table: str
    # Only the inbound function hands mail to the outbound queue; the gateways do without it.
    outbound_queue_url: str | None = None
    # The change feed's topic; without it (a bench on bare moto, say) the access gateway polls.
    changes_topic_arn: str | None = None
    jmap_table: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Resources:
        env = os.environ if environ is None else environ
        missing = [
            name
            for name in (ENV_MAIL_BUCKET, ENV_INBOUND_QUEUE_URL, ENV_DIRECTORY_TABLE, ENV_MAILBOX_TABLE)
            if not env.get(name)
        ]
        if missing:
            raise ConfigError(f"missing environment: {', '.join(missing)}")
        return cls(
            mail_bucket=env[ENV_MAIL_BUCKET],
            inbound_queue_url=env[ENV_INBOUND_QUEUE_URL],
            directory_table=env[ENV_DIRECTORY_TABLE],
            mailbox_table=env[ENV_MAILBOX_TABLE],
            outbound_queue_url=env.get(ENV_OUTBOUND_QUEUE_URL) or None,
            changes_topic_arn=env.get(ENV_CHANGES_TOPIC_ARN) or None,
            jmap_table=env.get(ENV_JMAP_TABLE) or None,
        )


def jmap_public_urls(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """(base URL, WebSocket URL) the JMAP session resource gives clients; None: as the request came.

    The base is JMAP's own name, else the webmail's (CloudFront routes /jmap/* to the same API), so
    the session never names an execute-api host a client reached by another name. The WebSocket
    URL is its own name (its API mapping puts the stage at the root), else the WebSocket API's URL.
    """
    jmap, webmail = environ.get(ENV_JMAP_DOMAIN_NAME), environ.get(ENV_WEBMAIL_DOMAIN_NAME)
    base = f"https://{jmap}" if jmap else f"https://{webmail}" if webmail else None
    websocket = environ.get(ENV_JMAP_WEBSOCKET_DOMAIN_NAME)
    return base, (f"wss://{websocket}" if websocket else environ.get(ENV_JMAP_WEBSOCKET_URL) or None)
