"""Debian's Thunderbird, headless, driven through Marionette against the dev stack.

``Thunderbird`` writes a profile whose prefs hold one IMAP account (with its identity and
submission server) on the stack's loopback ports, and that keeps Thunderbird off every other
network: no DNS at all (the account uses 127.0.0.1), no autoconfig, telemetry, updates, add-on
or settings fetches, no first-run pages. It starts offline, so nothing connects before the
password is set (passwords live in the login manager, which prefs cannot fill); ``call`` then
runs the steps of tests/thunderbird.js in Thunderbird's chrome context.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

from marionette_driver.marionette import Marionette
from ports import free_port as _free_port

SCRIPTS = Path(__file__).with_name("thunderbird.js")
STARTUP_SECONDS = 90  # Thunderbird's first start on a new profile, on a loaded 2-core machine
STEP_SECONDS = 90  # any one step; only a failing test waits this long

_QUIET = {
    # Nothing but loopback: no name is ever resolved, so no other host can be reached.
    "network.dns.disabled": True,
    "network.trr.mode": 5,
    "network.proxy.type": 0,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "network.prefetch-next": False,
    "network.dns.disableIPv6": True,
    # No autoconfig or ISP lookups, no account hub: the account comes from prefs.
    "mailnews.auto_config_url": "",
    "mailnews.auto_config.fetchFromISP.enabled": False,
    "mailnews.auto_config.guess.enabled": False,
    "mail.provider.enabled": False,
    "mail.accounthub.enabled": False,
    # No first-run, start page, default-client check, donation or notification tabs.
    "mail.rights.version": 1,
    "mail.shell.checkDefaultClient": False,
    "mailnews.start_page.enabled": False,
    "mail.inappnotifications.enabled": False,
    "app.donation.eoy.version.viewed": 999,
    "browser.aboutwelcome.enabled": False,
    # No telemetry, updates, add-on, settings or safe-browsing traffic.
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.server": "",
    "toolkit.telemetry.archive.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "app.update.auto": False,
    "app.update.checkInstallTime": False,
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.provider.google4.updateURL": "",
    "geo.enabled": False,
    "dom.push.enabled": False,
    "media.gmp-manager.url": "",
    # Less work on 2 shared cores: no global search index, no offline copies of messages.
    "mailnews.database.global.indexer.enabled": False,
    "mail.server.default.autosync_offline_stores": False,
    "mail.server.default.offline_download": False,
    # Start offline: online only once the test has set the password (see goOnline).
    "offline.startup_state": 3,
}


def _quoted(value: Any) -> str:
    return json.dumps(value)


def account_prefs(user: str, imap_port: int, submission_port: int) -> dict[str, Any]:
    """One IMAP account, its identity (Sent and Drafts on the server) and its submission server."""
    folders = f"imap://{quote(user, safe='')}@127.0.0.1"
    return {
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.account.account1.identities": "id1",
        "mail.account.account1.server": "server1",
        "mail.account.account2.server": "server2",
        "mail.server.server1.type": "imap",
        "mail.server.server1.name": "mailpipe",
        "mail.server.server1.hostname": "127.0.0.1",
        "mail.server.server1.port": imap_port,
        "mail.server.server1.userName": user,
        "mail.server.server1.socketType": 0,  # plain: the dev stack allows logins on loopback
        "mail.server.server1.authMethod": 3,  # cleartext password (LOGIN / AUTH=PLAIN)
        "mail.server.server1.login_at_startup": False,
        "mail.server.server1.check_new_mail": False,  # no polling: new mail comes by IDLE
        "mail.server.server1.use_idle": True,
        "mail.server.server1.directory-rel": "[ProfD]ImapMail/127.0.0.1",
        "mail.server.server2.type": "none",
        "mail.server.server2.name": "Local Folders",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.server.server2.directory-rel": "[ProfD]Mail/Local Folders",
        "mail.identity.id1.fullName": "Thunderbird Tester",
        "mail.identity.id1.useremail": user,
        "mail.identity.id1.valid": True,
        "mail.identity.id1.smtpServer": "smtp1",
        "mail.identity.id1.fcc": True,
        "mail.identity.id1.fcc_folder": f"{folders}/Sent",
        "mail.identity.id1.draft_folder": f"{folders}/Drafts",
        "mail.identity.id1.compose_html": False,
        "mail.smtpservers": "smtp1",
        "mail.smtp.defaultserver": "smtp1",
        "mail.smtpserver.smtp1.hostname": "127.0.0.1",
        "mail.smtpserver.smtp1.port": submission_port,
        "mail.smtpserver.smtp1.username": user,
        "mail.smtpserver.smtp1.authMethod": 3,
        "mail.smtpserver.smtp1.try_ssl": 0,
    }


class Thunderbird:
    """A headless Thunderbird with a profile of its own; a context manager that always stops it."""

    def __init__(self, binary: str, profile: Path, prefs: dict[str, Any]) -> None:
        self.binary = binary
        self.profile = profile
        self.port = _free_port()
        profile.mkdir(parents=True, exist_ok=True)
        lines = [
            f"user_pref({_quoted(k)}, {_quoted(v)});\n"
            for k, v in {**_QUIET, **prefs, "marionette.port": self.port}.items()
        ]
        (profile / "user.js").write_text("".join(lines))
        self.log = profile / "thunderbird.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.client: Marionette | None = None
        self.library = SCRIPTS.read_text()

    def __enter__(self) -> Thunderbird:
        env = {**os.environ, "MOZ_HEADLESS": "1", "MOZ_CRASHREPORTER_DISABLE": "1", "TZ": "UTC"}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--headless",
                    "--marionette",
                    "-remote-allow-system-access",  # chrome-context scripts (Thunderbird 140+)
                    "--no-remote",
                    "--profile",
                    str(self.profile),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, so stopping it stops its children
            )
        try:
            self.client = Marionette(host="127.0.0.1", port=self.port, startup_timeout=STARTUP_SECONDS)
            self.client.start_session()
            self.client.timeout.script = STEP_SECONDS
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.client is not None and self.client.session_id is not None:
            # Thunderbird may be hung or gone: it is stopped below anyway.
            with contextlib.suppress(Exception):
                self.client.delete_session()
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(30)

    def call(self, step: str, *args: Any) -> Any:
        """Runs ``step`` of tests/thunderbird.js with JSON ``args``; its result, or AssertionError."""
        assert self.client is not None
        script = (
            self.library
            + "\nconst [resolve] = [arguments[arguments.length - 1]];\n"
            + f"{step}(...Array.from(arguments).slice(0, -1)).then(\n"
            + "  value => resolve({ value }),\n"
            + "  error => resolve({ error: `${error}\\n${error.stack}` })\n);\n"
        )
        with self.client.using_context("chrome"):
            result = self.client.execute_async_script(script, script_args=list(args), new_sandbox=True)
        if not isinstance(result, dict):  # e.g. a modal prompt ("save the copy locally?") opened
            raise AssertionError(f"Thunderbird step {step} ended without a result; see {self.log}")
        if "error" in result:
            raise AssertionError(f"Thunderbird step {step} failed: {result['error']}")
        return result.get("value")
