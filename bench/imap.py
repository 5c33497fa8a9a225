"""IMAP benchmark: mailpipe's IMAP gateway on the dev stack against Dovecot, same load, same machine.

Run by hand from the repository root (Dovecot from Debian's dovecot-imapd must be installed):

    .venv/bin/python bench/imap.py             # 16 clients for 30 s on each server, about 3 minutes
    .venv/bin/python bench/imap.py --quick     # 8 clients for 10 s, about 1 minute
    .venv/bin/python bench/imap.py --clients 32 --seconds 60 --users 8 --messages 200

It starts, each in its own processes:

  mailpipe  `mailpipe dev` (the IMAP gateway and the rest of the dev stack in one process, moto in
            a child process of its own), every port chosen by the system, in a temporary directory;
  Dovecot   `dovecot -F` with a configuration of its own (tests/dovecot.py), maildir storage and
            Debian's defaults otherwise (one imap-login process per connection, fsync on).

Both get the same --users users, each with the same --messages messages in INBOX (the corpus of
../shared/corpus, repeated). Then --clients concurrent clients (asyncio, in this process) run the
same mixed script against one server for --seconds, after a --warmup, then against the other:

    LOGIN, SELECT INBOX, FETCH 1:* (FLAGS ENVELOPE), FETCH n BODY.PEEK[], STORE n +FLAGS (\\Seen),
    APPEND INBOX (a corpus message), UID STORE u +FLAGS.SILENT (\\Deleted), UID EXPUNGE u (the
    message just appended, so mailboxes keep their size), LOGOUT

and it prints commands per second, p50/p99 latency per command, server CPU per command, the
ratio mailpipe/Dovecot in commands per second (issue 11's target: >= 0.25) and, for mailpipe, the
AWS requests per command, counted at the moto server (its GET /_mailpipe/requests; "n/a" from a
moto server without that count). A command counts when it completes inside the measured window;
NO, BAD and dropped connections count as failures.

Passwords: by default Dovecot stores them in plaintext (no hash at LOGIN) and mailpipe answers
every LOGIN after the first from its cache of verified credentials (core mailpipe/auth/cache.py), so
the figures are of the IMAP engines, not of argon2id. --argon2id stores the same argon2id hash
(t=3, 64 MiB) in Dovecot too, with Dovecot's auth cache on and the same TTL as mailpipe's
(MAILPIPE_AUTH_CACHE_TTL, set for the dev stack). Beware: Dovecot's auth cache keeps the passdb
entry, the hash, and verifies the password against it at every LOGIN all the same; mailpipe's
keeps the verification. --only measures one side.

CPU is utime+stime from /proc: for mailpipe the `mailpipe dev` process and its moto child, for
Dovecot the master; each with every live descendant and what it reaped (cutime/cstime); mailpipe's
is also given split between the `mailpipe dev` process and its moto child. The load client shares
the machine's cores with the server under test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # tests/dovecot.py: Dovecot on loopback

from dovecot import Dovecot, find_dovecot  # noqa: E402

VENV_BIN = Path(sys.executable).parent
CORPUS = REPO_ROOT.parent / "shared" / "corpus"
HOST = "127.0.0.1"
DOMAIN = "bench.test"
PASSWORD = "bench-password"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPLY_TIMEOUT = 60.0  # seconds for any one IMAP response
START_TIMEOUT = 120.0  # seconds for `mailpipe dev` to be ready
STOP_TIMEOUT = 20.0
TARGET_RATIO = 0.25  # mailpipe commands/s >= 0.25x Dovecot's (issue 11)
AUTH_CACHE_TTL_SECONDS = 300  # both servers' with --argon2id: mailpipe's default
# What the dev stack's own pollers ask of moto whatever the clients do (SQS long polls, the
# mailbox table's stream): left out of the requests a command costs.
BACKGROUND_REQUESTS = ("sqs:ReceiveMessage", "dynamodbstreams:")

COMMANDS = (
    "LOGIN",
    "SELECT",
    "FETCH envelopes",
    "FETCH body",
    "STORE \\Seen",
    "APPEND",
    "STORE \\Deleted",
    "UID EXPUNGE",
    "LOGOUT",
)


# -- a small asyncio IMAP client ----------------------------------------------------------------


class ImapError(Exception):
    """A NO or BAD, or a broken connection."""


class CommandFailed(ImapError):
    """An ImapError already counted against the command that met it."""


class Client:
    """One IMAP connection: tagged commands, synchronizing literals, responses read with their literals."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.tags = 0

    @classmethod
    async def connect(cls, port: int) -> Client:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(HOST, port, limit=1 << 20), REPLY_TIMEOUT
        )
        client = cls(reader, writer)
        greeting = await client.response()
        if not greeting.startswith(b"* OK"):
            client.close()
            raise ImapError(f"greeting: {greeting[:80]!r}")
        return client

    async def response(self) -> bytes:
        """One response line, with any literals it carries (``{n}`` CRLF then n octets) inline."""
        out = b""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), REPLY_TIMEOUT)
            if not line:
                raise ImapError("connection closed")
            out += line
            match = re.search(rb"\{(\d+)\}\r\n$", line)
            if match is None:
                return out
            out += await asyncio.wait_for(self.reader.readexactly(int(match.group(1))), REPLY_TIMEOUT)

    async def command(self, text: bytes, literal: bytes | None = None) -> list[bytes]:
        """Sends ``tag text`` (and ``literal``, once the server asks for it); returns the untagged
        responses, or raises ImapError on NO or BAD."""
        self.tags += 1
        tag = b"b%d" % self.tags
        if literal is None:
            self.writer.write(tag + b" " + text + b"\r\n")
        else:
            self.writer.write(tag + b" " + text + b" {%d}\r\n" % len(literal))
        untagged: list[bytes] = []
        while True:
            line = await self.response()
            if line.startswith(b"+") and literal is not None:
                self.writer.write(literal + b"\r\n")
                literal = None
            elif line.startswith(tag + b" "):
                if line[len(tag) + 1 :].startswith(b"OK"):
                    untagged.append(line)
                    return untagged
                raise ImapError(line.decode("latin-1").strip()[:100])
            else:
                untagged.append(line)

    def close(self) -> None:
        self.writer.close()


