"""The `mailpipe` command: the local stack, the gateway, and directory administration."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from mailpipe import aws, heap
from mailpipe.addresses import AddressError
from mailpipe.config import ENV_DIRECTORY_TABLE, ENV_MAILBOX_TABLE, ConfigError
from mailpipe.directory import Alias, Directory, DirectoryError
from mailpipe.outbound.suppression import SesSuppressionList
from mailpipe.store import MailStore
from mailpipe.store.mailstore import StoreError
from mailpipe.store.pruning import BUDGET, DAY, MARKER_AGE, TOMBSTONE_AGE
from mailpipe_tools import dns_commands, import_commands, mailbox_commands, quota_commands, status_command
from mailpipe_tools.parsing import list_actions
from mailpipe_tools.progress import progress as _progress

if TYPE_CHECKING:  # the dev runtime is imported by `mailpipe dev` only: the other commands start faster
    from mailpipe_tools.local.stack import DevOptions

DEMO_DOMAIN = "example.test"
PORT_FLAGS = {
    "smtp": "--smtp-port",
    "submission": "--submission-port",
    "imap": "--imap-port",
    "pop3": "--pop3-port",
    "aws": "--aws-port",
    "http": "--http-port",
}
DEMO_USER = ("bob@example.test", "bob-password")
T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # aiosmtpd logs every command and botocore every credential lookup at INFO; our own
    # log lines say what matters per message.
    for chatty in ("mail.log", "botocore", "boto3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return int(args.run(args) or 0)
    except (DirectoryError, AddressError, ConfigError, StoreError, ValueError, OSError) as exc:
        print(f"mailpipe: {exc}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as exc:  # AWS (or the dev stack's moto) unreachable or refusing
        print(f"mailpipe: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailpipe", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    dev = commands.add_parser("dev", help="run the whole stack locally on an embedded moto server")
    dev.add_argument("--domain", action="append", default=[], help="hosted domain (repeatable)")
    dev.add_argument("--user", action="append", default=[], metavar="ADDR:PASSWORD", help="user (repeatable)")
    dev.add_argument("--smtp-port", type=int, default=2525)
    dev.add_argument("--submission-port", type=int, default=2587)
    dev.add_argument("--imap-port", type=int, default=1143)
    dev.add_argument("--pop3-port", type=int, default=1110)
    dev.add_argument("--aws-port", type=int, default=4566)
    dev.add_argument("--http-port", type=int, default=8080, help="JMAP (and the webmail) over plain HTTP")
    dev.add_argument("--host", default="127.0.0.1", help="address to bind (loopback unless you mean it)")
    dev.add_argument(
        "--hostname",
        default="",
        help="the server's name: greetings, Received:, its certificate, bounces (default: mail.FIRST-DOMAIN)",
    )
    dev.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".mailpipe"),
        help="where mail, users, queues and the CLI's dev.env are kept across restarts (default .mailpipe)",
    )
    dev.add_argument(
        "--ephemeral",
        action="store_true",
        help="a throwaway stack: starts empty, keeps its state in a temporary folder removed at exit",
    )
    dev.add_argument("--template", type=Path, default=None, help="template.yaml to build the stack from")
    dev.add_argument(
        "--transport",
        action="append",
        default=[],
        metavar="DOMAIN=ROUTE",
        help="outbound route, e.g. hamburger.edu=smtp:[127.0.0.1]:2525 (repeatable); the default "
        "*=capture:STATE-DIR/outbox writes remote mail there as .eml files: '*=mx' sends it for real",
    )
    dev.add_argument(
        "--rspamd",
        metavar="URL",
        help="scan mail with rspamd's normal worker at URL, e.g. http://127.0.0.1:11333 (default: no filter)",
    )
    dev.add_argument(
        "--resolver",
        default=None,
        metavar="HOST:PORT",
        help="DNS server for every lookup: SPF, DKIM, DMARC, MX... (default: the system's)",
    )
    dev.set_defaults(run=_run_dev)

    gateway = commands.add_parser(
        "gateway", help="run the SMTP gateway alone, configured from the environment"
    )
    gateway.set_defaults(run=_run_gateway)

    access = commands.add_parser(
        "access-gateway", help="run the IMAP and POP3 gateway alone, configured from the environment"
    )
    access.set_defaults(run=_run_access_gateway)

    domain = commands.add_parser("domain", help="hosted domains").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = domain.add_parser("add", help="host a domain")
    p.add_argument("name")
    p.add_argument("--catch-all", action="append", default=[], metavar="ADDR")
    p.add_argument(
        "--admin",
        metavar="ADDR",
        required=True,
        help="who reads the domain's postmaster mail (a user of this domain may be added after it)",
    )
    p.set_defaults(run=_add_domain)
    p = domain.add_parser("admin", help="set who reads the domain's postmaster mail")
    p.add_argument("name")
    p.add_argument("admin", metavar="ADDR")
    p.set_defaults(run=_set_admin)
    domain.add_parser("list", help="the hosted domains").set_defaults(run=_list_domains)
    p = domain.add_parser("del", help="stop hosting a domain")
    p.add_argument("name")
    p.add_argument(
        "--force", action="store_true", help="also delete the domain's users (and their mail) and aliases"
    )
    _mail_deletion_flags(p)
    p.set_defaults(run=_delete_domain)

    user = commands.add_parser("user", help="users").add_subparsers(required=True, metavar="ACTION")
    p = user.add_parser("add", help="add a user, with a password and the default mailboxes")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.set_defaults(run=_add_user)
    p = user.add_parser("list", help="the users (and which are disabled)")
    p.add_argument("--domain")
    p.set_defaults(run=_list_users)
    p = user.add_parser("passwd", help="set a user's password")
    p.add_argument("address")
    p.add_argument("--password-stdin", action="store_true")
    p.set_defaults(
        run=lambda a: (
            _directory().set_password(a.address, _read_password(a.password_stdin))
            or print(f"password of {a.address} changed")
        )
    )
    for action, disabled, said in (
        ("disable", True, "refuse a user's mail and logins"),
        ("enable", False, "accept a disabled user's mail and logins again"),
    ):
        p = user.add_parser(action, help=said)
        p.add_argument("address")
        p.set_defaults(
            run=lambda a, d=disabled: (
                _directory().set_disabled(a.address, d)
                or print(f"{a.address} {'disabled' if d else 'enabled'}")
            )
        )
    p = user.add_parser("del", help="delete a user and, unless --keep-mail, all their mail")
    p.add_argument("address")
    _mail_deletion_flags(p)
    p.set_defaults(run=_delete_user)
    p = user.add_parser("unlock", help="forget the user's failed logins on every running gateway")
    p.add_argument("address")
    p.set_defaults(run=_unlock_user)

    alias = commands.add_parser("alias", help="aliases").add_subparsers(required=True, metavar="ACTION")
    p = alias.add_parser("add", help="deliver an address's mail to other addresses")
    p.add_argument("address")
    p.add_argument("targets", nargs="+")
    p.add_argument("--replace", action="store_true", help="replace the targets of an existing alias")
    p.set_defaults(run=_add_alias)
    p = alias.add_parser("list", help="the aliases and their targets")
    p.add_argument("--domain")
    p.set_defaults(run=_list_aliases)
    p = alias.add_parser("del", help="delete an alias")
    p.add_argument("address")
    p.set_defaults(run=lambda a: _directory().delete_alias(a.address) or print(f"deleted {a.address}"))

    queue = commands.add_parser("queue", help="the outbound queue and the dead-letter queues").add_subparsers(
        required=True, metavar="ACTION"
    )
    queue.add_parser("list", help="recipients not yet delivered or bounced").set_defaults(run=_queue_list)
    p = queue.add_parser("retry", help="try a queued message again now")
    p.add_argument("id")
    p.set_defaults(run=_queue_retry)
    p = queue.add_parser("delete", help="give up on a queued message, without a bounce")
    p.add_argument("id")
    p.set_defaults(run=_queue_delete)
    p = queue.add_parser("suppressed", help="addresses mail is no longer sent to (hard bounces, complaints)")
    p.add_argument("--ses", action="store_true", help="also list SES's account-level suppression list")
    p.set_defaults(run=_queue_suppressed)
    p = queue.add_parser("unsuppress", help="send to a suppressed address again")
    p.add_argument("address")
    p.add_argument("--ses", action="store_true", help="also remove it from SES's account-level list")
    p.set_defaults(run=_queue_unsuppress)
    p = queue.add_parser("redrive", help="put dead-lettered messages back on their queue")
    p.add_argument("queue", choices=["inbound", "outbound", "all"])
    p.set_defaults(run=_queue_redrive)

    mailbox_commands.register(commands)
    import_commands.register(commands)
    status_command.register(commands)
    quota_commands.register(commands)
    store = commands.add_parser("store", help="mail store maintenance").add_subparsers(
        required=True, metavar="ACTION"
    )
    p = store.add_parser(
        "backfill-headers",
        help="keep the header of messages stored before headers were indexed in the index too "
        "(safe to run again, and while mail flows)",
    )
    p.add_argument("--owner", metavar="ADDR", help="only this user's mailboxes (default: every message)")
    p.set_defaults(run=_backfill_headers)
    p = store.add_parser(
        "prune",
        help="delete expunge tombstones below each mailbox's floor and delivery markers no queue can "
        "bring back (what the hourly prune function does; safe to run again, and while mail flows)",
    )
    p.add_argument("--owner", metavar="ADDR", help="only this user's mailboxes (default: every user's)")
    p.add_argument(
        "--tombstone-age",
        type=float,
        default=TOMBSTONE_AGE / DAY,
        metavar="DAYS",
        help="keep tombstones this many days at least (default %(default)g): older clients get a full resync",
    )
    p.add_argument(
        "--marker-age",
        type=float,
        default=MARKER_AGE / DAY,
        metavar="DAYS",
        help="keep delivery markers this many days (default %(default)g: the queues keep a message 14)",
    )
    p.add_argument("--budget", type=int, default=BUDGET, help="most deletes and writes (default %(default)d)")
    p.set_defaults(run=_prune)
    dns_commands.register(commands)
    return list_actions(parser)


# -- directory -------------------------------------------------------------------


def _directory() -> Directory:
    name = os.environ.get(ENV_DIRECTORY_TABLE)
    if not name:
        raise ConfigError(f"set {ENV_DIRECTORY_TABLE} (and AWS_ENDPOINT_URL for the dev stack)")
    return Directory(aws.table(name))


def _read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the passwords differ")
    if not password:
        raise ValueError("empty password")
    return password


def _add_user(args: argparse.Namespace) -> None:
    user = _directory().add_user(args.address, _read_password(args.password_stdin))
    if os.environ.get(ENV_MAILBOX_TABLE):
        from mailpipe.services import mail_store

        mail_store().ensure_mailboxes(user.address)
    print(f"added {user.address}")


def _list_domains(args: argparse.Namespace) -> None:
    for domain in _directory().list_domains():
        extra = f"  admin: {domain.admin}" if domain.admin else "  admin: none (postmaster mail refused)"
        extra += f"  catch-all: {', '.join(domain.catch_all)}" if domain.catch_all else ""
        print(f"{domain.name}{extra}")


def _add_domain(args: argparse.Namespace) -> None:
    directory = _directory()
    domain = directory.add_domain(args.name, args.catch_all, args.admin)
    print(f"added {domain.name} (postmaster mail to {domain.admin}){_not_a_user_yet(directory, args.admin)}")


def _set_admin(args: argparse.Namespace) -> None:
    directory = _directory()
    directory.set_admin(args.name, args.admin)
    print(f"postmaster@{args.name} now reaches {args.admin}{_not_a_user_yet(directory, args.admin)}")


def _not_a_user_yet(directory: Directory, address: str) -> str:
    if directory.expand(address):
        return ""
    return f"; {address} receives nothing yet: add it with `mailpipe user add {address}`"


def _add_alias(args: argparse.Namespace) -> None:
    alias = _directory().add_alias(args.address, args.targets, replace=args.replace)
    print(f"{alias.address} -> {', '.join(alias.targets)}")


# -- deleting users: their mail goes with them unless kept ----------------------


def _mail_deletion_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep-mail", action="store_true", help="leave the mail in the store")
    parser.add_argument("--yes", action="store_true", help="do not ask before deleting mail (for scripts)")


def _delete_user(args: argparse.Namespace) -> None:
    directory = _directory()
    address = directory.lookup(args.address).address
    if not any(user.address == address for user in directory.list_users(address.rpartition("@")[2])):
        raise DirectoryError(f"no such user: {address}")
    store = None if args.keep_mail else _store_for_purge()
    if store:
        _confirm(args, f"Delete {address} and all their mail?")
    directory.delete_user(address)
    print(f"deleted {address}" + (_purge(store, address) if store else " (mail kept)"))


def _delete_domain(args: argparse.Namespace) -> None:
    directory = _directory()
    users = [user.address for user in directory.list_users(args.name)] if args.force else []
    store = _store_for_purge() if users and not args.keep_mail else None
    if store:
        _confirm(args, f"Delete {args.name} with {len(users)} users and all their mail?")
    directory.delete_domain(args.name, force=args.force)
    print(f"deleted {args.name}")
    for address in users:
        print(f"deleted {address}" + (_purge(store, address) if store else " (mail kept)"))


def _store_for_purge() -> MailStore:
    if not os.environ.get(ENV_MAILBOX_TABLE):
        raise ConfigError(
            f"set {ENV_MAILBOX_TABLE} (and MAILPIPE_MAIL_BUCKET) to delete mail, or use --keep-mail"
        )
    from mailpipe.services import mail_store

    return mail_store()


def _purge(store: MailStore, address: str) -> str:
    report = store.purge_owner(address)
    return f" and {report.messages} messages in {report.mailboxes} mailboxes"


def _confirm(args: argparse.Namespace, question: str) -> None:
    """Deleting mail cannot be undone: asked on a terminal, and elsewhere only done with --yes."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise ValueError(f"{question.rstrip('?')}: confirm with --yes (or keep the mail with --keep-mail)")
    if input(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
        raise ValueError("nothing deleted")


def _unlock_user(args: argparse.Namespace) -> None:
    directory = _directory()
    address = directory.lookup(args.address).address
    directory.unlock(address)
    # The gateways read this when next the user is throttled (auth/throttle.py).
    print(f"unlocked {address}: failed logins before now no longer count on any gateway")


def _list_users(args: argparse.Namespace) -> None:
    for user in _directory().list_users(args.domain):
        print(f"{user.address}{'  (disabled)' if user.disabled else ''}")


def _list_aliases(args: argparse.Namespace) -> None:
    for alias in _directory().list_aliases(args.domain):
        print(_alias_line(alias))


def _alias_line(alias: Alias) -> str:
    return f"{alias.address} -> {', '.join(alias.targets)}"


def _backfill_headers(args: argparse.Namespace) -> None:
    from mailpipe.services import resources
    from mailpipe.store.backfill import HeaderBackfill

    backfill = HeaderBackfill(aws.table(resources().mailbox_table), aws.client("s3"), resources().mail_bucket)
    report = backfill.run(args.owner.lower() if args.owner else None, _progress(sys.stderr))
    if sys.stderr.isatty():
        sys.stderr.write("\n")  # below the progress bar
    print(
        f"{report.found} messages had no header in the index: {report.written} written, "
        f"{report.too_large} too large (read from S3 as before), {report.gone} expunged or done meanwhile"
    )


def _prune(args: argparse.Namespace) -> None:
    from mailpipe.services import prune

    report = prune(
        args.owner.lower() if args.owner else None,
        tombstone_age=args.tombstone_age * DAY,
        marker_age=args.marker_age * DAY,
        budget=args.budget,
    )
    print(report.line())


# -- outbound queue --------------------------------------------------------------


def _queue_list(args: argparse.Namespace) -> None:
    from mailpipe.services import outbound_delivery

    entries = outbound_delivery().state.pending()
    for entry in entries:
        print(
            f"{entry.envelope_id}  {entry.recipient}  {entry.status}  attempts={entry.attempts}"
            f"  next={entry.next_attempt or '-'}  {entry.last_reply[:120]}"
        )
    print(f"{len(entries)} recipients queued")


def _queue_retry(args: argparse.Namespace) -> None:
    from mailpipe.services import outbound_delivery

    count = outbound_delivery().retry_now(args.id)
    if not count:
        raise ValueError(f"nothing queued for {args.id}")
    print(f"{count} recipients of {args.id} queued for now")


def _queue_delete(args: argparse.Namespace) -> None:
    from mailpipe.services import outbound_delivery

    count = outbound_delivery().state.delete(args.id)
    if not count:
        raise ValueError(f"nothing queued for {args.id}")
    print(f"deleted {count} recipients of {args.id}")


def _queue_suppressed(args: argparse.Namespace) -> None:
    from mailpipe.services import suppressions

    entries = suppressions().all()
    for entry in entries:
        print(f"{entry.address}  {entry.reason}  since={entry.since}  {entry.detail[:120]}")
    print(f"{len(entries)} addresses suppressed")
    if args.ses:
        ses = _ses_suppressions(lambda listed: listed.all())
        for found in ses:
            print(f"{found.address}  {found.reason}  since={found.since}  (SES account-level list)")
        print(f"{len(ses)} addresses on SES's account-level suppression list")


def _queue_unsuppress(args: argparse.Namespace) -> None:
    from mailpipe.services import suppressions

    ours = suppressions().remove(args.address)
    theirs = _ses_suppressions(lambda listed: listed.remove(args.address)) if args.ses else False
    if not (ours or theirs):
        raise ValueError(f"{args.address} is not suppressed")
    where = [name for name, removed in (("mailpipe", ours), ("SES", theirs)) if removed]
    print(f"{args.address} no longer suppressed ({', '.join(where)})")


def _ses_suppressions(action: Callable[[SesSuppressionList], T]) -> T:
    """Run `action` on SES's account-level list; SES's refusal (permissions, region) as one line."""
    from botocore.exceptions import ClientError

    try:
        return action(SesSuppressionList(aws.client("sesv2")))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ConfigError(f"SES: {error.get('Code')}: {error.get('Message')}") from None


def _queue_redrive(args: argparse.Namespace) -> int:
    from mailpipe.redrive import redrive
    from mailpipe.services import resources, spool

    urls = {"inbound": resources().inbound_queue_url, "outbound": resources().outbound_queue_url}
    names = ["inbound", "outbound"] if args.queue == "all" else [args.queue]
    failed = 0
    for name in names:
        if not urls[name]:
            raise ConfigError(f"no {name} queue configured")
        result = redrive(aws.client("sqs"), urls[name], spool())
        failed += result.failed
        notes = [f"{result.failed} left in the dead-letter queue"] if result.failed else []
        if result.without_object:
            notes.append(f"{result.without_object} without a spool object")
        print(f"{name}: {result.moved} messages redriven" + (f" ({'; '.join(notes)})" if notes else ""))
    return 1 if failed else 0


# -- servers ---------------------------------------------------------------------


def _interrupt() -> threading.Event:
    """Set at Ctrl-C or SIGTERM; installed before the ready line, so a stop right after it is clean."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def _run_dev(args: argparse.Namespace) -> None:
    from mailpipe_tools.local.stack import DevOptions, PortInUse

    users = []
    for spec in args.user or [":".join(DEMO_USER)]:
        address, sep, password = spec.partition(":")
        if not sep or not password:
            raise ValueError(f"--user wants ADDR:PASSWORD, got {spec!r}")
        users.append((address, password))
    domains = args.domain or sorted({address.rpartition("@")[2] for address, _ in users} | {DEMO_DOMAIN})
    options = DevOptions(
        host=args.host,
        smtp_port=args.smtp_port,
        submission_port=args.submission_port,
        pop3_port=args.pop3_port,
        imap_port=args.imap_port,
        aws_port=args.aws_port,
        http_port=args.http_port,
        domains=domains,
        hostname=args.hostname,
        users=users,
        state_dir=Path(tempfile.mkdtemp(prefix="mailpipe-dev-")) if args.ephemeral else args.state_dir,
        persistent=not args.ephemeral,
        transports=args.transport,
        rspamd_url=args.rspamd,
        resolver=args.resolver,
    )
    if args.template:
        options.template = args.template
    try:
        _serve_dev(args, options, users)
    except PortInUse as exc:
        raise ConfigError(f"{exc}: choose another with {PORT_FLAGS[exc.service]} PORT") from None
    finally:
        if args.ephemeral:
            shutil.rmtree(options.state_dir, ignore_errors=True)


def _serve_dev(args: argparse.Namespace, options: DevOptions, users: list[tuple[str, str]]) -> None:
    from mailpipe_tools.local.stack import DevStack

    stack = DevStack(options)
    stack.start()
    stop = _interrupt()
    try:
        env_file = options.state_dir / "dev.env"
        env_file.write_text("".join(f"export {k}={v}\n" for k, v in sorted(stack.environment.items())))
        print(f"SMTP      smtp://{args.host}:{stack.smtp_port}  (STARTTLS with a self-signed certificate)")
        print(
            f"SMTP AUTH smtp://{args.host}:{stack.submission_port}  "
            "(submission: AUTH, then mail anywhere; plaintext login allowed on loopback)"
        )
        print(
            f"IMAP      imap://{args.host}:{stack.imap_port}  (STARTTLS; plaintext login allowed on loopback)"
        )
        print(f"POP3      pop3://{args.host}:{stack.pop3_port}  (STLS; plaintext login allowed on loopback)")
        print(f"JMAP      {stack.http_url}/.well-known/jmap  (HTTP Basic, or POST /jmap/login for a token)")
        print(f"AWS       {stack.moto.endpoint}  (moto)")
        if args.rspamd:
            print(f"rspamd    {args.rspamd}  (spam filter on ports 25 and 587)")
        print(f"hostname  {options.hostname}  (--hostname to choose)")
        print(f"domains   {', '.join(options.domains)}")
        for address, password in users:
            if address in stack.kept_users:
                print(f"user      {address}  (kept from the last run, with its password)")
            else:
                print(f"user      {address}  password {password}")
        print(_state_line(options, stack.restored))
        for route in stack.transports:
            print(f"outbound  {route}{_route_note(route)}")
        print(f"CLI env   source {env_file}   (then: mailpipe mailbox list {users[0][0]})")
        heap.settle()  # start-up's objects (modules, models, a kept state's caches): not walked again
        print("mailpipe dev ready", flush=True)
        while not stop.wait(0.5) and not stack.failed.is_set():
            pass
    finally:
        print("stopping", flush=True)
        stack.stop()
    if stack.failed.is_set():
        raise ConfigError("moto, the stack's AWS, exited unexpectedly (see above); the saved state is kept")


def _route_note(route: str) -> str:
    if route.startswith("*=capture:"):
        return "  (nothing leaves this machine: remote mail lands there as .eml; --transport '*=mx' sends)"
    if route.startswith("*=mx"):
        return "  (remote mail goes to the recipients' MX hosts, on the internet)"
    return ""


def _state_line(options: DevOptions, restored: dict[str, int]) -> str:
    if not options.persistent:
        return f"state     {options.state_dir}  (ephemeral: removed at exit)"
    kept = "started empty"
    if any(restored.values()):
        kept = f"kept {restored['objects']} objects, {restored['items']} items, {restored['messages']} queued"
    return f"state     {options.state_dir}/  ({kept}; saved across restarts; --ephemeral: a throwaway stack)"


# The gateways are the container's own commands (`python -m mailpipe_gateway smtp|access`);
# these two run the same code from a checkout, under the names the README uses.


def _run_gateway(args: argparse.Namespace) -> None:
    from mailpipe_gateway.run import run_smtp_gateway

    run_smtp_gateway()


def _run_access_gateway(args: argparse.Namespace) -> None:
    from mailpipe_gateway.run import run_access_gateway

    run_access_gateway()


if __name__ == "__main__":
    sys.exit(main())
