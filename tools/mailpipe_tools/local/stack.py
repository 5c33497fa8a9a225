"""The whole of mailpipe on one machine: moto, the resources of template.yaml, the gateway, the pollers."""

from __future__ import annotations

import errno
import logging
import os
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from mailpipe import aws
from mailpipe.auth.throttle import AuthThrottle
from mailpipe.changes.feed import ChangeFeed
from mailpipe.config import ENV_DNS_SERVER, ENV_JMAP_WEBSOCKET_URL, ENV_PUSH_ENDPOINT, ConfigError, Resources
from mailpipe.directory import Directory, DirectoryError
from mailpipe.redelivery import ENV_REDELIVERY_BACKOFF
from mailpipe.spool import Spool
from mailpipe.store import MailStore
from mailpipe_gateway.access import AccessParts, access_server, change_feed
from mailpipe_gateway.background import BackgroundLoop
from mailpipe_gateway.imap.server import IMAPServer
from mailpipe_gateway.listeners import executor_runner
from mailpipe_gateway.pop3.server import POP3Server
from mailpipe_gateway.smtp.app import build_smtp_gateway, build_submission_gateway
from mailpipe_gateway.smtp.server import SMTPGateway
from mailpipe_gateway.smtp.settings import GatewaySettings
from mailpipe_gateway.tls import server_context, write_self_signed
from mailpipe_tools.local.event_source import SqsPoller
from mailpipe_tools.local.functions import LocalFunction, in_process_lookup, load_function
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.moto_process import MotoPortInUse, MotoProcess
from mailpipe_tools.local.provision import REGION, Deployment, provision
from mailpipe_tools.local.schedules import ScheduledRuns
from mailpipe_tools.local.state_lock import StateLock
from mailpipe_tools.local.stream_source import StreamPoller
from mailpipe_tools.local.template import DEFAULT_TEMPLATE, StreamEventSource, Template

log = logging.getLogger(__name__)
T = TypeVar("T")

VALIDATE_FUNCTION = "ValidateRecipientFunction"
OUTBOX = "outbox"  # under the state dir: remote mail, captured

# What the Lambda runtime would provide, and what only makes sense on AWS.
LOCAL_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon locally
    "POWERTOOLS_METRICS_DISABLED": "true",  # EMF metrics would only clutter the console
}


@dataclass
class DevOptions:
    host: str = "127.0.0.1"
    smtp_port: int = 2525
    submission_port: int = 2587
    pop3_port: int = 1110
    imap_port: int = 1143
    aws_port: int = 4566
    # The JMAP function behind a local HTTP API (jmap_http.py), as `mailpipe dev --http-port`
    # serves it; None: not served (tests start their own, on a free port).
    http_port: int | None = None
    # The server's own name (greeting, Received:, the certificate, bounces); "": mail.FIRST-DOMAIN.
    hostname: str = ""
    domains: list[str] = field(default_factory=lambda: ["example.test"])
    users: list[tuple[str, str]] = field(default_factory=list)
    template: Path = DEFAULT_TEMPLATE
    state_dir: Path = Path(".mailpipe")
    # Keep mail, users and queued messages in state_dir across restarts (snapshot.py); without it
    # the stack starts empty. Object bodies are files under state_dir either way (s3_files.py).
    persistent: bool = False
    retry_after: int | None = 5
    # The functions' back-off for failed records ("FIRST;CAP" seconds, mailpipe/redelivery.py):
    # in dev a failed record comes back within minutes, not the hours it waits on AWS.
    redelivery_backoff: str = "5;300"
    transports: list[str] = field(default_factory=list)
    # "HOST:PORT" of the DNS server every lookup goes to (SPF, DKIM, DMARC, MX...); None: the system's.
    resolver: str | None = None
    poll_wait_seconds: int = 1
    run_pollers: bool = True
    # An AWS endpoint already running (a moto server the benches share between stacks): none is
    # started, and nothing is kept (the stack's own moto runs in a child process, moto_process.py).
    aws_endpoint: str | None = None
    # The spam filter (`mailpipe dev --rspamd URL`): rspamd's normal worker; None: no filter.
    rspamd_url: str | None = None

    def __post_init__(self) -> None:
        if not self.hostname:
            self.hostname = f"mail.{self.domains[0]}" if self.domains else "mail.example.test"


JMAP_FUNCTION = "JmapFunction"


class PortInUse(ConfigError):
    def __init__(self, service: str, port: int) -> None:
        super().__init__(f"port {port} ({service}) is in use")
        self.service = service
        self.port = port


def _listening(service: str, port: int, start: Callable[[], T]) -> T:
    """`start()`, which binds `port`; a port taken says which (the command line says which flag)."""
    try:
        return start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(service, port) from None
        raise


