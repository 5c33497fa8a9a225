"""Creating the template's buckets, queues, tables (with their streams), topics and SES configuration
sets on moto, and resolving references to them. Other resource types (subscriptions, policies,
alarms, the SES identity) have no part in a local run and are skipped."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from mailpipe_tools.local.template import Template

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class Deployment:
    """Local physical names of the template's resources, like a stack's outputs."""

    prefix: str
    refs: dict[str, str] = field(default_factory=dict)
    arns: dict[str, str] = field(default_factory=dict)
    # Tables with a StreamSpecification: their stream's ARN (Fn::GetAtt TABLE.StreamArn).
    stream_arns: dict[str, str] = field(default_factory=dict)

    def resolve(self, value: Any) -> Any:
        """Evaluate the intrinsics the template uses in environment values (Ref, GetAtt .Arn, Sub)."""
        if isinstance(value, dict) and len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::GetAtt" and arg[1] == "Arn":
                return self.arns[arg[0]]
            if key == "Fn::Sub" and isinstance(arg, str):
                return re.sub(r"\$\{([^}]+)\}", lambda m: str(self._ref(m.group(1))), arg)
        if isinstance(value, (str, int, float, bool)):
            return str(value).lower() if isinstance(value, bool) else str(value)
        raise ValueError(f"the local runtime cannot evaluate {value!r}")

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": self.prefix,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        return self.refs[name]


def _physical_name(prefix: str, logical_id: str) -> str:
    return f"{prefix}-{re.sub(r'(?<!^)(?=[A-Z])', '-', logical_id).lower()}"


def provision(
    template: Template,
    s3: Any,
    sqs: Any,
    dynamodb: Any,
    prefix: str = "mailpipe-dev",
    sesv2: Any = None,
    sns: Any = None,
) -> Deployment:
    deployment = Deployment(prefix)
    # A reference to a parameter resolves to its default, as a deployment without overrides would.
    for name, parameter in template.body.get("Parameters", {}).items():
        if "Default" in parameter:
            deployment.refs[name] = str(parameter["Default"])
    for logical_id in template.of_type("AWS::S3::Bucket"):
        name = _physical_name(prefix, logical_id)
        s3.create_bucket(Bucket=name)
        deployment.refs[logical_id] = name
        deployment.arns[logical_id] = f"arn:aws:s3:::{name}"
    queues = template.of_type("AWS::SQS::Queue")
    for logical_id in queues:
        url = sqs.create_queue(QueueName=_physical_name(prefix, logical_id))["QueueUrl"]
        deployment.refs[logical_id] = url
        deployment.arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
    for logical_id, resource in queues.items():
        _configure_queue(sqs, deployment, logical_id, resource.get("Properties", {}))
    for logical_id, resource in template.of_type("AWS::DynamoDB::Table").items():
        name = _physical_name(prefix, logical_id)
        stream_arn = _create_table(dynamodb, name, resource.get("Properties", {}))
        deployment.refs[logical_id] = name
        deployment.arns[logical_id] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        if stream_arn:
            deployment.stream_arns[logical_id] = stream_arn
    # A topic's Ref is its ARN. Without a client (no SNS asked for), only the ARN it would have.
    for logical_id in template.of_type("AWS::SNS::Topic"):
        name = _physical_name(prefix, logical_id)
        arn = (
            sns.create_topic(Name=name)["TopicArn"]
            if sns is not None
            else f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        )
        deployment.refs[logical_id] = arn
        deployment.arns[logical_id] = arn
    # The functions' environment names the configuration set; moto's SES records it (and ignores it
    # when sending), so a local `ses` route sends as on AWS. Without a client, only the name.
    for logical_id in template.of_type("AWS::SES::ConfigurationSet"):
        name = _physical_name(prefix, logical_id)
        if sesv2 is not None:
            sesv2.create_configuration_set(ConfigurationSetName=name)
        deployment.refs[logical_id] = name
        deployment.arns[logical_id] = f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/{name}"
    # A WebSocket API is the local HTTP server's (websocket_api.py): only a name, so that the
    # environment's URLs resolve; the dev stack sets the real local ones.
    for logical_id in template.of_type("AWS::ApiGatewayV2::Api"):
        deployment.refs[logical_id] = _physical_name(prefix, logical_id)
    for logical_id in template.functions():
        deployment.refs[logical_id] = _physical_name(prefix, logical_id)
        deployment.arns[logical_id] = (
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{deployment.refs[logical_id]}"
        )
    return deployment


def _configure_queue(sqs: Any, deployment: Deployment, logical_id: str, props: dict[str, Any]) -> None:
    attributes: dict[str, str] = {}
    for name in (
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
    ):
        if name in props:
            attributes[name] = str(props[name])
    redrive = props.get("RedrivePolicy")
    if redrive:
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": deployment.resolve(redrive["deadLetterTargetArn"]),
                "maxReceiveCount": int(redrive["maxReceiveCount"]),
            }
        )
    if attributes:
        sqs.set_queue_attributes(QueueUrl=deployment.refs[logical_id], Attributes=attributes)


def _create_table(dynamodb: Any, name: str, props: dict[str, Any]) -> str | None:
    """Creates the table; returns its stream's ARN if it has one."""
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    for indexes in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(indexes):
            kwargs[indexes] = props[indexes]
    stream = props.get("StreamSpecification")
    if stream:
        # CloudFormation's form has no StreamEnabled: a specification is the stream.
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    table = dynamodb.create_table(**kwargs)["TableDescription"]
    return table.get("LatestStreamArn") if stream else None
