"""A table resource shared by many threads builds each request's conditions right (mailpipe/aws.py:
boto3's condition builder counted placeholders on itself, shared by every thread of the resource,
and a Query built meanwhile by another thread went out as "missed key schema element: pk")."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import boto3.dynamodb.transform
from boto3.dynamodb.conditions import Key

import mailpipe.aws  # noqa: F401  (what installs the per-thread builder)


def test_placeholders_are_counted_per_thread() -> None:
    builder = boto3.dynamodb.transform.ConditionExpressionBuilder()  # what each table resource makes
    condition = Key("pk").eq("user#ann@example.test") & Key("sk").begins_with("mailbox#")

    def build(_: int) -> int:
        wrong = 0
        for _ in range(3000):
            builder.reset()  # as every request's transformation starts
            built = builder.build_expression(condition, is_key_condition=True)
            wrong += built.attribute_name_placeholders != {"#n0": "pk", "#n1": "sk"}
        return wrong

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often, as under load
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            wrong = sum(pool.map(build, range(8)))
    finally:
        sys.setswitchinterval(interval)
    assert wrong == 0, f"{wrong} of 24000 conditions built with another thread's placeholders"