class DevStack:
    def __init__(self, options: DevOptions) -> None:
        self.options = options
        self.lock = StateLock(options.state_dir)
        self.moto: MotoProcess | None = None
        # Set if the moto child dies while the stack runs (`mailpipe dev` then stops, saying so).
        self.failed = threading.Event()
        self.restored: dict[str, int] = {}
        self.transports: list[str] = []  # the outbound routes in force, `DOMAIN=ROUTE`
        self.kept_users: list[str] = []  # asked for, and found in the kept state (password and all)
        self.loop = BackgroundLoop()
        self.executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="mailpipe-io")
        self.template = Template.load(options.template)
        self.deployment: Deployment | None = None
        self.resources: Resources | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.gateway: SMTPGateway | None = None
        self.submission: SMTPGateway | None = None
        self.pop3: POP3Server | None = None
        self.imap: IMAPServer | None = None
        self.http: LocalHttpApi | None = None
        self.pollers: list[SqsPoller] = []
        self.stream_pollers: list[StreamPoller] = []
        # The access gateway's change feed, as a gateway process has one (shared by build_imap's).
        self.changes: ChangeFeed | None = None
        # What the access gateway's sessions share in one process (its memory of the store, kept
        # current by `changes`): one, as in a gateway process, for the stack's POP3 and IMAP and
        # for every server build_imap/build_pop3 makes.
        self.parts: AccessParts | None = None
        self.schedules: list[ScheduledRuns] = []
        self.environment: dict[str, str] = {}
        # One per process, as in production: submission, POP3 and IMAP count failed logins together.
        self.throttle = AuthThrottle()

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self.lock.acquire()
        try:
            if not self.options.aws_endpoint:
                self._start_moto()
            self._start_services()
        except BaseException:
            # A port in use, a bad template...: what already reads moto stops first (quietly),
            # then the moto child, which must not outlive the failed start.
            for stream_poller in self.stream_pollers:
                stream_poller.stop()
            if self.http is not None:
                self.http.stop()
                self.http = None
            if self.changes is not None:
                self.changes.close()
                self.changes = None
            if self.moto is not None:
                self.moto.stop()
                self.moto = None
            self.lock.release()
            raise

    def _start_moto(self) -> None:
        self.moto = MotoProcess(
            self.options.host,
            self.options.aws_port,
            state_dir=self.options.state_dir,
            persistent=self.options.persistent,
            keep_fds=self.lock.fds(),
            on_exit=lambda _code: self.failed.set(),
        )
        try:
            self.moto.start()
        except MotoPortInUse:
            self.moto = None
            raise PortInUse("aws", self.options.aws_port) from None

    def _start_services(self) -> None:
        endpoint = self.moto.endpoint if self.moto is not None else str(self.options.aws_endpoint)
        self.environment = {**LOCAL_ENVIRONMENT, "AWS_ENDPOINT_URL": endpoint}
        os.environ.update(self.environment)
        self.deployment = provision(
            self.template,
            aws.client("s3"),
            aws.client("sqs"),
            aws.client("dynamodb"),
            sesv2=aws.client("sesv2"),
            sns=aws.client("sns"),
        )
        if self.moto is not None and self.options.persistent:
            self.restored = self.moto.restore()  # the child saves it from now on
        function_env = {
            k: self.deployment.resolve(v) for k, v in self.template.function_environment().items()
        }
        # Locally nothing leaves the machine unless asked (`--transport '*=mx'`): remote mail is
        # written to the outbox as .eml files (mailpipe/outbound/capture.py). Never SES.
        transports = list(self.options.transports)
        if not any(entry.startswith("*=") for entry in transports):
            transports.append(f"*=capture:{self.outbox}")
        self.transports = transports
        function_env["MAILPIPE_TRANSPORTS"] = ",".join(transports)
        function_env["MAILPIPE_HOSTNAME"] = self.options.hostname
        function_env[ENV_REDELIVERY_BACKOFF] = self.options.redelivery_backoff
        if self.options.resolver:
            function_env[ENV_DNS_SERVER] = self.options.resolver
        # The WebSocket API is the local HTTP server's: the session names ws://HOST:PORT/jmap/ws, and
        # the relay posts to its @connections once it serves (_start_http); never to AWS's names.
        function_env[ENV_JMAP_WEBSOCKET_URL] = ""
        function_env[ENV_PUSH_ENDPOINT] = ""
        os.environ.update(function_env)
        self.environment.update(function_env)
        self.resources = Resources.from_env()
        self.functions = {
            logical_id: load_function(self.template, logical_id, self.deployment.refs[logical_id])
            for logical_id in self.template.functions()
        }
        self._seed_directory()
        # The mailbox table's stream, relayed to the changes topic as on AWS (docs/change-feed.md).
        # Always, unlike the SQS pollers: a gateway whose change feed is subscribed trusts it.
        self.stream_pollers = [self._stream_poller(source) for source in self.template.stream_event_sources()]
        for stream_poller in self.stream_pollers:
            stream_poller.start()
        self.changes = change_feed(self.resources)
        if self.changes is not None:
            self.changes.start()
        self.loop.start()
        self.gateway = self.build_gateway(self.spool(), port=self.options.smtp_port)
        _listening("smtp", self.options.smtp_port, lambda: self.loop.run(self.gateway.start()))
        self.submission = self.build_submission(
            self.spool(), port=self.options.submission_port, throttle=self.throttle
        )
        _listening("submission", self.options.submission_port, lambda: self.loop.run(self.submission.start()))
        self.pop3 = self.build_pop3(port=self.options.pop3_port, throttle=self.throttle)
        _listening("pop3", self.options.pop3_port, lambda: self.loop.run(self.pop3.start()))
        self.imap = self.build_imap(port=self.options.imap_port, throttle=self.throttle)
        _listening("imap", self.options.imap_port, lambda: self.loop.run(self.imap.start()))
        if self.options.http_port is not None:
            self.http = _listening("http", self.options.http_port, self._start_http)
        if self.options.run_pollers:
            self.pollers = [self._poller(source) for source in self.template.sqs_event_sources()]
            for poller in self.pollers:
                poller.start()
            self.schedules = [
                ScheduledRuns(self.functions[name], interval) for name, interval in self.template.schedules()
            ]
            for scheduled in self.schedules:
                scheduled.start()

    def _start_http(self) -> LocalHttpApi:
        """JMAP at http://HOST:PORT/ (the session at /.well-known/jmap), through the function's handler.

        LocalHttpApi also serves the webmail's static files (webmail/) at `/`: one origin serves
        page and API.
        """
        function = self.functions[JMAP_FUNCTION]
        http = LocalHttpApi(function.handler, function.name, self.options.host, self.options.http_port or 0)
        http.start()
        os.environ[ENV_PUSH_ENDPOINT] = self.environment[ENV_PUSH_ENDPOINT] = http.url
        return http

    def stop(self) -> None:
        if self.http is not None:
            self.http.stop()
        for poller in self.pollers:
            poller.stop()
        for stream_poller in self.stream_pollers:
            stream_poller.stop()
        for scheduled in self.schedules:
            scheduled.stop()
        for gateway in (self.gateway, self.submission):
            if gateway is not None:
                self.loop.run(gateway.stop())
        if self.pop3 is not None:
            self.loop.run(self.pop3.stop())
        if self.imap is not None:
            self.loop.run(self.imap.stop())
        if self.parts is not None:
            self.parts.close()
        if self.changes is not None:
            self.changes.close()
        self.loop.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.moto is not None:
            self.moto.stop()  # last: its final save sees everything the stack did
        self.lock.release()

    @property
    def outbox(self) -> Path:
        """Where remote mail is written unless --transport sends it (`capture` transport)."""
        return (self.options.state_dir / OUTBOX).resolve()

    # -- parts, also for tests and benchmarks ------------------------------------

    def build_gateway(self, spool: Spool, port: int = 0, **settings_overrides: Any) -> SMTPGateway:
        """A gateway wired like the stack's own, around any spool (say one whose S3 is down)."""
        return build_smtp_gateway(
            self._smtp_settings(port, settings_overrides), spool, self._lookup(), self.executor
        )

    def build_submission(
        self,
        spool: Spool,
        port: int = 0,
        *,
        implicit_tls: bool = False,
        plaintext_loopback: bool = True,
        throttle: AuthThrottle | None = None,
        **settings: Any,
    ) -> SMTPGateway:
        """The submission listener (AUTH, then mail anywhere); in dev AUTH works without TLS on loopback.

        Without `throttle` it counts failed logins on its own (tests that fail logins on purpose).
        """
        return build_submission_gateway(
            self._smtp_settings(port, settings),
            spool,
            self._lookup(),
            self.directory(),
            self.executor,
            implicit_tls=implicit_tls,
            plaintext_loopback=plaintext_loopback,
            throttle=throttle,
        )

    def _smtp_settings(self, port: int, overrides: dict[str, Any]) -> GatewaySettings:
        cert, key = write_self_signed(self.options.state_dir / "tls", self.options.hostname)
        return GatewaySettings(
            host=self.options.host,
            port=port,
            hostname=self.options.hostname,
            tls_cert=cert,
            tls_key=key,
            **{"rspamd_url": self.options.rspamd_url, **overrides},
        )

    def _lookup(self) -> Any:
        validate = self.functions[VALIDATE_FUNCTION]
        return in_process_lookup(validate.handler, validate.name)

    @property
    def submission_port(self) -> int:
        assert self.submission is not None
        return self.submission.port

    def access_parts(self) -> AccessParts:
        """The stack's access parts (made at the first call): its gateway process's memory."""
        assert self.resources is not None
        if self.parts is None:
            self.parts = AccessParts.from_resources(self.resources, changes=self.changes)
        return self.parts

    def build_pop3(self, port: int = 0, **options: Any) -> POP3Server:
        """A POP3 server on the stack's store; in dev, plaintext logins are allowed on loopback.

        It shares the stack's access parts (memory), as servers of one gateway process do, but has
        a login throttle of its own unless given the stack's (`throttle=stack.throttle`).
        """
        return self._access_server("pop3", port, options)  # type: ignore[return-value]

    def build_imap(self, port: int = 0, **options: Any) -> IMAPServer:
        """An IMAP server on the stack's store, like build_pop3's."""
        return self._access_server("imap", port, options)  # type: ignore[return-value]

    def _access_server(self, protocol: Literal["imap", "pop3"], port: int, options: dict[str, Any]) -> Any:
        options.setdefault("throttle", AuthThrottle())
        server = access_server(
            protocol,
            self.access_parts(),
            self._tls(),
            executor_runner(self.executor),
            limiter=options.pop("limiter", None),  # say ConnectionLimiter(2, 1, exempt=()) to test caps
            **self._listener(port),
        )
        for name, value in options.items():  # test knobs, e.g. plaintext_loopback=False
            setattr(server.context, name, value)
        return server

    def _listener(self, port: int) -> dict[str, Any]:
        return {
            "host": self.options.host,
            "port": port,
            "hostname": self.options.hostname,
            "plaintext_loopback": True,
        }

    def _tls(self) -> ssl.SSLContext:
        cert, key = write_self_signed(self.options.state_dir / "tls", self.options.hostname)
        return server_context(cert, key)

    @property
    def imap_port(self) -> int:
        assert self.imap is not None
        return self.imap.port

    @property
    def http_url(self) -> str | None:
        return self.http.url if self.http is not None else None

    @property
    def pop3_port(self) -> int:
        assert self.pop3 is not None
        return self.pop3.port

    def spool(self, s3_endpoint: str | None = None, sqs_endpoint: str | None = None) -> Spool:
        assert self.resources is not None
        return Spool(
            aws.client("s3", s3_endpoint),
            aws.client("sqs", sqs_endpoint),
            self.resources.mail_bucket,
            self.resources.inbound_queue_url,
        )

    def directory(self) -> Directory:
        assert self.resources is not None
        return Directory(aws.table(self.resources.directory_table))

    def mail_store(self) -> MailStore:
        assert self.resources is not None
        return MailStore(
            aws.table(self.resources.mailbox_table), aws.client("s3"), self.resources.mail_bucket
        )

    @property
    def smtp_port(self) -> int:
        assert self.gateway is not None
        return self.gateway.port

    def _poller(self, source) -> SqsPoller:
        assert self.deployment is not None
        return SqsPoller(
            aws.client("sqs"),
            self.deployment.refs[source.queue],
            self.deployment.arns[source.queue],
            self.functions[source.function],
            batch_size=source.batch_size,
            wait_seconds=self.options.poll_wait_seconds,
            retry_after=self.options.retry_after,
        )

    def _stream_poller(self, source: StreamEventSource) -> StreamPoller:
        assert self.deployment is not None
        return StreamPoller(
            aws.client("dynamodbstreams"),
            self.deployment.stream_arns[source.table],
            self.functions[source.function],
            batch_size=source.batch_size,
            starting_position=source.starting_position,
            filters=source.filters,
        )

    def _seed_directory(self) -> None:
        """The domains and users asked for, those a kept state lacks: what it has (a catch-all,
        a password changed since) stays as it is."""
        directory, store = self.directory(), self.mail_store()
        for domain in self.options.domains:
            if directory.get_domain(domain) is None:
                directory.add_domain(domain)
        for address, password in self.options.users:
            try:
                directory.add_user(address, password)
            except DirectoryError:
                self.kept_users.append(address)
                continue
            store.ensure_mailboxes(directory.lookup(address).address)
        # Postmaster mail must reach a person: each domain's first user reads it (else the first user
        # of a hosted domain: a demo user of a domain this stack does not host cannot receive it).
        hosted = {d.lower() for d in self.options.domains}
        users = [
            directory.lookup(address).address
            for address, _ in self.options.users
            if address.rpartition("@")[2].lower() in hosted
        ]
        for domain in self.options.domains:
            admin = next((u for u in users if u.endswith("@" + domain)), users[0] if users else None)
            current = directory.get_domain(domain)
            # Written only when it differs: a restart on a kept state then changes nothing.
            if admin and (current is None or current.admin != admin):
                directory.set_admin(domain, admin)
