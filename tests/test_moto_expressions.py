"""The dev stack's moto remembers its parses of expression strings (moto_expressions.py): the
tokens and trees must be moto's, values must still be decided at every request, and a string
that does not parse must fail every time with moto's error."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import keyed_table

from mailpipe.store import transactions as tx
from mailpipe.store.model import Mailbox


@pytest.fixture
def client(moto_dynamodb: tuple[Any, Any]) -> Any:
    return moto_dynamodb[0]


@pytest.fixture
def table(client: Any) -> Iterator[str]:
    name = keyed_table(client, "expr", stream=False)["TableName"]
    client.put_item(TableName=name, Item={"pk": {"S": "u"}, "sk": {"S": "box"}, "n": {"N": "1"}})
    yield name
    client.delete_table(TableName=name)


KEY = {"pk": {"S": "u"}, "sk": {"S": "box"}}


def store_expressions() -> list[tuple[str, str]]:
    """(UpdateExpression, ConditionExpression) of every kind of change the mail store makes."""
    mailbox = Mailbox(owner="o", name="INBOX", mailbox_id="m", uidvalidity=1, uidnext=5, highestmodseq=9)
    updates = [
        tx.mailbox_guard("t", mailbox),
        tx.mailbox_guard("t", mailbox, new_messages=1, size_delta=10, count_delta=1),
        tx.unless_changed(tx.set_flags("t", mailbox, 1, 10, ["\\Seen"]), 9),
        tx.unless_changed(tx.expunge("t", mailbox, 1, 10), 9),
    ]
    return [(u["Update"]["UpdateExpression"], u["Update"]["ConditionExpression"]) for u in updates]


def tree(node: Any) -> Any:
    """A syntax tree of moto's as nested tuples, to compare two of them."""
    from moto.dynamodb.parsing.ast_nodes import Node

    if isinstance(node, Node):
        return type(node).__name__, tuple(tree(child) for child in node.children or [])
    return repr(node)


def test_tokens_and_trees_are_the_ones_moto_makes(moto_here) -> None:
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    lex = ConditionExpressionParser._lex_condition_expression
    assert getattr(lex, "mailpipe_remembered", False)
    extra = [
        ("SET a.b[1] = list_append(a, :x), #c = if_not_exists(#c, :y)", "size(a) > :n OR NOT (b IN (:p, :q))")
    ]
    for update, condition in store_expressions() + extra:
        for _ in range(2):  # the first parse is remembered, the second is the remembered one
            parser = ConditionExpressionParser(condition, {"#c": "c"}, {})
            assert list(lex(parser)) == list(lex.moto_lex(parser))
            made = UpdateExpressionParser.make(update)
            assert tree(made) == tree(UpdateExpressionParser.make.moto_make(UpdateExpressionParser, update))


def test_a_validator_gets_a_copy_of_the_tree_of_its_own(moto_here) -> None:
    """The validators' copy of a remembered tree (an unpickling) is the tree deepcopy would make,
    and shares no node with the remembered one: changing it changes nothing remembered."""
    import copy

    from moto.dynamodb.parsing import validators
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    for update_expression, _ in store_expressions():
        made = UpdateExpressionParser.make(update_expression)
        copied = validators.deepcopy(made)
        assert copied is not made and tree(copied) == tree(copy.deepcopy(made)) == tree(made)
        copied.children.clear()
        assert tree(UpdateExpressionParser.make(update_expression)) == tree(made) != tree(copied)
    assert validators.deepcopy([1, [2]]) == [1, [2]]  # anything else: copy.deepcopy


def update(client: Any, table: str, expected: int) -> None:
    client.update_item(
        TableName=table,
        Key=KEY,
        UpdateExpression="SET n = n + :one",
        ConditionExpression="n = :expected",
        ExpressionAttributeValues={":one": {"N": "1"}, ":expected": {"N": str(expected)}},
    )


def test_one_string_with_other_values_is_decided_at_each_request(client, table) -> None:
    for expected in (1, 2, 3):
        update(client, table, expected)
        with pytest.raises(ClientError) as failed:
            update(client, table, expected)  # n is expected + 1 now
        assert failed.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    for n in (4, 5):
        client.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": table,
                        "Key": KEY,
                        "UpdateExpression": "SET n = n + :one",
                        "ConditionExpression": "n = :expected",
                        "ExpressionAttributeValues": {":one": {"N": "1"}, ":expected": {"N": str(n)}},
                    }
                }
            ]
        )
    assert client.get_item(TableName=table, Key=KEY)["Item"]["n"] == {"N": "6"}


