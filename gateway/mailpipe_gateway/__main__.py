"""The container's entry point: `python -m mailpipe_gateway smtp|access` (gateway/Dockerfile, template.yaml).

`mailpipe gateway` and `mailpipe access-gateway` run the same code from a development checkout.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from mailpipe.addresses import AddressError
from mailpipe.config import ConfigError
from mailpipe_gateway.run import run_access_gateway, run_smtp_gateway

COMMANDS = {
    "smtp": (run_smtp_gateway, "the SMTP gateway: port 25, and submission when its ports are set"),
    "access": (run_access_gateway, "the access gateway: IMAP and POP3 (needs a certificate)"),
}


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs every command and botocore every credential lookup at INFO; our own
    # log lines say what matters per message.
    for chatty in ("mail.log", "botocore", "boto3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mailpipe_gateway", description="Run a mailpipe gateway, configured from the environment."
    )
    commands = parser.add_subparsers(required=True, metavar="GATEWAY")
    for name, (run, help_) in COMMANDS.items():
        commands.add_parser(name, help=help_).set_defaults(run=run)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        args.run()
    except (AddressError, ConfigError, ValueError) as exc:
        print(f"mailpipe_gateway: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
