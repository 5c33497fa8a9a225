"""moto's parses of DynamoDB expression strings, remembered by the string on the dev stack's moto.

Every change the mail store makes is a TransactWriteItems of Updates whose UpdateExpression and
ConditionExpression strings are the same few (the mailbox guard, set_flags, expunge: store/
transactions.py); only their values differ. moto parses each string again for every item, and
an UpdateExpression twice (once in the handler to check the names used, once in update_item):
under bench/imap.py (16 clients, 2026-12-05, after moto_stream_reads.py) lexing condition
expressions and parsing update expressions were ~25% of TransactWriteItems' CPU in moto, itself
41% of the moto process's (py-spy --gil), all of it while every other DynamoDB request waits.

Two pure steps are remembered, each keyed by the expression string alone and each producing
what moto would produce from it:

- ConditionExpressionParser._lex_condition_expression: the string's tokens. They are namedtuples
  with empty child lists that nothing changes; each parse gets a new deque of them (the parser
  consumes it), and names and values are substituted after, as before.
- UpdateExpressionParser.make: the string's syntax tree. moto only reads it (find_clauses) or
  hands it to a Validator, which deep-copies it before changing anything.

A string that does not parse is not remembered: it raises the same error every time. At most
EXPRESSIONS_KEPT strings are remembered per kind (the oldest go first).

The Validator's copy of a remembered tree is made by unpickling the tree's pickle, made once,
instead of `copy.deepcopy`: both rebuild the objects through their __reduce_ex__, but pickle's
loop is C. Under the same load a deepcopy of the store's trees took 550-760 µs and an unpickling
115-370 µs, per Update item, two or more per transaction (guard and messages). Any other value
the validators module deep-copies is copied by `copy.deepcopy` as before.

Validating an update walks its tree once per validator, ten of them, and moto's walker asks the
validator for its map of node classes at every node, twice (a new dict and tuple each time):
~30% of an APPEND's transaction in moto (cProfile, 2026-12-06). The walk (`install_fast_traversal`)
takes the map once per walk instead; the order of visits, the hooks called and the nodes
replaced are moto's. A walker class that overrides moto's recursion or `process` keeps its own.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
from collections import OrderedDict, deque
from typing import Any

# Expression strings remembered per kind: the mail store uses a handful; other code (tests, the
# admin tools) a few more; a client sending ever new strings only ever costs this many entries.
EXPRESSIONS_KEPT = 256


class _Remembered(OrderedDict[str, Any]):
    """The newest EXPRESSIONS_KEPT parses by string."""

    def keep(self, key: str, value: Any) -> None:
        self[key] = value
        while len(self) > EXPRESSIONS_KEPT:
            self.popitem(last=False)


def install() -> None:
    """Wrap moto's two parsers and the validators' deepcopy (once per process). Safe under
    threads: an entry is computed by moto's own code and stored whole; two threads computing one
    string store equal values."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    original_lex = ConditionExpressionParser._lex_condition_expression
    if getattr(original_lex, "mailpipe_remembered", False):
        return
    tokens: _Remembered = _Remembered()
    trees: _Remembered = _Remembered()
    # id(tree) -> (tree, its pickle): the entry holds the tree, so the id names it while kept.
    pickles: _Remembered = _Remembered()
    original_make = UpdateExpressionParser.make.__func__  # type: ignore[attr-defined]

    def lex(self: Any) -> deque[Any]:
        expression = self.condition_expression
        kept = tokens.get(expression)
        if kept is None:
            kept = tuple(original_lex(self))
            tokens.keep(expression, kept)
        return deque(kept)

    def make(cls: Any, expression: str) -> Any:
        kept = trees.get(expression)
        if kept is None or cls is not UpdateExpressionParser:
            kept = original_make(cls, expression)
            if cls is UpdateExpressionParser:
                trees.keep(expression, kept)
                with contextlib.suppress(Exception):  # a tree pickle cannot take: deep-copied as before
                    pickles.keep(str(id(kept)), (kept, pickle.dumps(kept, pickle.HIGHEST_PROTOCOL)))
        return kept

    def deepcopy(value: Any, memo: dict[int, Any] | None = None) -> Any:
        pickled = pickles.get(str(id(value))) if memo is None else None
        if pickled is not None and pickled[0] is value:
            return pickle.loads(pickled[1])
        return copy.deepcopy(value, memo)

    install_fast_traversal()
    lex.mailpipe_remembered = True  # type: ignore[attr-defined]
    lex.moto_lex = original_lex  # type: ignore[attr-defined]  # for the tests' comparison
    make.moto_make = original_make  # type: ignore[attr-defined]
    ConditionExpressionParser._lex_condition_expression = lex  # type: ignore[method-assign]
    UpdateExpressionParser.make = classmethod(make)  # type: ignore[method-assign,assignment]
    validators.deepcopy = deepcopy  # type: ignore[attr-defined]  # `from copy import deepcopy` there


def install_fast_traversal() -> None:
    """DepthFirstTraverser.traverse with the processing map read once per walk (once per process)."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser, Node

    original = DepthFirstTraverser.traverse
    if getattr(original, "mailpipe_fast", False):
        return
    recursion = DepthFirstTraverser.traverse_node_recursively
    process = DepthFirstTraverser.process

    def traverse(self: Any, node: Any) -> Any:
        walker = type(self)
        if walker.traverse_node_recursively is not recursion or walker.process is not process:
            return original(self, node)
        # What moto's process() and nodes_to_be_processed() read at every node: static dicts.
        processors = tuple(self._processing_map().items())
        kinds = self.nodes_to_be_processed()
        before_child = self.pre_processing_of_child

        def visit(node: Any, child_id: int = -1) -> Any:
            # moto's traverse_node_recursively, step for step.
            if isinstance(node, Node):
                parent_node = node.parent
                if node.children is not None:
                    for i, child_node in enumerate(node.children):
                        before_child(node, i)
                        visit(child_node, i)
                if isinstance(node, kinds):
                    processed = None
                    for class_key, processor in processors:
                        if isinstance(node, class_key):
                            processed = processor(node)
                            break
                    node = processed
                    node.parent = parent_node
                    if parent_node:
                        parent_node.children[child_id] = node
            return node

        return visit(node)

    traverse.mailpipe_fast = True  # type: ignore[attr-defined]
    traverse.moto_traverse = original  # type: ignore[attr-defined]  # for the tests' comparison
    DepthFirstTraverser.traverse = traverse  # type: ignore[method-assign]
