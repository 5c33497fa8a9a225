"""With the stack's own names set (template.yaml JmapDomainName, JmapWebSocketDomainName,
WebmailDomainName: the functions' environment), the session resource names them in its URLs,
whatever name the request came by (CloudFront passes it on to the execute-api name)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from conftest import PASSWORD
from jmap_support import Raw, serve

from mailpipe import services
from mailpipe.config import ENV_JMAP_DOMAIN_NAME, ENV_JMAP_WEBSOCKET_DOMAIN_NAME, ENV_WEBMAIL_DOMAIN_NAME
from mailpipe_tools.local.jmap_http import LocalHttpApi
from mailpipe_tools.local.stack import DevStack

WEBSOCKET = "urn:ietf:params:jmap:websocket"


@pytest.fixture
def jmap_server(stack: DevStack) -> Iterator[LocalHttpApi]:
    api = serve(stack)
    yield api
    api.stop()


@pytest.fixture
def rebuilt(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """The JMAP handler is built once per process from the environment: built again for the test's
    environment, and again after it for the next test's."""
    services.jmap_http.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    services.jmap_http.cache_clear()


def session(jmap_server: LocalHttpApi, new_user: Callable[..., str]) -> dict[str, object]:
    return Raw(jmap_server.url, new_user(), PASSWORD).session()


def test_the_session_names_the_stacks_own_names(
    jmap_server: LocalHttpApi, new_user: Callable[..., str], rebuilt: pytest.MonkeyPatch
) -> None:
    rebuilt.setenv(ENV_JMAP_DOMAIN_NAME, "jmap.example.org")
    rebuilt.setenv(ENV_JMAP_WEBSOCKET_DOMAIN_NAME, "jmap-push.example.org")
    rebuilt.setenv(ENV_WEBMAIL_DOMAIN_NAME, "webmail.example.org")
    named = session(jmap_server, new_user)
    assert named["apiUrl"] == "https://jmap.example.org/jmap/api"
    assert str(named["downloadUrl"]).startswith("https://jmap.example.org/jmap/download/{accountId}/")
    assert named["uploadUrl"] == "https://jmap.example.org/jmap/upload/{accountId}/"
    assert str(named["eventSourceUrl"]).startswith("https://jmap.example.org/jmap/eventsource?")
    assert named["capabilities"][WEBSOCKET]["url"] == "wss://jmap-push.example.org"  # type: ignore[index]


def test_the_webmail_name_serves_when_jmap_has_none(
    jmap_server: LocalHttpApi, new_user: Callable[..., str], rebuilt: pytest.MonkeyPatch
) -> None:
    rebuilt.setenv(ENV_JMAP_DOMAIN_NAME, "")
    rebuilt.setenv(ENV_JMAP_WEBSOCKET_DOMAIN_NAME, "")
    rebuilt.setenv(ENV_WEBMAIL_DOMAIN_NAME, "webmail.example.org")
    assert session(jmap_server, new_user)["apiUrl"] == "https://webmail.example.org/jmap/api"


def test_without_names_the_session_says_how_the_request_came(
    jmap_server: LocalHttpApi, new_user: Callable[..., str], rebuilt: pytest.MonkeyPatch
) -> None:
    for name in (ENV_JMAP_DOMAIN_NAME, ENV_JMAP_WEBSOCKET_DOMAIN_NAME, ENV_WEBMAIL_DOMAIN_NAME):
        rebuilt.setenv(name, "")
    plain = session(jmap_server, new_user)
    assert plain["apiUrl"] == jmap_server.url + "/jmap/api"
    assert plain["capabilities"][WEBSOCKET]["url"] == jmap_server.url.replace("http://", "ws://") + "/jmap/ws"  # type: ignore[index]
