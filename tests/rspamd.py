"""Debian's rspamd on loopback, for the spam filter's tests.

``Rspamd`` starts ``rspamd -f`` as a subprocess with Debian's stock rules (/etc/rspamd) and a
local configuration of its own in a temporary directory: a normal worker (the `/checkv2` scanner)
and a controller on free 127.0.0.1 ports, no proxy or fuzzy worker, no Redis, and every DNS lookup
sent to ``dns_server`` ("127.0.0.1:PORT", the tests' loopback DNS server) with one try: tests never
use real DNS. Modules that only query the network (blocklists, fuzzy hashes, phishing feeds, URL
lists) are switched off, so a scan takes milliseconds and depends on nothing outside.

``rspamd.local.lua`` adds one test rule: a message with ``X-Test-Action: <action>`` (and optionally
``X-Test-Message: <text>``) gets that action as rspamd's pre-result, so tests can ask for every
action (``soft reject``, ``greylist``, ``add header``, ...) a real rspamd can answer with; one with
``X-Test-Echo`` is rejected with the envelope rspamd was given (ip, helo, from, rcpt, user, qid).

As root (CI) rspamd refuses to run its workers as root; it is started with ``-u _rspamd -g _rspamd``
(Debian's package creates that user) and its directory is handed to that user, as Debian's own
service does it. As any other user it runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ports import free_port

DEBIAN_PACKAGE = "rspamd"
HOST = "127.0.0.1"
RSPAMD_USER = "_rspamd"
START_TIMEOUT = 60.0  # seconds for the normal worker to answer /ping (it compiles its rules first)
STOP_TIMEOUT = 10.0
SKIP_REASON = "missing tool: rspamd (Debian package rspamd; make test installs it when run as root)"

# The GTUBE test string: rspamd rejects a message holding it (symbol GTUBE, action reject). Newer
# rspamd has variants for other actions; Debian's 3.4 has not, hence the test rule below.
GTUBE_REJECT = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

# Modules that would query servers on the internet (or need Redis) and tell a test nothing.
NETWORK_MODULES = (
    "asn",
    "emails",
    "fuzzy_check",
    "greylist",
    "history_redis",
    "mx_check",
    "neural",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "reputation",
    "rspamd_update",
    "surbl",
    "url_redirector",
    "dcc",
    "external_services",
    "metadata_exporter",
    "clickhouse",
    "elastic",
    "spamassassin",
    "p0f",
    "antivirus",
    "bimi",
)

TEST_RULE = """\
-- X-Test-Action: <action> makes rspamd answer with that action (the tests' way to ask for each).
rspamd_config:register_symbol({
  name = 'MAILPIPE_TEST_ACTION',
  type = 'prefilter',
  priority = 10,
  score = 1.0,
  callback = function(task)
    local action = task:get_header('X-Test-Action')
    if action then
      task:insert_result('MAILPIPE_TEST_ACTION', 1.0, action)
      task:set_pre_result(action, task:get_header('X-Test-Message') or 'test action')
    end
    -- X-Test-Echo: rejected with the envelope as rspamd read it from the request's headers.
    if task:get_header('X-Test-Echo') then
      local from = task:get_from('smtp')
      local rcpts = {}
      for _, rcpt in ipairs(task:get_recipients('smtp') or {}) do
        table.insert(rcpts, rcpt.addr)
      end
      task:set_pre_result('reject', string.format('ip=%s helo=%s from=%s rcpt=%s user=%s qid=%s',
        tostring(task:get_from_ip()), tostring(task:get_helo()),
        from and from[1] and from[1].addr or '', table.concat(rcpts, ','),
        tostring(task:get_user()), tostring(task:get_queue_id())))
    end
  end,
})
"""


@pytest.fixture(scope="module", name="rspamd")
def rspamd_fixture() -> Iterator[Rspamd]:
    """One rspamd for a test module (import this fixture into it), resolving through a DNS server of
    its own on loopback that knows no names (SPF, DMARC, reverse DNS: all NXDOMAIN, at once)."""
    from dns_zone import serving

    require_rspamd()
    with serving("") as (dns_port, _zone), Rspamd(f"127.0.0.1:{dns_port}") as server:
        yield server


def find_rspamd() -> str | None:
    found = shutil.which("rspamd")
    if found is None and os.access("/usr/bin/rspamd", os.X_OK):
        found = "/usr/bin/rspamd"
    return found


def require_rspamd() -> str:
    """The rspamd binary, or a pytest skip whose reason CI turns into a failure (see .ci/run)."""
    found = find_rspamd()
    if found is None:
        pytest.skip(SKIP_REASON)
    return found


class RspamdError(RuntimeError):
    pass


class Rspamd:
    """One rspamd in a temporary directory; a context manager (start/stop)."""

    def __init__(self, dns_server: str, binary: str | None = None) -> None:
        self.dns_server = dns_server
        self.binary = binary or find_rspamd()
        self.directory: Path | None = None
        self.port = 0
        self.controller_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> Rspamd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.binary is None:
            raise RspamdError(SKIP_REASON)
        self.directory = Path(tempfile.mkdtemp(prefix="rspamd-"))
        try:
            for _attempt in range(3):  # a free port may be taken before rspamd binds it
                self.port, self.controller_port = free_port(), free_port()
                self._write_config()
                with (self.directory / "stderr.log").open("ab") as stderr:
                    self.process = subprocess.Popen(
                        self._command(),
                        stdin=subprocess.DEVNULL,
                        stdout=stderr,
                        stderr=stderr,
                        start_new_session=True,
                    )
                if self._wait_ready():
                    return
                self._kill()
            raise RspamdError(f"rspamd did not start:\n{self.log()[-4000:]}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._kill()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def log(self) -> str:
        assert self.directory is not None
        texts = []
        for name in ("stderr.log", "rspamd.log"):
            path = self.directory / name
            if path.exists():
                texts.append(path.read_text(errors="replace"))
        return "\n".join(texts)

    # -- internals ------------------------------------------------------------------------------

    def _command(self) -> list[str]:
        assert self.directory is not None and self.binary is not None
        directory = self.directory
        command = [self.binary, "-f", "-c", str(directory / "rspamd.conf")]
        for name, value in (
            ("LOCAL_CONFDIR", directory),
            ("DBDIR", directory / "db"),
            ("RUNDIR", directory / "run"),
            ("LOGDIR", directory),
        ):
            command += ["--var", f"{name}={value}"]
        if os.geteuid() == 0:
            command += ["-u", RSPAMD_USER, "-g", RSPAMD_USER]
        return command

    def _write_config(self) -> None:
        assert self.directory is not None
        directory = self.directory
        for sub in ("db", "run", "local.d", "override.d"):
            (directory / sub).mkdir(exist_ok=True)
        (directory / "rspamd.conf").write_text(
            f"""\
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "{HOST}:{self.port}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
worker "controller" {{
    bind_socket = "{HOST}:{self.controller_port}";
    .include "$CONFDIR/worker-controller.inc"
    count = 1;
}}
"""
        )
        (directory / "override.d" / "options.inc").write_text(
            f"""\
filters = "chartable,dkim,regexp";
control_socket = "$RUNDIR/rspamd.sock mode=0600";
dns {{
    nameserver = ["{self.dns_server}"];
    timeout = 1s;
    retransmits = 1;
}}
"""
        )
        (directory / "override.d" / "redis.conf").write_text("enabled = false;\n")
        for module in NETWORK_MODULES:
            (directory / "override.d" / f"{module}.conf").write_text("enabled = false;\n")
        (directory / "rspamd.local.lua").write_text(TEST_RULE)
        if os.geteuid() == 0:
            user = pwd.getpwnam(RSPAMD_USER)
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def _wait_ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self._pong():
                return True
            time.sleep(0.1)
        return False

    def _pong(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=2) as sock:
                sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
                reply = b""
                while chunk := sock.recv(4096):
                    reply += chunk
            return reply.startswith(b"HTTP/1.") and b"pong" in reply
        except OSError:
            return False

    def _kill(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