@pytest.mark.parametrize(
    ("update_expression", "condition"),
    [
        ("SET n = :v", "n = = :v"),  # a condition that lexes but does not parse
        ("SET n = :v", "n = :v ~"),  # a condition that does not lex
        ("SET n = :v", "size = :v"),  # a reserved word in a condition
        ("SET n = = :v", "n = :v"),  # an update that does not parse
        ("SET size = :v", "n = :v"),  # a reserved word in an update
    ],
)
def test_a_string_that_does_not_parse_fails_every_time(client, table, update_expression, condition) -> None:
    errors = []
    for _ in range(3):
        with pytest.raises(ClientError) as failed:
            client.update_item(
                TableName=table,
                Key=KEY,
                UpdateExpression=update_expression,
                ConditionExpression=condition,
                ExpressionAttributeValues={":v": {"N": "1"}},
            )
        errors.append(failed.value.response["Error"])
    assert errors[1:] == errors[:-1]  # moto's error (a 500 for some: moto's own way)
    assert client.get_item(TableName=table, Key=KEY)["Item"]["n"] == {"N": "1"}


# Updates that each validator acts on: values, names, functions, arithmetic, nested paths, list
# elements, REMOVE, ADD and DELETE of sets; and ones moto refuses (a missing path in a value, a
# type mismatch, the key changed, two actions on one path, an empty string key value).
WALKED_UPDATES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("SET n = n + :one, m.#x = :s", {":one": {"N": "1"}, ":s": {"S": "v"}}, {"#x": "x"}),
    (
        "SET l = list_append(if_not_exists(l, :empty), :more), c = if_not_exists(c, :one)",
        {":empty": {"L": []}, ":more": {"L": [{"S": "a"}]}, ":one": {"N": "1"}},
        {},
    ),
    (
        "SET m.y[0] = :s REMOVE gone ADD tags :t, total :one DELETE old :o",
        {":s": {"S": "w"}, ":t": {"SS": ["a", "b"]}, ":one": {"N": "2"}, ":o": {"SS": ["z"]}},
        {},
    ),
    ("SET n = missing + :one", {":one": {"N": "1"}}, {}),
    ("SET n = n + :s", {":s": {"S": "text"}}, {}),
    ("SET sk = :s", {":s": {"S": "other"}}, {}),
    ("SET n = :one REMOVE n", {":one": {"N": "1"}}, {}),
    ("SET gsi = :e", {":e": {"S": ""}}, {}),
]


def _walk_once(client: Any, table: str, key: str, update: tuple[str, dict[str, Any], dict[str, str]]) -> Any:
    item = {
        "pk": {"S": "walk"},
        "sk": {"S": key},
        "n": {"N": "1"},
        "m": {"M": {"y": {"L": [{"S": "u"}]}}},
        "gone": {"S": "x"},
        "old": {"SS": ["z", "q"]},
        "tags": {"SS": ["c"]},
    }
    client.put_item(TableName=table, Item=item)
    expression, values, names = update
    try:
        client.update_item(
            TableName=table,
            Key={"pk": {"S": "walk"}, "sk": {"S": key}},
            UpdateExpression=expression,
            ExpressionAttributeValues=values,
            **({"ExpressionAttributeNames": names} if names else {}),
        )
    except ClientError as exc:
        return exc.response["Error"]
    got = client.get_item(TableName=table, Key={"pk": {"S": "walk"}, "sk": {"S": key}})["Item"]
    return {k: v for k, v in got.items() if k != "sk"}


def test_the_validators_walk_is_moto_s(client, table, monkeypatch) -> None:
    """Each update applied (or refused) with the walk that reads the node map once, and with
    moto's own walk: the same item, or the same error."""
    from moto.dynamodb.parsing.ast_nodes import DepthFirstTraverser

    fast = DepthFirstTraverser.traverse
    assert getattr(fast, "mailpipe_fast", False)
    for index, update in enumerate(WALKED_UPDATES):
        ours = _walk_once(client, table, f"fast-{index}", update)
        monkeypatch.setattr(DepthFirstTraverser, "traverse", fast.moto_traverse)
        theirs = _walk_once(client, table, f"moto-{index}", update)
        monkeypatch.setattr(DepthFirstTraverser, "traverse", fast)
        assert ours == theirs, update[0]
    refused = [_walk_once(client, table, f"again-{i}", u) for i, u in enumerate(WALKED_UPDATES)]
    assert sum("Code" in outcome for outcome in refused) >= 4
