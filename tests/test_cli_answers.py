"""Every `mailpipe` command says what it can do, answers in one line, and exits 0, 1 or 2."""

from __future__ import annotations

import argparse
import re
import secrets

import pytest
from conftest import DOMAIN
from test_cli import mailpipe

from mailpipe_tools import cli
from mailpipe_tools.parsing import subcommands


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command that has actions of its own, as the words that reach it."""
    found = []
    for group in subcommands(parser):
        found.append(path)
        for name, child in group.choices.items():
            found += _command_paths(child, (*path, name))
    return found


def test_every_help_lists_its_actions_each_with_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli._parser()
    paths = _command_paths(parser)
    assert ("user",) in paths and ("mailbox",) in paths and ("dkim",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_:
            cli.main([*path, "--help"])
        assert exit_.value.code == 0
        shown = capsys.readouterr().out
        target = parser
        for word in path:
            target = next(subcommands(target)).choices[word]
        group = next(subcommands(target))
        described = {choice.dest: choice.help for choice in group._choices_actions}
        for action in group.choices:
            assert described.get(action), f"`mailpipe {' '.join(path)} {action}` has no help line"
            # On a line of its own, with its help beside or below it.
            assert re.search(rf"^    {re.escape(action)}(\s|$)", shown, re.MULTILINE), (path, action)
        assert "{" + ",".join(group.choices) + "}" in shown, path


def test_usage_errors_exit_2_with_the_actions_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["user"])
    assert exit_.value.code == 2
    assert "{add,list,passwd,disable,enable,del,unlock}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["mailbox", "frobnicate"])
    assert exit_.value.code == 2


def test_domain_add_twice_is_an_error_and_del_says_so(stack) -> None:
    domain = f"twice-{secrets.token_hex(3)}.test"
    admin = ("--admin", f"bob@{DOMAIN}")
    first = mailpipe(stack, "domain", "add", domain.upper(), "--catch-all", f"bob@{DOMAIN}", *admin)
    assert (first.returncode, first.stdout) == (0, f"added {domain} (postmaster mail to bob@{DOMAIN})\n")
    again = mailpipe(stack, "domain", "add", domain, *admin)
    assert again.returncode == 1
    assert again.stderr == f"mailpipe: domain exists: {domain}\n" and again.stdout == ""
    # The first add's settings are kept, not overwritten by the refused second one.
    assert stack.directory().get_domain(domain).catch_all == [f"bob@{DOMAIN}"]
    deleted = mailpipe(stack, "domain", "del", domain)
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted {domain}\n")
    gone = mailpipe(stack, "domain", "del", domain)
    assert (gone.returncode, gone.stderr) == (1, f"mailpipe: no such domain: {domain}\n")


@pytest.mark.parametrize("name", ["-", "foo", "bad-.test", "a..b.test", "x_y.test", "ex ample.test"])
def test_domain_add_refuses_what_is_not_a_domain_name(stack, name: str) -> None:
    refused = mailpipe(stack, "domain", "add", name, "--admin", f"bob@{DOMAIN}")
    assert refused.returncode == 1
    assert refused.stderr.startswith("mailpipe: not a domain") and refused.stderr.count("\n") == 1
    assert name.strip().lower() not in [d.name for d in stack.directory().list_domains()]


def test_user_and_alias_changes_answer_in_one_line(stack) -> None:
    user = f"once-{secrets.token_hex(3)}@{DOMAIN}"
    added = mailpipe(stack, "user", "add", user, "--password-stdin", stdin="pw-1\n")
    assert added.stdout == f"added {user}\n"
    said = mailpipe(stack, "user", "passwd", user, "--password-stdin", stdin="pw-2\n")
    assert said.stdout == f"password of {user} changed\n"
    assert mailpipe(stack, "user", "disable", user).stdout == f"{user} disabled\n"
    assert mailpipe(stack, "user", "enable", user).stdout == f"{user} enabled\n"
    alias = f"list-{secrets.token_hex(3)}@{DOMAIN}"
    assert mailpipe(stack, "alias", "add", alias, user).stdout == f"{alias} -> {user}\n"
    assert mailpipe(stack, "alias", "del", alias).stdout == f"deleted {alias}\n"
    assert mailpipe(stack, "user", "del", user, "--yes").stdout.startswith(f"deleted {user}")


def test_mailbox_list_of_an_unknown_user_is_one_line(stack) -> None:
    ghost = mailpipe(stack, "mailbox", "list", f"ghost@{DOMAIN}")
    assert (ghost.returncode, ghost.stderr) == (1, f"mailpipe: no such user: ghost@{DOMAIN}\n")
    elsewhere = mailpipe(stack, "mailbox", "list", "ghost@not-hosted.test")
    assert elsewhere.stderr == "mailpipe: ghost@not-hosted.test is not in a hosted domain\n"
    bad = mailpipe(stack, "mailbox", "list", "no-at-sign")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
