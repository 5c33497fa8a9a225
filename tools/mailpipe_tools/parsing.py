"""What every `mailpipe` command's --help shows: the actions it has, by name, with a line each."""

from __future__ import annotations

import argparse
from collections.abc import Iterator


def subcommands(parser: argparse.ArgumentParser) -> Iterator[argparse._SubParsersAction]:
    """The sub-command groups of `parser` (argparse keeps them as actions of a private type)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield action


def list_actions(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Name each group's choices in its usage line ({add,list,del} rather than ACTION), here and
    in every sub-parser below: a bare ACTION told the reader nothing about what to type."""
    for group in subcommands(parser):
        group.metavar = "{" + ",".join(group.choices) + "}"
        for child in group.choices.values():
            list_actions(child)
    return parser