def quote(text: str) -> bytes:
    return b'"' + text.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


# -- the load -------------------------------------------------------------------------------------


@dataclass
class Result:
    """What one measured run saw."""

    server: str
    seconds: float = 0.0
    sessions: int = 0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    failures: Counter[str] = field(default_factory=Counter)
    cpu: float | None = None  # server CPU seconds during the run
    aws_requests: Counter[str] | None = None  # by kind, during the run (mailpipe; None: not counted)
    backend_cpu: float | None = None  # of `cpu`, the moto child's (mailpipe; None: not split)
    client_cpu: float | None = None  # this process's CPU seconds during the run
    timed_out: bool = False

    @property
    def commands(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds else 0.0

    def cpu_ms_per_command(self) -> float | None:
        return None if self.cpu is None or not self.commands else self.cpu * 1000 / self.commands

    def command_requests(self) -> Counter[str]:
        """The AWS requests the clients' commands caused: all but the stack's own pollers'."""
        return Counter(
            {
                kind: n
                for kind, n in (self.aws_requests or {}).items()
                if not kind.lower().startswith(BACKGROUND_REQUESTS[1]) and kind != BACKGROUND_REQUESTS[0]
            }
        )

    def requests_per_command(self) -> float | None:
        if self.aws_requests is None or not self.commands:
            return None
        return sum(self.command_requests().values()) / self.commands


class Load:
    """``clients`` concurrent clients running the mixed script against ``port`` until a deadline."""

    def __init__(
        self, port: int, users: list[str], messages: int, corpus: list[bytes], clients: int, seed: int
    ) -> None:
        self.port = port
        self.users = users
        self.messages = messages  # each INBOX holds at least these, numbered 1..messages
        self.corpus = corpus
        self.clients = clients
        self.random = random.Random(seed)
        self.result: Result | None = None  # None during the warm-up: nothing is recorded
        self.window = (0.0, 0.0)

    async def run(self, seconds: float, result: Result | None) -> None:
        """Runs for ``seconds``; sessions in flight at the end finish their script, unrecorded."""
        self.result = result
        start = time.monotonic()
        self.window = (start, start + seconds)
        workers = [asyncio.create_task(self.worker(i)) for i in range(self.clients)]
        done, pending = await asyncio.wait(workers, timeout=seconds + REPLY_TIMEOUT * 2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()  # a bug in the client must not pass for a result
        if result is not None:
            result.seconds = seconds
            result.timed_out = bool(pending)

    async def worker(self, number: int) -> None:
        user = self.users[number % len(self.users)]
        errors_in_a_row = 0
        while time.monotonic() < self.window[1] and errors_in_a_row < 5:
            try:
                await self.session(user)
                errors_in_a_row = 0
            except (ImapError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                errors_in_a_row += 1
                if not isinstance(exc, CommandFailed):
                    self.fail("session", str(exc) or type(exc).__name__)
                await asyncio.sleep(0.1)

    def fail(self, name: str, reason: str) -> None:
        if self.result is not None and time.monotonic() <= self.window[1]:
            self.result.failures[f"{name}: {reason}"[:100]] += 1

    async def timed(
        self, client: Client, name: str, text: bytes, literal: bytes | None = None
    ) -> list[bytes]:
        began = time.monotonic()
        try:
            responses = await client.command(text, literal)
        except (ImapError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.fail(name, str(exc) or type(exc).__name__)
            raise CommandFailed(str(exc)) from exc
        ended = time.monotonic()
        if self.result is not None and self.window[0] <= began and ended <= self.window[1]:
            self.result.latencies[name].append(ended - began)
        return responses

    async def session(self, user: str) -> None:
        client = await Client.connect(self.port)
        try:
            await self.timed(client, "LOGIN", b"LOGIN " + quote(user) + b" " + quote(PASSWORD))
            await self.timed(client, "SELECT", b"SELECT INBOX")
            await self.timed(client, "FETCH envelopes", b"FETCH 1:* (FLAGS ENVELOPE)")
            number = self.random.randint(1, self.messages)
            await self.timed(client, "FETCH body", b"FETCH %d BODY.PEEK[]" % number)
            await self.timed(client, "STORE \\Seen", b"STORE %d +FLAGS (\\Seen)" % number)
            message = self.random.choice(self.corpus)
            done = await self.timed(client, "APPEND", b"APPEND INBOX", message)
            uid = re.search(rb"\[APPENDUID \d+ (\d+)\]", done[-1])
            if uid is None:
                raise ImapError(f"no APPENDUID in {done[-1][:80]!r}")
            await self.timed(client, "STORE \\Deleted", b"UID STORE %s +FLAGS.SILENT (\\Deleted)" % uid[1])
            await self.timed(client, "UID EXPUNGE", b"UID EXPUNGE %s" % uid[1])
            await self.timed(client, "LOGOUT", b"LOGOUT")
            if self.result is not None and time.monotonic() <= self.window[1]:
                self.result.sessions += 1
        finally:
            client.close()


async def seed(port: int, users: list[str], messages: list[bytes]) -> None:
    """APPENDs ``messages`` to each user's INBOX (users in parallel) and checks the count."""

    async def one(user: str) -> None:
        client = await Client.connect(port)
        try:
            await client.command(b"LOGIN " + quote(user) + b" " + quote(PASSWORD))
            for message in messages:
                await client.command(b"APPEND INBOX", message)
            selected = b"".join(await client.command(b"EXAMINE INBOX"))
            exists = re.search(rb"\* (\d+) EXISTS", selected)
            if exists is None or int(exists[1]) != len(messages):
                raise RuntimeError(f"{user}: INBOX should hold {len(messages)} messages: {selected[:200]!r}")
            await client.command(b"LOGOUT")
        finally:
            client.close()

    await asyncio.gather(*(one(user) for user in users))


# -- measuring CPU --------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from 3 (state) on


def process_cpu(pid: int) -> float:
    """utime + stime of a process and all its threads, in seconds."""
    fields = _stat(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and its descendants, live or reaped (utime, stime, cutime, cstime)."""
    parents: dict[int, int] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
            stats[int(entry.name)] = fields
    total = 0.0
    for pid, fields in stats.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += sum(int(value) for value in fields[11:15]) / CLK_TCK
    return total


# -- the servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    cpu: Callable[[], float]  # the server's CPU seconds so far
    # AWS requests so far, by kind (mailpipe's moto); None: not counted.
    aws_requests: Callable[[], Counter[str] | None] = lambda: None
    # Of cpu(), what the AWS stand-in (mailpipe's moto child) used; None: not split.
    backend_cpu: Callable[[], float | None] = lambda: None


def moto_requests(endpoint: str) -> Counter[str] | None:
    """The requests the moto server has answered, by kind; None if it does not count them."""
    try:
        with urlopen(f"{endpoint}/_mailpipe/requests", timeout=10) as response:
            counts = json.loads(response.read())
    except (URLError, OSError, ValueError):
        return None
    return Counter(counts) if isinstance(counts, dict) else None


def moto_cpu(root: int) -> float | None:
    """CPU seconds of the moto server that `mailpipe dev` (pid `root`) runs as its child."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or (fields := _stat(int(entry.name))) is None or int(fields[1]) != root:
            continue
        with contextlib.suppress(OSError):
            if b"moto_server" in (entry / "cmdline").read_bytes():
                return tree_cpu(int(entry.name))
    return None


def dev_port_options() -> list[str]:
    """Every ``--*-port`` option of ``mailpipe dev`` (SMTP, IMAP, POP3, AWS, and any added since), so
    that the bench gets system-chosen ports and never collides with a stack already running."""
    text = subprocess.run(
        [str(VENV_BIN / "mailpipe"), "dev", "--help"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return sorted(set(re.findall(r"--[a-z0-9]+(?:-[a-z0-9]+)*-port\b", text)))


def tree_path() -> str:
    """PYTHONPATH for this tree's code: the virtualenv's `mailpipe` is an editable install of
    whichever checkout made it (a worktree's bench would measure another tree's code)."""
    repo = Path(__file__).resolve().parents[1]
    return os.pathsep.join(str(repo / part) for part in ("layers/core", "gateway", "tools"))


@contextlib.contextmanager
def mailpipe_dev(
    users: list[str], workdir: Path, auth_cache_ttl: int = AUTH_CACHE_TTL_SECONDS
) -> Iterator[Server]:
    """`mailpipe dev` as a subprocess, all ports chosen by the system; stopped on exit."""
    log = workdir / "mailpipe-dev.log"
    command = [str(VENV_BIN / "mailpipe"), "dev", "--domain", DOMAIN]
    for option in dev_port_options():
        command += [option, "0"]
    for user in users:
        command += ["--user", f"{user}:{PASSWORD}"]
    env = {**os.environ, "MAILPIPE_AUTH_CACHE_TTL": str(auth_cache_ttl), "PYTHONPATH": tree_path()}
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=workdir, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "mailpipe dev ready" not in (text := log.read_text(errors="replace")):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mailpipe dev did not start; its log ends:\n{text[-3000:]}")
            time.sleep(0.2)
        port = re.search(r"IMAP\s+imap://[\d.]+:(\d+)", text)
        if port is None:
            raise RuntimeError(f"no IMAP port in the output of mailpipe dev:\n{text[-3000:]}")
        endpoint = re.search(r"AWS\s+(http://\S+)", text)
        if endpoint is None:
            raise RuntimeError(f"no AWS endpoint in the output of mailpipe dev:\n{text[-3000:]}")
        yield Server(
            "mailpipe",
            int(port[1]),
            lambda: tree_cpu(process.pid),  # the gateway and its moto child
            lambda: moto_requests(endpoint[1]),
            lambda: moto_cpu(process.pid),
        )
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # `mailpipe dev` stops its stack on Ctrl-C
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def dovecot(users: list[str], argon2id: bool) -> Iterator[Server]:
    """Plaintext passwords; or argon2id hashes behind Dovecot's auth cache (positive hits only, as
    mailpipe's), with mailpipe's TTL."""
    scheme, settings = "PLAIN", {}
    if argon2id:
        scheme = "ARGON2ID"
        settings = {
            "auth_cache_size": "10M",
            "auth_cache_ttl": f"{AUTH_CACHE_TTL_SECONDS} secs",
            "auth_cache_negative_ttl": "0",
        }
    with Dovecot(dict.fromkeys(users, PASSWORD), scheme=scheme, settings=settings) as server:
        assert server.process is not None
        pid = server.process.pid
        yield Server("Dovecot", server.port, lambda: tree_cpu(pid))


# -- running and reporting ------------------------------------------------------------------------


def corpus_messages() -> list[bytes]:
    files = sorted(CORPUS.rglob("*.eml"))
    if not files:
        raise SystemExit(f"bench/imap.py: no corpus messages in {CORPUS}")
    return [path.read_bytes() for path in files]


def measure(server: Server, args: argparse.Namespace, users: list[str], corpus: list[bytes]) -> Result:
    load = Load(server.port, users, args.messages, corpus, args.clients, seed=args.seed)
    print(f"  {server.name}: warm-up {args.warmup:g}s ...", flush=True)
    asyncio.run(load.run(args.warmup, None))
    result = Result(server.name)
    cpu, client_cpu, requests = server.cpu(), time.process_time(), server.aws_requests()
    backend = server.backend_cpu()
    print(f"  {server.name}: {args.clients} clients for {args.seconds:g}s ...", flush=True)
    asyncio.run(load.run(args.seconds, result))
    result.cpu = server.cpu() - cpu
    backend_after = server.backend_cpu()
    if backend is not None and backend_after is not None:
        result.backend_cpu = backend_after - backend
    result.client_cpu = time.process_time() - client_cpu
    after = server.aws_requests()
    if requests is not None and after is not None:
        # Sessions in flight at the window's end finish unrecorded: counted here, a slight excess.
        result.aws_requests = after - requests
    print(
        f"  {server.name}: {result.commands} commands, {result.sessions} sessions, "
        f"{sum(result.failures.values())} failures",
        flush=True,
    )
    return result


def percentile(values: list[float], q: int) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def ms(value: float | None) -> str:
    return fmt(None if value is None else value * 1000)


def report(results: list[Result]) -> float | None:
    print()
    header = (
        f"{'server':<10} {'sessions':>8} {'commands':>9} {'secs':>5} {'cmds/s':>8} {'server CPU ms/cmd':>18}"
    )
    header += f" {'client CPU ms/cmd':>18} {'failures':>8}"
    print(header)
    print("-" * len(header))
    for r in results:
        client = None if r.client_cpu is None or not r.commands else r.client_cpu * 1000 / r.commands
        print(
            f"{r.server:<10} {r.sessions:>8} {r.commands:>9} {r.seconds:>5.0f} {r.rate:>8.1f}"
            f" {fmt(r.cpu_ms_per_command(), '.2f'):>18} {fmt(client, '.2f'):>18}"
            f" {sum(r.failures.values()):>8}{' (timed out)' if r.timed_out else ''}"
        )
    print()
    names = "".join(f"  {r.server + ' n':>12} {'p50 ms':>7} {'p99 ms':>7}" for r in results)
    print(f"{'command':<16}{names}")
    for command in COMMANDS:
        cells = "".join(
            f"  {len(r.latencies[command]):>12} {ms(percentile(r.latencies[command], 50)):>7}"
            f" {ms(percentile(r.latencies[command], 99)):>7}"
            for r in results
        )
        print(f"{command:<16}{cells}")
    for r in results:
        if r.server != "mailpipe":
            continue
        if r.cpu is not None and r.backend_cpu is not None and r.commands:
            print(
                f"\nmailpipe server CPU ms/cmd: {(r.cpu - r.backend_cpu) * 1000 / r.commands:.2f} in the"
                f" `mailpipe dev` process (gateway, feed, local functions),"
                f" {r.backend_cpu * 1000 / r.commands:.2f} in its moto child"
            )
        if r.aws_requests is None:
            print("\nmailpipe AWS requests/command: n/a (this moto server does not count requests)")
            continue
        kinds = ", ".join(f"{kind} {n / r.commands:.2f}" for kind, n in r.command_requests().most_common(8))
        print(f"\nmailpipe AWS requests/command: {fmt(r.requests_per_command(), '.2f')}  ({kinds})")
    by_name = {r.server: r for r in results}
    ratio = None
    if "mailpipe" in by_name and "Dovecot" in by_name and by_name["Dovecot"].rate:
        ratio = by_name["mailpipe"].rate / by_name["Dovecot"].rate
        verdict = "met" if ratio >= TARGET_RATIO else "missed"
        print(f"\nmailpipe/Dovecot commands/s: {ratio:.2f}  (target >= {TARGET_RATIO}: {verdict})")
    failures = [(r.server, reason, n) for r in results for reason, n in r.failures.most_common(5)]
    print(f"failures: {sum(sum(r.failures.values()) for r in results)}")
    for server, reason, n in failures:
        print(f"  {server}: {n} x {reason}")
    return ratio


def dovecot_version() -> str:
    binary = find_dovecot()
    if binary is None:
        return "not installed"
    return subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()


def preamble(args: argparse.Namespace) -> None:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"mailpipe IMAP bench  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC{'  (--quick)' if args.quick else ''}")
    print(f"vm: {os.cpu_count()} CPUs, load average {load}; Python {platform.python_version()}")
    passwords = (
        f"argon2id, Dovecot's auth cache and mailpipe's, TTL {AUTH_CACHE_TTL_SECONDS} s"
        if args.argon2id
        else "Dovecot plaintext; mailpipe argon2id behind its cache of verified credentials"
    )
    print(f"Dovecot {dovecot_version()}; passwords: {passwords}")
    print(
        f"{args.users} users x {args.messages} messages in INBOX; {args.clients} clients, "
        f"warm-up {args.warmup:g}s, measured {args.seconds:g}s per server"
    )


def run(args: argparse.Namespace) -> int:
    if find_dovecot() is None and args.only != "mailpipe":
        print("bench/imap.py: dovecot is not installed (Debian package dovecot-imapd)", file=sys.stderr)
        return 2
    preamble(args)
    corpus = corpus_messages()
    messages = (corpus * (args.messages // len(corpus) + 1))[: args.messages]
    users = [f"bench{i}@{DOMAIN}" for i in range(1, args.users + 1)]
    with tempfile.TemporaryDirectory(prefix="imap-bench-") as workdir, contextlib.ExitStack() as stack:
        wanted = [name for name in ("mailpipe", "Dovecot") if args.only in (None, name)]
        print(f"starting {' and '.join(wanted)} ...", flush=True)
        servers = []
        if "mailpipe" in wanted:
            servers.append(stack.enter_context(mailpipe_dev(users, Path(workdir))))
        if "Dovecot" in wanted:
            servers.append(stack.enter_context(dovecot(users, args.argon2id)))
        for server in servers:
            began = time.monotonic()
            asyncio.run(seed(server.port, users, messages))
            print(f"  {server.name}: seeded in {time.monotonic() - began:.1f}s", flush=True)
        results = [measure(server, args, users, corpus) for server in servers]
    report(results)
    return 1 if any(r.failures or r.timed_out for r in results) else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="8 clients, 10 s, 2 users x 50 messages")
    parser.add_argument("--clients", type=int, help="concurrent clients (default 16, quick 8)")
    parser.add_argument("--seconds", type=float, help="measured seconds per server (default 30, quick 10)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds first (default 5, quick 3)")
    parser.add_argument("--users", type=int, help="users, each with its INBOX (default 4, quick 2)")
    parser.add_argument("--messages", type=int, help="messages per INBOX (default 103, quick 50)")
    parser.add_argument(
        "--argon2id",
        action="store_true",
        help="Dovecot stores argon2id hashes too, behind its auth cache with mailpipe's TTL "
        "(default: plaintext, the IMAP engines compared without password hashing)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random message choices")
    parser.add_argument(
        "--only",
        choices=["mailpipe", "Dovecot"],
        help="measure one server (no ratio): for profiling one side while changing it",
    )
    args = parser.parse_args(argv)
    defaults = {
        "clients": (16, 8),
        "seconds": (30, 10),
        "warmup": (5, 3),
        "users": (4, 2),
        "messages": (103, 50),
    }
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if min(args.clients, args.users, args.messages) < 1 or args.seconds <= 0 or args.warmup < 0:
        parser.error("--clients, --users, --messages and --seconds must be positive")
    if args.seconds > 3600:
        parser.error("--seconds: at most 3600")
    return args


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)  # unwind, so that every server started is stopped
    try:
        return run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; every server the bench started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
