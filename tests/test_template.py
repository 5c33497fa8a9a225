"""The SAM template (template.yaml) and its deployment files.

- `sam validate --lint` and `sam build` (no Docker) with the SAM CLI from .venv-sam
  (scripts/install-sam.sh; it pins boto3 versions the project cannot share);
- the template expanded offline by aws-sam-translator, then cfn-lint on the plain CloudFormation;
- structural checks of the contract that code and the local runtime (`mailpipe dev`) rely on:
  logical IDs, environment variable names, queue wiring, table keys, the optional gateways (SMTP,
  with submission when it has a certificate, and IMAP/POP3 access);
- the template as CloudFormation would deploy it for given parameters (conditions evaluated, `Fn::If`
  resolved, `AWS::NoValue` dropped), for the pieces that depend on parameters.

None of this needs AWS credentials or a network other than PyPI (`sam build` downloads the layer's
dependencies with pip).
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from mailpipe.jmap.downloads import COPY_REFRESH, DOWNLOADS_PREFIX, PRESIGNED_SECONDS
from mailpipe.outbound.schedule import RetrySchedule
from mailpipe.redelivery import MAX_HOLD_SECONDS, Backoff
from mailpipe.store.model import CHANGES_INDEX

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAMCONFIG = ROOT / "samconfig.toml"
DOCKERFILE = ROOT / "gateway" / "Dockerfile"
INSTALL_SAM = ROOT / "scripts" / "install-sam.sh"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
MISSING_SAM = "missing tool: sam (run scripts/install-sam.sh)"
REGION = "us-east-1"
# The functions' Python (Globals.Function.Runtime), also the layer's build and the gateway image's.
RUNTIME = "python3.13"

GLOBAL_ENV = {
    "MAILPIPE_MAIL_BUCKET": {"Ref": "MailBucket"},
    "MAILPIPE_INBOUND_QUEUE_URL": {"Ref": "InboundQueue"},
    "MAILPIPE_DIRECTORY_TABLE": {"Ref": "DirectoryTable"},
    "MAILPIPE_MAILBOX_TABLE": {"Ref": "MailboxTable"},
    "MAILPIPE_IDEMPOTENCY_TABLE": {"Ref": "IdempotencyTable"},
    "MAILPIPE_OUTBOUND_QUEUE_URL": {"Ref": "OutboundQueue"},
    "MAILPIPE_OUTBOUND_TABLE": {"Ref": "OutboundTable"},
    "MAILPIPE_TRANSPORTS": {"Ref": "OutboundTransports"},
    "MAILPIPE_HOSTNAME": {"Ref": "GatewayHostname"},
    "MAILPIPE_SES_CONFIGURATION_SET": {"Ref": "SesConfigurationSet"},
    "MAILPIPE_CHANGES_TOPIC_ARN": {"Ref": "MailboxChangesTopic"},
    "MAILPIPE_JMAP_TABLE": {"Ref": "JmapTable"},
    "MAILPIPE_JMAP_WEBSOCKET_URL": {
        "Fn::Sub": "wss://${JmapWebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/push"
    },
    "MAILPIPE_PUSH_ENDPOINT": {
        "Fn::Sub": "https://${JmapWebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/push"
    },
    "MAILPIPE_JMAP_DOMAIN_NAME": {"Ref": "JmapDomainName"},
    "MAILPIPE_JMAP_WEBSOCKET_DOMAIN_NAME": {"Ref": "JmapWebSocketDomainName"},
    "MAILPIPE_WEBMAIL_DOMAIN_NAME": {"Ref": "WebmailDomainName"},
    "POWERTOOLS_SERVICE_NAME": "mailpipe-functions",
    "POWERTOOLS_METRICS_NAMESPACE": "mailpipe",
    "LOG_LEVEL": "INFO",
}

RESOURCE_TYPES = {
    "MailBucket": "AWS::S3::Bucket",
    "InboundQueue": "AWS::SQS::Queue",
    "InboundDeadLetterQueue": "AWS::SQS::Queue",
    "OutboundQueue": "AWS::SQS::Queue",
    "OutboundTable": "AWS::DynamoDB::Table",
    "OutboundFunction": "AWS::Serverless::Function",
    "OutboundDeadLetterQueue": "AWS::SQS::Queue",
    "DirectoryTable": "AWS::DynamoDB::Table",
    "IdempotencyTable": "AWS::DynamoDB::Table",
    "MailboxTable": "AWS::DynamoDB::Table",
    "CoreLayer": "AWS::Serverless::LayerVersion",
    "ValidateRecipientFunction": "AWS::Serverless::Function",
    "JmapFunction": "AWS::Serverless::Function",
    "JmapHttpApi": "AWS::Serverless::HttpApi",
    "WebmailBucket": "AWS::S3::Bucket",
    "WebmailBucketPolicy": "AWS::S3::BucketPolicy",
    "WebmailOriginAccessControl": "AWS::CloudFront::OriginAccessControl",
    "WebmailResponseHeadersPolicy": "AWS::CloudFront::ResponseHeadersPolicy",
    "WebmailApiCachePolicy": "AWS::CloudFront::CachePolicy",
    "WebmailDistribution": "AWS::CloudFront::Distribution",
    "JmapTable": "AWS::DynamoDB::Table",
    "JmapWebSocketApi": "AWS::ApiGatewayV2::Api",
    "JmapWebSocketIntegration": "AWS::ApiGatewayV2::Integration",
    "JmapWebSocketConnectRoute": "AWS::ApiGatewayV2::Route",
    "JmapWebSocketDisconnectRoute": "AWS::ApiGatewayV2::Route",
    "JmapWebSocketDefaultRoute": "AWS::ApiGatewayV2::Route",
    "JmapWebSocketDefaultRouteResponse": "AWS::ApiGatewayV2::RouteResponse",
    "JmapWebSocketDeployment": "AWS::ApiGatewayV2::Deployment",
    "JmapWebSocketStage": "AWS::ApiGatewayV2::Stage",
    "JmapWebSocketPermission": "AWS::Lambda::Permission",
    "PruneFunction": "AWS::Serverless::Function",
    "PruneLogGroup": "AWS::Logs::LogGroup",
    "InboundFunction": "AWS::Serverless::Function",
    "GatewayCluster": "AWS::ECS::Cluster",
    "GatewayTaskDefinition": "AWS::ECS::TaskDefinition",
    "GatewayService": "AWS::ECS::Service",
    "GatewayLoadBalancer": "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "GatewayListener": "AWS::ElasticLoadBalancingV2::Listener",
    "GatewayTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "GatewaySecurityGroup": "AWS::EC2::SecurityGroup",
    "GatewayTaskRole": "AWS::IAM::Role",
    "GatewayExecutionRole": "AWS::IAM::Role",
    "GatewayLogGroup": "AWS::Logs::LogGroup",
    "GatewaySubmissionTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "GatewaySubmissionsTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "GatewaySubmissionListener": "AWS::ElasticLoadBalancingV2::Listener",
    "GatewaySubmissionsListener": "AWS::ElasticLoadBalancingV2::Listener",
    "AccessGatewayLogGroup": "AWS::Logs::LogGroup",
    "AccessGatewayExecutionRole": "AWS::IAM::Role",
    "AccessGatewayTaskRole": "AWS::IAM::Role",
    "AccessGatewaySecurityGroup": "AWS::EC2::SecurityGroup",
    "AccessGatewayImapTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AccessGatewayImapsTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AccessGatewayPop3TargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AccessGatewayPop3sTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AccessGatewayImapListener": "AWS::ElasticLoadBalancingV2::Listener",
    "AccessGatewayImapsListener": "AWS::ElasticLoadBalancingV2::Listener",
    "AccessGatewayPop3Listener": "AWS::ElasticLoadBalancingV2::Listener",
    "AccessGatewayPop3sListener": "AWS::ElasticLoadBalancingV2::Listener",
    "AccessGatewayTaskDefinition": "AWS::ECS::TaskDefinition",
    "AccessGatewayService": "AWS::ECS::Service",
    "AlertTopic": "AWS::SNS::Topic",
    "AlertEmailSubscription": "AWS::SNS::Subscription",
    "InboundDeadLetterAlarm": "AWS::CloudWatch::Alarm",
    "OutboundDeadLetterAlarm": "AWS::CloudWatch::Alarm",
    "SesConfigurationSet": "AWS::SES::ConfigurationSet",
    "SesEventDestination": "AWS::SES::ConfigurationSetEventDestination",
    "SesEventTopic": "AWS::SNS::Topic",
    "SesEventTopicPolicy": "AWS::SNS::TopicPolicy",
    "SesEventSubscription": "AWS::SNS::Subscription",
    "SesEventQueue": "AWS::SQS::Queue",
    "SesEventDeadLetterQueue": "AWS::SQS::Queue",
    "SesEventQueuePolicy": "AWS::SQS::QueuePolicy",
    "SesEventDeadLetterAlarm": "AWS::CloudWatch::Alarm",
    "SesEventsFunction": "AWS::Serverless::Function",
    "SesEmailIdentity": "AWS::SES::EmailIdentity",
    "MailboxChangesTopic": "AWS::SNS::Topic",
    "MailboxChangesFunction": "AWS::Serverless::Function",
    "MailboxChangesFailureQueue": "AWS::SQS::Queue",
    "MailboxChangesFailureAlarm": "AWS::CloudWatch::Alarm",
    "MailboxChangesIteratorAgeAlarm": "AWS::CloudWatch::Alarm",
}

SQS_MAX_RETENTION = 14 * 24 * 3600

# Every AWS call each function's code makes, as (IAM action, resource: a queue's or table's logical
# id, the mail bucket's ARN with a key prefix, or an SES ARN's resource part). A new call in the code
# goes here, and the template's policy for that function must allow it
# (test_functions_may_make_every_call_they_make).
FUNCTION_CALLS = {
    "InboundFunction": {
        ("s3:GetObject", "spool/"),  # Spool.read
        ("s3:DeleteObject", "spool/"),  # Spool.discard, once stored
        ("s3:PutObject", "spool/"),  # PoisonReports: bounces and postmaster reports
        ("s3:GetObject", "messages/"),  # MailStore.deliver (server-side copy from the spool)
        ("s3:PutObject", "messages/"),
        ("sqs:ReceiveMessage", "InboundQueue"),  # the event source mapping, with the role's rights
        ("sqs:DeleteMessage", "InboundQueue"),
        ("sqs:GetQueueAttributes", "InboundQueue"),
        ("sqs:ChangeMessageVisibility", "InboundQueue"),  # Redelivery.hold
        ("sqs:SendMessage", "InboundQueue"),  # PoisonReports: the report's envelope
        ("sqs:SendMessage", "OutboundQueue"),  # OutboundQueue.put
        ("dynamodb:BatchGetItem", "DirectoryTable"),  # Directory.lookup, expand
        ("dynamodb:Scan", "DirectoryTable"),  # PoisonReports: the hosted domains' postmasters
        ("dynamodb:Query", "MailboxTable"),  # MailStore
        ("dynamodb:GetItem", "MailboxTable"),
        ("dynamodb:PutItem", "MailboxTable"),
        ("dynamodb:UpdateItem", "MailboxTable"),
        ("dynamodb:GetItem", "IdempotencyTable"),  # Powertools Idempotency
        ("dynamodb:PutItem", "IdempotencyTable"),
        ("dynamodb:UpdateItem", "IdempotencyTable"),
        ("dynamodb:DeleteItem", "IdempotencyTable"),
    },
    "OutboundFunction": {
        ("s3:GetObject", "spool/"),
        ("s3:PutObject", "spool/"),  # bounces (DSNs)
        ("s3:DeleteObject", "spool/"),  # Spool.discard, once every recipient is final
        ("sqs:ReceiveMessage", "OutboundQueue"),
        ("sqs:DeleteMessage", "OutboundQueue"),
        ("sqs:GetQueueAttributes", "OutboundQueue"),
        ("sqs:ChangeMessageVisibility", "OutboundQueue"),  # Redelivery.hold
        ("sqs:SendMessage", "OutboundQueue"),  # retries
        ("sqs:SendMessage", "InboundQueue"),  # the DSN's envelope
        ("dynamodb:Query", "OutboundTable"),  # QueueState.entries
        ("dynamodb:PutItem", "OutboundTable"),  # QueueState.save
        ("dynamodb:GetItem", "OutboundTable"),  # SuppressionList.get, before every send
        ("dynamodb:Scan", "DirectoryTable"),  # PoisonReports: the hosted domains' postmasters
        ("dynamodb:BatchGetItem", "DirectoryTable"),  # PoisonReports: whose postmaster reaches someone
        # ses.deliver_ses: SESv2 SendEmail with raw content, checked against both ARNs.
        ("ses:SendRawEmail", "identity/${SesDomain}"),
        ("ses:SendRawEmail", "configuration-set/${SesConfigurationSet}"),
        ("secretsmanager:GetSecretValue", "secret:mailpipe/dkim/"),  # dkim_signing.KeyStore
        ("secretsmanager:ListSecrets", "*"),  # KeyStore.keys: a domain's selectors
    },
    "JmapFunction": {
        ("s3:GetObject", "messages/"),  # MailStore.read_body, read_range, copy (server-side)
        ("s3:PutObject", "messages/"),  # MailStore.append_message (Email/set, import), copy
        ("s3:DeleteObject", "messages/"),  # MailStore.expunge, delete_mailbox
        ("dynamodb:GetItem", "DirectoryTable"),  # Directory.authenticate, owned_addresses' hints
        ("dynamodb:UpdateItem", "DirectoryTable"),  # Directory._rehash
        ("dynamodb:GetItem", "JmapTable"),  # tokens, StoredThrottle, PushConnections.signed_in
        ("dynamodb:PutItem", "JmapTable"),  # SessionTokens.issue, StoredThrottle._add, PushConnections
        ("dynamodb:UpdateItem", "JmapTable"),  # StoredThrottle._add
        ("dynamodb:DeleteItem", "JmapTable"),  # SessionTokens.revoke, unlock, PushConnections.closed
        ("dynamodb:Query", "MailboxTable"),  # MailStore listings, changes_since (by_modseq)
        ("dynamodb:GetItem", "MailboxTable"),
        ("dynamodb:PutItem", "MailboxTable"),  # create_mailbox, transactions
        ("dynamodb:UpdateItem", "MailboxTable"),  # set_subscribed, transactions
        ("dynamodb:DeleteItem", "MailboxTable"),  # delete_mailbox, rename (transaction)
        ("dynamodb:BatchGetItem", "MailboxTable"),  # messages_by_uid, read_headers
        ("dynamodb:BatchWriteItem", "MailboxTable"),  # delete_mailbox's purge
        ("s3:GetObject", "uploads/"),  # Uploads.read, size (HeadObject), presigned downloads
        ("s3:PutObject", "uploads/"),  # Uploads.put
        ("s3:GetObject", "downloads/"),  # BucketDownloads.fresh (HeadObject), presigned downloads
        ("s3:PutObject", "downloads/"),  # BucketDownloads.put: a large part, decoded
        ("s3:PutObject", "spool/"),  # Outbox.send: Spool.put, as SMTP submission
        ("sqs:SendMessage", "InboundQueue"),
        ("dynamodb:BatchGetItem", "DirectoryTable"),  # Directory.owned_addresses: the aliases named
        ("dynamodb:Scan", "DirectoryTable"),  # ... or, before the hints, the aliases
    },
    "PruneFunction": {
        ("dynamodb:Scan", "DirectoryTable"),  # Directory.list_users
        ("s3:DeleteObject", "messages/"),  # Pruner._sweep: bodies of the tombstones pruned
        ("dynamodb:Query", "DirectoryTable"),
        ("dynamodb:Query", "MailboxTable"),  # Pruner: mailbox items, the MODSEQ index, markers
        ("dynamodb:UpdateItem", "MailboxTable"),  # the floor and mark; dating old markers
        ("dynamodb:DeleteItem", "MailboxTable"),  # tombstones and markers
        ("dynamodb:BatchGetItem", "MailboxTable"),  # Pruner._body_keys: the tombstones' body keys
    },
    "SesEventsFunction": {
        ("sqs:ReceiveMessage", "SesEventQueue"),
        ("sqs:DeleteMessage", "SesEventQueue"),
        ("sqs:GetQueueAttributes", "SesEventQueue"),
        ("sqs:ChangeMessageVisibility", "SesEventQueue"),  # Redelivery.hold
        ("dynamodb:Query", "OutboundTable"),  # QueueState.entries
        ("dynamodb:PutItem", "OutboundTable"),  # QueueState.save, SuppressionList.add
        ("s3:PutObject", "spool/"),  # DsnReporter: the sender's bounce
        ("sqs:SendMessage", "InboundQueue"),  # the bounce's envelope
    },
    "MailboxChangesFunction": {
        ("sns:Publish", "MailboxChangesTopic"),  # Relay.relay
        # The event source mapping's on-failure destination, with the role's rights (the stream
        # reads come with SAM's AWSLambdaDynamoDBExecutionRole).
        ("sqs:SendMessage", "MailboxChangesFailureQueue"),
        ("dynamodb:BatchGetItem", "JmapTable"),  # PushConnections.may_listen
        ("dynamodb:Query", "JmapTable"),  # PushConnections.listening
        ("dynamodb:DeleteItem", "JmapTable"),  # PushConnections.closed, on GoneException
        ("dynamodb:Query", "MailboxTable"),  # push.state_change: mailboxes_and_subscriptions
        # Pusher: post_to_connection, on the stage the environment's MAILPIPE_PUSH_ENDPOINT names.
        ("execute-api:ManageConnections", "${JmapWebSocketApi}/push/POST/@connections/*"),
    },
}

# Every AWS call the access gateway's change feed makes (mailpipe.changes.feed), as (IAM action,
# ARN text or logical id); the task role must allow each (test_access_gateway_may_make_every_call).
CHANGE_QUEUES = "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:mailpipe-changes-*"
ACCESS_GATEWAY_FEED_CALLS = {
    ("sqs:CreateQueue", CHANGE_QUEUES),  # with its policy and heartbeat tag
    ("sqs:SetQueueAttributes", CHANGE_QUEUES),
    ("sqs:TagQueue", CHANGE_QUEUES),  # heartbeat, subscription
    ("sqs:ListQueueTags", CHANGE_QUEUES),  # the sweep
    ("sqs:ReceiveMessage", CHANGE_QUEUES),
    ("sqs:DeleteMessage", CHANGE_QUEUES),  # DeleteMessageBatch
    ("sqs:SendMessage", CHANGE_QUEUES),  # close(): wakes its own long poll
    ("sqs:DeleteQueue", CHANGE_QUEUES),
    ("sqs:ListQueues", "*"),
    ("sns:Subscribe", "MailboxChangesTopic"),
    ("sns:Unsubscribe", "MailboxChangesTopic"),
}

# The access gateway's listeners: port -> (listener, target group), IMAP 143/993, POP3 110/995.
ACCESS_PORTS = {
    143: ("AccessGatewayImapListener", "AccessGatewayImapTargetGroup"),
    993: ("AccessGatewayImapsListener", "AccessGatewayImapsTargetGroup"),
    110: ("AccessGatewayPop3Listener", "AccessGatewayPop3TargetGroup"),
    995: ("AccessGatewayPop3sListener", "AccessGatewayPop3sTargetGroup"),
}

# The SMTP gateway's submission listeners (only with GatewayTlsSecretArn): port -> (listener, target
# group, the environment variable `mailpipe gateway` opens it for), 587 STARTTLS and 465 implicit TLS.
SUBMISSION_PORTS = {
    587: ("GatewaySubmissionListener", "GatewaySubmissionTargetGroup", "MAILPIPE_SUBMISSION_PORT"),
    465: ("GatewaySubmissionsListener", "GatewaySubmissionsTargetGroup", "MAILPIPE_SUBMISSIONS_PORT"),
}
SUBMISSION_RESOURCES = {
    name for listener, group, _ in SUBMISSION_PORTS.values() for name in (listener, group)
}
TLS_SECRET_ENV = {"MAILPIPE_TLS_CERT_PEM", "MAILPIPE_TLS_KEY_PEM"}
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mailpipe/smtp-tls-AbC123"

# Which conditions hold whenever a resource's condition (or an enclosing Fn::If's) holds (None: always).
IMPLIED_CONDITIONS = {
    None: {None},
    "GatewayEnabled": {None, "GatewayEnabled", "AnyGatewayEnabled"},
    "AccessGatewayEnabled": {None, "AccessGatewayEnabled", "AnyGatewayEnabled"},
    "AnyGatewayEnabled": {None, "AnyGatewayEnabled"},
    "AccessGatewayHostnameSet": {None, "AccessGatewayHostnameSet"},
    "AlertEmailSet": {None, "AlertEmailSet"},
    "GatewayTlsSecretSet": {None, "GatewayTlsSecretSet"},
    "GatewaySubmissionEnabled": {
        None,
        "GatewaySubmissionEnabled",
        "GatewayEnabled",
        "GatewayTlsSecretSet",
        "AnyGatewayEnabled",
    },
    "SesDomainSet": {None, "SesDomainSet"},
    "SesByoDkim": {None, "SesByoDkim", "SesDomainSet"},
    "GatewayRspamdEnabled": {None, "GatewayRspamdEnabled", "GatewayEnabled", "AnyGatewayEnabled"},
    "WebmailDomainSet": {None, "WebmailDomainSet"},
    "WebmailCertificateInStack": {None, "WebmailCertificateInStack", "WebmailDomainSet"},
    "JmapDomainSet": {None, "JmapDomainSet"},
    "JmapWebSocketDomainSet": {None, "JmapWebSocketDomainSet"},
}

FUNCTIONS = {
    "ValidateRecipientFunction": "functions/validate_recipient/",
    "InboundFunction": "functions/inbound/",
    "SesEventsFunction": "functions/ses_events/",
    "MailboxChangesFunction": "functions/mailbox_changes/",
    "JmapFunction": "functions/jmap/",
    "PruneFunction": "functions/prune/",
}

ELF_MACHINE = {"x86_64": 62, "arm64": 183}


# --------------------------------------------------------------------------- helpers


class _CfnLoader(yaml.SafeLoader):
    """PyYAML loader that turns CloudFormation short tags into their long form.

    `!Ref X` -> {"Ref": "X"}, `!GetAtt A.B` -> {"Fn::GetAtt": ["A", "B"]}, `!Sub s` -> {"Fn::Sub": "s"}, ...
    """


def _construct_cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_cfn_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # a SafeLoader subclass


def _require(module: str, package: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        pytest.skip(f"missing tool: {package} (pip install -e '.[test]')")


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _sub_text(value: Any) -> str:
    """The text of a `!Sub "..."` (or a plain string)."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return value if isinstance(value, str) else json.dumps(value)


def _grants(role: dict[str, Any]) -> dict[str, set[str]]:
    """An IAM role's inline policies as {resource (Sub text or JSON): actions}; all must be Allow."""
    grants: dict[str, set[str]] = {}
    for policy in role.get("Policies", []):
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow"
            assert "NotAction" not in statement and "NotResource" not in statement
            for resource in _as_list(statement["Resource"]):
                grants.setdefault(_sub_text(resource), set()).update(_as_list(statement["Action"]))
    return grants


def _refs(value: Any) -> set[str]:
    """Logical IDs (resources or parameters) a value refers to through Ref, GetAtt or Sub."""
    found: set[str] = set()
    for node in _walk(value):
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("Ref"), str):
            found.add(node["Ref"])
        if "Fn::GetAtt" in node:
            found.add(node["Fn::GetAtt"][0])
        if "Fn::Sub" in node:
            found.update(name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", _sub_text(node)))
    return found


def _conditional_refs(
    value: Any, holding: frozenset[str | None]
) -> Iterator[tuple[str, frozenset[str | None]]]:
    """Like _refs, each logical ID with the conditions that hold where it is referred to: those in
    `holding`, plus the condition of every `Fn::If` whose true branch the reference is in."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            condition, then, otherwise = value["Fn::If"]
            yield from _conditional_refs(then, holding | {condition})
            yield from _conditional_refs(otherwise, holding)
            return
        if isinstance(value.get("Ref"), str):
            yield value["Ref"], holding
        if "Fn::GetAtt" in value:
            yield value["Fn::GetAtt"][0], holding
        if "Fn::Sub" in value:
            for name in re.findall(r"\$\{([^}!]+)\}", _sub_text(value)):
                yield name.split(".")[0], holding
        for item in value.values():
            yield from _conditional_refs(item, holding)
    elif isinstance(value, list):
        for item in value:
            yield from _conditional_refs(item, holding)


_NO_VALUE = object()


def _evaluate_conditions(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, bool]:
    """The template's Conditions for these parameter values (the functions conditions may use)."""
    definitions = template["Conditions"]

    def value(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        ((function, argument),) = node.items()
        if function == "Ref":
            return parameters[argument]
        if function == "Condition":
            return value(definitions[argument])
        if function == "Fn::Equals":
            left, right = argument
            return value(left) == value(right)
        if function == "Fn::Not":
            (operand,) = argument
            return not value(operand)
        if function == "Fn::And":
            return all(value(operand) for operand in argument)
        if function == "Fn::Or":
            return any(value(operand) for operand in argument)
        raise AssertionError(f"unexpected function in a condition: {function}")

    return {name: bool(value(definition)) for name, definition in definitions.items()}


def _resolve(value: Any, conditions: dict[str, bool]) -> Any:
    """`value` with every Fn::If decided by `conditions` and every AWS::NoValue dropped."""
    if isinstance(value, dict):
        if set(value) == {"Fn::If"}:
            condition, then, otherwise = value["Fn::If"]
            return _resolve(then if conditions[condition] else otherwise, conditions)
        if value == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        resolved = {key: _resolve(item, conditions) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}
    if isinstance(value, list):
        return [item for item in (_resolve(i, conditions) for i in value) if item is not _NO_VALUE]
    return value


def _parameters(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """Parameter values: the defaults, then `overrides` (CommaDelimitedList values as lists)."""
    values: dict[str, Any] = {}
    for name, parameter in template["Parameters"].items():
        value = str(overrides.pop(name, parameter.get("Default", "")))
        values[name] = value.split(",") if parameter["Type"] == "CommaDelimitedList" else value
    assert not overrides, f"no such parameters: {sorted(overrides)}"
    return values


def _deploy(template: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The resources CloudFormation would create for these parameters, with Fn::If resolved."""
    conditions = _evaluate_conditions(template, _parameters(template, **overrides))
    return {
        name: _resolve({k: v for k, v in resource.items() if k != "Condition"}, conditions)
        for name, resource in template["Resources"].items()
        if resource.get("Condition") is None or conditions[resource["Condition"]]
    }


def _smtp_gateway(template: dict[str, Any], secret: str) -> dict[str, Any]:
    """The deployed resources of a stack with the SMTP gateway, with or without its certificate."""
    return _deploy(
        template,
        DeployGateway="true",
        VpcId="vpc-0123456789abcdef0",
        SubnetIds="subnet-0123456789abcdef0,subnet-0123456789abcdef1",
        GatewayImage="123456789012.dkr.ecr.us-east-1.amazonaws.com/mailpipe-gateway:1.0",
        GatewayTlsSecretArn=secret,
    )


def _container_env(container: dict[str, Any], parameters: dict[str, Any] | None = None) -> dict[str, str]:
    """A container's environment and secrets as the process sees them: parameters' values from
    `parameters`, other references (resources, secrets) as placeholders."""

    def value(v: Any) -> str:
        if isinstance(v, str):
            return v
        if parameters is not None and isinstance(v, dict) and v.get("Ref") in parameters:
            return str(parameters[v["Ref"]])
        return f"<{next(iter(v))}>"

    env = {e["Name"]: value(e["Value"]) for e in container["Environment"]}
    env.update({s["Name"]: f"<secret {s['Name']}>" for s in container.get("Secrets", [])})
    return env


def _container(task: dict[str, Any], name: str) -> dict[str, Any]:
    """The container `name` of a deployed task definition (resource or its Properties)."""
    properties = task.get("Properties", task)
    (container,) = [c for c in properties["ContainerDefinitions"] if c["Name"] == name]
    return container


def _statements(policies: list[Any]) -> list[dict[str, Any]]:
    """IAM statements written inline in a SAM function's Policies."""
    found = []
    for policy in policies:
        if isinstance(policy, dict) and "Statement" in policy:
            found.extend(_as_list(policy["Statement"]))
    return found


def _sam_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the SAM CLI: a region, dummy credentials, no user AWS config, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_CONFIG_FILE=str(tmp_path / "aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "aws-credentials"),
        SAM_CLI_TELEMETRY="0",
    )
    # `sam build` without a container runs the runtime's Python it finds on PATH (layers/core/Makefile
    # compiles the layer's bytecode with it): this interpreter if it is that version, else a pyenv one.
    interpreter = _runtime_python(env.get("PATH", ""))
    if interpreter is not None:
        env["PATH"] = os.pathsep.join([str(interpreter.parent), env.get("PATH", "")])
    return env


def _runtime_python(path: str) -> Path | None:
    name = RUNTIME  # python3.13
    if sys.version_info[:2] == tuple(int(n) for n in name.removeprefix("python").split(".")):
        return Path(sys.executable)
    found = shutil.which(name, path=path)
    candidates = [Path(found)] if found else []
    candidates += sorted(Path.home().glob(f".pyenv/versions/{name.removeprefix('python')}*/bin/{name}"))
    for candidate in candidates:
        # (A pyenv shim is on PATH whether or not that version is selected: it must run.)
        if subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def _run(args: list[Any], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture
def sam() -> Path:
    if not os.access(SAM, os.X_OK):
        pytest.skip(MISSING_SAM)
    return SAM


# --------------------------------------------------------------------------- SAM CLI


@pytest.mark.timeout(300)
def test_sam_validate_lint(sam: Path, tmp_path: Path) -> None:
    result = _run([sam, "validate", "--lint", "--template", TEMPLATE], _sam_env(tmp_path), timeout=240)
    assert result.returncode == 0, f"sam validate --lint failed:\n{result.stdout}\n{result.stderr}"
    assert "is a valid SAM Template" in result.stdout + result.stderr


@pytest.mark.timeout(900)
def test_sam_build_without_docker(sam: Path, tmp_path: Path, template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Runtime"] == RUNTIME
    if _runtime_python(os.environ.get("PATH", "")) is None:
        pytest.skip(f"missing tool: {RUNTIME} (sam build compiles the layer with the runtime's Python)")
    build_dir = tmp_path / "build"
    result = _run(
        [
            sam,
            "build",
            "--template-file",
            TEMPLATE,
            "--build-dir",
            build_dir,
            "--cache-dir",
            tmp_path / "cache",
            # samconfig.toml asks for cached builds, which keep dependencies in ./.aws-sam/deps (in the
            # work tree); the test builds from scratch and writes only under tmp_path.
            "--no-cached",
        ],
        _sam_env(tmp_path),
        timeout=840,
    )
    assert result.returncode == 0, f"sam build failed:\n{result.stdout}\n{result.stderr}"
    assert (build_dir / "template.yaml").is_file()

    layer = build_dir / "CoreLayer" / "python"
    assert (layer / "mailpipe" / "__init__.py").is_file()
    assert (layer / "argon2" / "__init__.py").is_file()
    for name in FUNCTIONS:
        assert (build_dir / name / "app.py").is_file(), name

    # Cold starts: the runtime's boto3 (not a second, uncompiled copy), and every module precompiled
    # by the runtime's Python version, used without checking the source (the zip's 2 s mtimes).
    for provided in ("boto3", "botocore", "s3transfer"):
        assert not (layer / provided).exists(), provided
    tag = "cpython-" + template["Globals"]["Function"]["Runtime"].removeprefix("python").replace(".", "")
    sources = sorted(p for p in layer.rglob("*.py") if p.parent.name != "__pycache__")
    assert len(sources) > 100
    for source in sources:
        compiled = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        assert compiled.is_file(), f"no {compiled.name} for {source.relative_to(layer)}"
    flags = int.from_bytes(
        (layer / "mailpipe" / "__pycache__" / f"passwords.{tag}.pyc").read_bytes()[4:8], "little"
    )
    assert flags == 0b01, "not an unchecked-hash .pyc"  # PEP 552: hash-based, source not checked

    # Native code in the layer must be for the functions' architecture (an arm64 function with
    # x86_64 argon2 or libsodium bindings builds fine and fails at import in Lambda).
    (architecture,) = template["Globals"]["Function"]["Architectures"]
    native = sorted((layer / "_argon2_cffi_bindings").glob("*.so"))
    assert native, "argon2-cffi-bindings has no compiled module in the layer"
    sodium = sorted((layer / "nacl").glob("*.so"))
    assert sodium, "PyNaCl (libsodium) has no compiled module in the layer"
    native += sodium
    for library in native:
        assert _elf_machine(library) == ELF_MACHINE[architecture], f"{library.name} is not {architecture}"


@pytest.mark.timeout(300)
def test_install_sam_is_idempotent_and_quick(sam: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(INSTALL_SAM)], capture_output=True, text=True, timeout=240, check=False, cwd=ROOT
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "already" in result.stdout, result.stdout
    assert elapsed < 15, f"install-sam.sh took {elapsed:.1f}s with the SAM CLI already installed"


def test_install_sam_script_syntax() -> None:
    assert os.access(INSTALL_SAM, os.X_OK), "scripts/install-sam.sh is not executable"
    result = subprocess.run(["bash", "-n", str(INSTALL_SAM)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert ".venv-sam" in INSTALL_SAM.read_text(encoding="utf-8")


# --------------------------------------------------------------------------- offline SAM translation


def _with_s3_code_uris(template: dict[str, Any]) -> dict[str, Any]:
    """What `sam package` would upload: local CodeUri/ContentUri become s3:// URIs (checked to exist)."""
    fragment = json.loads(json.dumps(template))
    for logical_id, resource in fragment["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                assert (ROOT / properties[key]).is_dir(), f"{logical_id}.{key} {properties[key]} is missing"
                properties[key] = f"s3://mailpipe-artifacts/{logical_id}.zip"
    return fragment


def test_sam_translation_passes_cfn_lint(template: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    _require("samtranslator", "aws-sam-translator")
    _require("cfnlint", "cfn-lint")
    from cfnlint.api import ManualArgs, lint
    from samtranslator.translator.arn_generator import ArnGenerator
    from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform

    class OfflineManagedPolicyLoader(ManagedPolicyLoader):
        """Never asks IAM. The translator looks AWS managed policy names up in the map bundled with it
        first and calls the loader only for names it does not know; an unknown name stays a bare name,
        which the ARN check below reports."""

        def __init__(self) -> None:
            super().__init__(iam_client=None)  # type: ignore[arg-type]
            self._policy_map = {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setattr(ArnGenerator, "BOTO_SESSION_REGION_NAME", REGION)

    translated = transform(_with_s3_code_uris(template), {}, OfflineManagedPolicyLoader())

    assert "Transform" not in translated
    types = {r["Type"] for r in translated["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Serverless::")}, types
    for logical_id, resource in translated["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for arn in resource["Properties"].get("ManagedPolicyArns", []):
                assert not isinstance(arn, str) or arn.startswith("arn:"), (logical_id, arn)

    matches = lint(json.dumps(translated), config=ManualArgs(regions=[REGION]))
    errors = [m for m in matches if m.rule.id.startswith("E")]
    for match in matches:
        if match not in errors:
            print(f"cfn-lint (translated template): {match}")
    assert not errors, "\n".join(str(m) for m in errors)


# --------------------------------------------------------------------------- structure


def test_logical_ids_and_types(resources: dict[str, Any]) -> None:
    for logical_id, resource_type in RESOURCE_TYPES.items():
        assert logical_id in resources, logical_id
        assert resources[logical_id]["Type"] == resource_type, logical_id


def test_transform_and_globals(template: dict[str, Any]) -> None:
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    function = template["Globals"]["Function"]
    assert function["Runtime"] == RUNTIME
    assert function["Architectures"] in (["arm64"], ["x86_64"])
    assert function["Timeout"] == 30
    assert function["MemorySize"] == 512
    assert function["Tracing"] == "Active"
    assert function["Layers"] == [{"Ref": "CoreLayer"}]
    variables = function["Environment"]["Variables"]
    for name, value in GLOBAL_ENV.items():
        assert variables.get(name) == value, name


def test_all_function_config_is_global(resources: dict[str, Any]) -> None:
    """The local runtime sets the union of Globals' environment in one process."""
    for name, code_uri in FUNCTIONS.items():
        properties = resources[name]["Properties"]
        assert properties["CodeUri"] == code_uri
        assert properties["Handler"] == "app.lambda_handler"
        assert "Environment" not in properties, f"{name}: put environment variables in Globals"
        assert (ROOT / code_uri).is_dir()


def test_mail_bucket(resources: dict[str, Any]) -> None:
    properties = resources["MailBucket"]["Properties"]
    (sse,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    block = properties["PublicAccessBlockConfiguration"]
    for setting in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        assert block[setting] is True, setting

    rules = [r for r in properties["LifecycleConfiguration"]["Rules"] if r["Status"] == "Enabled"]
    expiring = [r for r in rules if "ExpirationInDays" in r or "ExpirationDate" in r]
    # Stored messages never expire; JMAP uploads (blobs no object references) after two days;
    # large parts decoded for a download after a day.
    assert [(r.get("Prefix"), r.get("ExpirationInDays")) for r in expiring] == [
        ("spool/", 60),
        ("uploads/", 2),
        (DOWNLOADS_PREFIX, 1),
    ]
    # A decoded part is written again before a presigned URL to it could outlive it (S3 expires an
    # object at the first midnight UTC at least ExpirationInDays after it was written).
    assert COPY_REFRESH + timedelta(seconds=PRESIGNED_SECONDS) < timedelta(days=1)
    # A backstop only: longer than an envelope can be queued for its object (docs/architecture.md,
    # "Never lost"): the inbound queue or its DLQ, the outbound queue before a first attempt, the
    # retry schedule, and the last retry on the outbound queue or its DLQ.
    retention_days = {
        name: resources[name]["Properties"]["MessageRetentionPeriod"] / 86400
        for name in ("InboundQueue", "OutboundQueue")
    }
    longest_queued = (
        retention_days["InboundQueue"]
        + 2 * retention_days["OutboundQueue"]
        + RetrySchedule().give_up_after / timedelta(days=1)
    )
    assert expiring[0]["ExpirationInDays"] > longest_queued + 7
    # Nothing expires mailbox bodies: every expiring rule is limited to spool/.
    for rule in expiring:
        assert "Filter" not in rule or rule["Filter"].get("Prefix") == "spool/"


@pytest.mark.parametrize("name", ["InboundQueue", "OutboundQueue", "SesEventQueue"])
def test_queues_retry_for_days_and_leave_days_to_redrive(resources: dict[str, Any], name: str) -> None:
    queue = resources[name]["Properties"]
    dead_letter = name.replace("Queue", "DeadLetterQueue")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letter, "Arn"]},
        "maxReceiveCount": 18,
    }
    # (VisibilityTimeout: test_visibility_timeout_covers_function_timeout.)
    assert queue["SqsManagedSseEnabled"] is True
    dead = resources[dead_letter]["Properties"]
    assert dead["SqsManagedSseEnabled"] is True
    # A message in the DLQ keeps its original enqueue time: both keep it as long as SQS can.
    assert queue["MessageRetentionPeriod"] == dead["MessageRetentionPeriod"] == SQS_MAX_RETENTION
    # With the functions' back-off (its default is what AWS runs), an outage of days is retried
    # through, and a week is left in the DLQ to answer its alarm and redrive.
    retrying = Backoff().window(queue["RedrivePolicy"]["maxReceiveCount"])
    assert 3 * 86400 <= retrying <= SQS_MAX_RETENTION - 7 * 86400
    assert Backoff().cap <= MAX_HOLD_SECONDS < 12 * 3600


def test_every_dead_letter_queue_raises_an_alarm(template: dict[str, Any], resources: dict[str, Any]) -> None:
    dead_letter_queues = {
        r["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for r in resources.values()
        if r["Type"] == "AWS::SQS::Queue" and "RedrivePolicy" in r["Properties"]
    }
    assert dead_letter_queues == {
        "InboundDeadLetterQueue",
        "OutboundDeadLetterQueue",
        "SesEventDeadLetterQueue",
    }
    alarmed = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        if alarm.get("MetricName") != "ApproximateNumberOfMessagesVisible":
            continue
        assert "Condition" not in resource, name
        assert alarm["Namespace"] == "AWS/SQS"
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["Statistic"] == "Maximum"
        assert alarm["EvaluationPeriods"] == 1
        assert alarm["TreatMissingData"] == "notBreaching"
        assert {"Ref": "AlertTopic"} in alarm["AlarmActions"]
        ((dimension),) = alarm["Dimensions"]
        assert dimension["Name"] == "QueueName"
        alarmed[dimension["Value"]["Fn::GetAtt"][0]] = name
    # The stream's on-failure queue is no SQS dead-letter queue, but a message there is also a change
    # nobody was told of.
    assert set(alarmed) == dead_letter_queues | {"MailboxChangesFailureQueue"}
    # The alert address is optional; without it the topic has no subscription (and the stack deploys).
    assert template["Parameters"]["AlertEmail"]["Default"] == ""
    subscription = resources["AlertEmailSubscription"]
    assert subscription["Condition"] == "AlertEmailSet"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlertEmail"}
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlertTopic"}
    assert "AlertEmailSubscription" not in _deploy(template)
    assert "AlertEmailSubscription" in _deploy(template, AlertEmail="ops@example.com")
    # CloudWatch cannot publish to a topic encrypted with the AWS managed SNS key.
    assert "KmsMasterKeyId" not in resources["AlertTopic"].get("Properties", {})


def _policy_template_statements(name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """A SAM policy template's statements, from aws-sam-translator's own definitions."""
    samtranslator = _require("samtranslator", "aws-sam-translator")
    path = Path(samtranslator.__file__).parent / "policy_templates_data" / "policy_templates.json"
    definition = json.loads(path.read_text(encoding="utf-8"))["Templates"][name]["Definition"]
    statements = json.loads(json.dumps(definition["Statement"]))

    def substituted(resource: Any) -> Any:
        if not (isinstance(resource, dict) and "Fn::Sub" in resource):
            return resource
        text, variables = resource["Fn::Sub"]
        for variable, value in variables.items():
            text = text.replace("${" + variable + "}", json.dumps(arguments[value["Ref"]]))
        return text

    for statement in statements:
        statement["Resource"] = [substituted(r) for r in _as_list(statement["Resource"])]
    return statements


def _allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    for statement in statements:
        actions = _as_list(statement["Action"])
        if not any(re.fullmatch(a.replace("*", ".*"), action) for a in actions):
            continue
        for granted in _as_list(statement["Resource"]):
            text = _sub_text(granted)
            if resource == "*" and granted == "*":
                return True
            if resource.startswith("secret:") and text.endswith(f":{resource}*"):
                return True
            if resource.startswith("${") and text.endswith(f":{resource}"):
                return True
            if resource.endswith("/") and text == "${MailBucket.Arn}/" + resource + "*":
                return True
            if resource.startswith(("identity/", "configuration-set/")):
                if text == "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:" + resource:
                    return True
                continue
            if not resource.endswith("/") and any(
                json.dumps(reference) in text
                for reference in (
                    {"Fn::GetAtt": [resource, "QueueName"]},
                    {"Fn::GetAtt": [resource, "TopicName"]},
                    {"Fn::GetAtt": [resource, "Arn"]},
                    {"Ref": resource},
                )
            ):
                return True
    return False


@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
def test_functions_may_make_every_call_they_make(template: dict[str, Any], function: str) -> None:
    """moto checks no permissions: this is where a call the role does not allow is caught
    (in a stack with an SES domain, as the `ses` transport needs)."""
    resources = _deploy(template, SesDomain="crepes.fr", SesDkimSelector="mp2026")
    statements = []
    for policy in resources[function]["Properties"]["Policies"]:
        (name, body), *_ = policy.items()
        if name == "Statement":
            statements += _as_list(body)
        else:
            statements += _policy_template_statements(name, body)
    missing = [call for call in sorted(FUNCTION_CALLS[function]) if not _allowed(statements, *call)]
    assert not missing, f"{function} may not make these calls: {missing}"


def test_visibility_timeout_covers_function_timeout(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """Every SQS event source's visibility timeout is at least 6x its function's timeout (AWS's
    advice for Lambda event sources: a batch still running is not received a second time)."""
    sources = {}
    for name, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in resource["Properties"].get("Events", {}).values():
            if event["Type"] != "SQS":
                continue
            queue = event["Properties"]["Queue"]["Fn::GetAtt"][0]
            timeout = resource["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])
            sources[queue] = (name, timeout)
    assert set(sources) == {"InboundQueue", "OutboundQueue", "SesEventQueue"}
    for queue, (function, timeout) in sources.items():
        visibility = resources[queue]["Properties"]["VisibilityTimeout"]
        assert visibility >= 6 * timeout, (queue, function, visibility, timeout)


@pytest.mark.parametrize("table", ["DirectoryTable", "MailboxTable"])
def test_tables(resources: dict[str, Any], table: str) -> None:
    properties = resources[table]["Properties"]
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    indexed = {("modseq", "N")} if table == "MailboxTable" else set()
    assert {(a["AttributeName"], a["AttributeType"]) for a in properties["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
        *indexed,
    }
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_jmap_websocket_api_routes_every_frame_to_the_jmap_function(resources: dict[str, Any]) -> None:
    """RFC 8887 through API Gateway: $connect, $default (answered by its route response) and
    $disconnect all reach JmapFunction, on the stage the push endpoint names."""
    assert resources["JmapWebSocketApi"]["Properties"]["ProtocolType"] == "WEBSOCKET"
    target = {"Fn::Sub": "integrations/${JmapWebSocketIntegration}"}
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {"$connect", "$default", "$disconnect"}
    assert all(route["Target"] == target for route in routes.values())
    assert routes["$default"]["RouteResponseSelectionExpression"] == "$default"
    uri = resources["JmapWebSocketIntegration"]["Properties"]["IntegrationUri"]["Fn::Sub"]
    assert "${JmapFunction.Arn}" in uri
    stage = resources["JmapWebSocketStage"]["Properties"]["StageName"]
    assert GLOBAL_ENV["MAILPIPE_PUSH_ENDPOINT"]["Fn::Sub"].endswith("/" + stage)
    assert GLOBAL_ENV["MAILPIPE_JMAP_WEBSOCKET_URL"]["Fn::Sub"].endswith("/" + stage)
    permission = resources["JmapWebSocketPermission"]["Properties"]
    assert permission["FunctionName"] == {"Ref": "JmapFunction"}
    assert permission["Principal"] == "apigateway.amazonaws.com"
    # $connect carries the session token in its query string (access_token): an access log of
    # the stage must not write it. None is configured; one added must leave the query out.
    settings = resources["JmapWebSocketStage"]["Properties"].get("AccessLogSettings")
    assert settings is None or "querystring" not in json.dumps(settings).lower(), settings


def test_jmap_table_forgets_by_ttl(resources: dict[str, Any]) -> None:
    """Tokens, failure counts and connections expire; DynamoDB deletes them by `expires`."""
    properties = resources["JmapTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires", "Enabled": True}
    assert properties["SSESpecification"]["SSEEnabled"] is True


def test_mailbox_table_indexes_messages_by_modseq_for_the_store(resources: dict[str, Any]) -> None:
    (index,) = resources["MailboxTable"]["Properties"]["LocalSecondaryIndexes"]
    assert index["IndexName"] == CHANGES_INDEX
    assert index["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "modseq", "KeyType": "RANGE"},
    ]
    # What MailStore.changes_since reads: the Query must not fall back to the table for more.
    assert index["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["uid", "flags", "expunged"],
    }


def test_core_layer(resources: dict[str, Any], template: dict[str, Any]) -> None:
    layer = resources["CoreLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/core"
    runtime = template["Globals"]["Function"]["Runtime"]
    assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
    # layers/core/Makefile builds it (bytecode, no boto3): for the functions' Python and architecture.
    assert layer["Metadata"]["BuildMethod"] == "makefile"
    architectures = template["Globals"]["Function"]["Architectures"]
    assert layer["Properties"].get("CompatibleArchitectures", architectures) == architectures
    assert layer["Metadata"].get("BuildArchitecture", architectures[0]) == architectures[0]
    assert (ROOT / "layers" / "core" / "requirements.txt").is_file()
    makefile = (ROOT / "layers" / "core" / "Makefile").read_text()
    assert "build-CoreLayer:" in makefile
    assert f"RUNTIME := {runtime.removeprefix('python')}\n" in makefile
    (platforms,) = re.findall(r"^PLATFORMS := (.*)$", makefile, re.MULTILINE)
    machine = {"x86_64": "x86_64", "arm64": "aarch64"}[architectures[0]]
    assert re.findall(r"--platform (\S+)", platforms)
    assert all(p.endswith("_" + machine) for p in re.findall(r"--platform (\S+)", platforms))


def test_inbound_sqs_event(resources: dict[str, Any]) -> None:
    events = resources["InboundFunction"]["Properties"]["Events"]
    sqs = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert len(sqs) == 1
    (event,) = sqs
    assert event["Queue"] == {"Fn::GetAtt": ["InboundQueue", "Arn"]}
    assert event["BatchSize"] == 10
    assert event["MaximumBatchingWindowInSeconds"] == 1
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_validate_recipient_policies(resources: dict[str, Any]) -> None:
    policies = resources["ValidateRecipientFunction"]["Properties"]["Policies"]
    # Read only: the directory, and the mailbox index for quotas (452 4.2.2 for a full mailbox).
    assert policies == [
        {"DynamoDBReadPolicy": {"TableName": {"Ref": "DirectoryTable"}}},
        {"DynamoDBReadPolicy": {"TableName": {"Ref": "MailboxTable"}}},
    ]


def test_inbound_policies_are_narrow(resources: dict[str, Any]) -> None:
    policies = resources["InboundFunction"]["Properties"]["Policies"]
    templates = {next(iter(p)): p[next(iter(p))] for p in policies if "Statement" not in p}
    crud_tables = [p["DynamoDBCrudPolicy"]["TableName"] for p in policies if "DynamoDBCrudPolicy" in p]
    assert templates.get("DynamoDBReadPolicy") == {"TableName": {"Ref": "DirectoryTable"}}
    assert crud_tables == [{"Ref": "MailboxTable"}, {"Ref": "IdempotencyTable"}]
    assert "SQSPollerPolicy" in templates
    assert "S3CrudPolicy" not in templates and "S3FullAccessPolicy" not in templates

    s3_access: dict[str, set[str]] = {}
    for statement in _statements(policies):
        assert statement["Effect"] == "Allow"
        for resource in _as_list(statement["Resource"]):
            arn = _sub_text(resource)
            for action in _as_list(statement["Action"]):
                if action.startswith("s3:"):
                    s3_access.setdefault(arn, set()).add(action)
    assert s3_access == {
        "${MailBucket.Arn}/spool/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        "${MailBucket.Arn}/messages/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
    }


def test_gateway_is_optional(template: dict[str, Any], resources: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    deploy = parameters["DeployGateway"]
    assert deploy["Type"] == "String"
    assert deploy["Default"] == "false"
    assert sorted(deploy["AllowedValues"]) == ["false", "true"]
    # A stack without the gateway must not need VPC values.
    for name in ("VpcId", "SubnetIds", "GatewayImage"):
        assert "Default" in parameters[name], name
        assert not parameters[name]["Type"].startswith(("AWS::", "List<AWS::")), name
    assert parameters["GatewayHostname"]["Default"] == "mail.example.com"
    assert int(parameters["MaxMessageSize"]["Default"]) == 41943040
    assert template["Conditions"]["GatewayEnabled"] == {"Fn::Equals": [{"Ref": "DeployGateway"}, "true"]}

    # The cluster is shared with the access gateway; every other Gateway* resource is the SMTP gateway's,
    # and its submission listeners and target groups exist only when it also has a certificate.
    gateway = {name for name in resources if name.startswith("Gateway")} - {
        "GatewayCluster",
        "GatewayLoadBalancer",
    }
    assert gateway >= SUBMISSION_RESOURCES
    assert {
        name for name, r in resources.items() if r.get("Condition") == "GatewayEnabled"
    } == gateway - SUBMISSION_RESOURCES
    assert {
        name for name, r in resources.items() if r.get("Condition") == "GatewaySubmissionEnabled"
    } == SUBMISSION_RESOURCES
    assert resources["GatewayCluster"]["Condition"] == "AnyGatewayEnabled"
    assert resources["GatewayLoadBalancer"]["Condition"] == "AnyGatewayEnabled"
    assert template["Conditions"]["AnyGatewayEnabled"] == {
        "Fn::Or": [{"Condition": "GatewayEnabled"}, {"Condition": "AccessGatewayEnabled"}]
    }


def test_optional_resources_refer_only_to_what_exists_with_them(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """A resource or output may refer only to resources that exist whenever it does (or whenever the
    condition of the `Fn::If` branch the reference is in holds)."""
    conditions = {name: r.get("Condition") for name, r in resources.items()}
    assert set(conditions.values()) <= set(IMPLIED_CONDITIONS), set(conditions.values())
    assert set(template["Conditions"]) <= set(IMPLIED_CONDITIONS), set(template["Conditions"])
    referrers = [(name, r) for name, r in resources.items()] + [
        (f"Outputs.{name}", o) for name, o in template["Outputs"].items()
    ]
    for name, body in referrers:
        always = frozenset({body.get("Condition")})
        references = list(
            _conditional_refs({k: v for k, v in body.items() if k not in ("Condition", "DependsOn")}, always)
        )
        # DependsOn cannot be conditional: it may name only resources that always exist with this one.
        references += [(target, always) for target in _as_list(body.get("DependsOn", []))]
        for target, holding in references:
            if target in resources:
                holds = set().union(*(IMPLIED_CONDITIONS[c] for c in holding))
                assert conditions[target] in holds, f"{name} refers to {target} ({conditions[target]})"


@pytest.mark.parametrize(
    ("deploy_gateway", "deploy_access_gateway", "gateway_secret", "access_hostname"),
    list(itertools.product(["false", "true"], ["false", "true"], ["", SECRET_ARN], ["", "imap.example.org"])),
)
def test_every_parameter_combination_deploys_a_consistent_stack(
    template: dict[str, Any],
    deploy_gateway: str,
    deploy_access_gateway: str,
    gateway_secret: str,
    access_hostname: str,
) -> None:
    """With conditions evaluated and Fn::If resolved, what is deployed refers only to what is deployed,
    and submission listeners exist exactly when the SMTP gateway has its certificate."""
    deployed = _deploy(
        template,
        DeployGateway=deploy_gateway,
        DeployAccessGateway=deploy_access_gateway,
        GatewayTlsSecretArn=gateway_secret,
        AccessTlsSecretArn=SECRET_ARN if deploy_access_gateway == "true" else "",
        AccessGatewayHostname=access_hostname,
    )
    assert not [node for node in _walk(deployed) if isinstance(node, dict) and "Fn::If" in node]
    assert _NO_VALUE not in list(_walk(deployed))
    for name, body in deployed.items():
        for target in _refs(body) | set(_as_list(body.get("DependsOn", []))):
            assert target in deployed or target in template["Parameters"] or target.startswith("AWS::"), (
                f"{name} refers to {target}, which is not deployed"
            )

    smtp = deploy_gateway == "true"
    submission = smtp and bool(gateway_secret)
    assert ("GatewayService" in deployed) is smtp
    assert (SUBMISSION_RESOURCES & set(deployed)) == (SUBMISSION_RESOURCES if submission else set())
    if smtp:
        container = _container(deployed["GatewayTaskDefinition"], "gateway")
        env = _container_env(container)
        # Submission (AUTH) is configured exactly when the certificate is: never without TLS.
        assert {var for _, _, var in SUBMISSION_PORTS.values()} & set(env) == (
            {var for _, _, var in SUBMISSION_PORTS.values()} if submission else set()
        )
        assert TLS_SECRET_ENV & set(env) == (TLS_SECRET_ENV if submission else set())
        exposed = {p["ContainerPort"] for p in container["PortMappings"]}
        exposed |= {
            r["FromPort"] for r in deployed["GatewaySecurityGroup"]["Properties"]["SecurityGroupIngress"]
        }
        exposed |= {lb["ContainerPort"] for lb in deployed["GatewayService"]["Properties"]["LoadBalancers"]}
        assert exposed == ({25} | set(SUBMISSION_PORTS) if submission else {25})


def test_gateway_rules(template: dict[str, Any]) -> None:
    rules = template["Rules"]
    smtp = rules["GatewayNeedsNetworkAndImage"]
    assert smtp["RuleCondition"] == {"Fn::Equals": [{"Ref": "DeployGateway"}, "true"]}
    access = rules["AccessGatewayNeedsNetworkImageAndCertificate"]
    assert access["RuleCondition"] == {"Fn::Equals": [{"Ref": "DeployAccessGateway"}, "true"]}
    for rule, required in (
        (smtp, {"VpcId", "SubnetIds", "GatewayImage"}),
        (access, {"VpcId", "SubnetIds", "GatewayImage", "AccessTlsSecretArn"}),
    ):
        asserted = set()
        for assertion in rule["Assertions"]:
            # !Not [!Equals [!Ref X, ""]] or !Not [!Contains [!Ref X, ""]]
            (negated,) = assertion["Assert"]["Fn::Not"]
            ((function, (ref, empty)),) = negated.items()
            assert function in ("Fn::Equals", "Fn::Contains"), assertion
            assert empty == "", assertion
            asserted.add(ref["Ref"])
        assert asserted == required


def test_gateway_task_definition(template: dict[str, Any]) -> None:
    """The SMTP gateway as it is without a certificate (test_gateway_with_certificate_* for the rest)."""
    task = _smtp_gateway(template, secret="")["GatewayTaskDefinition"]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    # With the rspamd sidecar (on by default; test_rspamd_sidecar_* for it).
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    container = _container(task, "gateway")
    assert container["Command"] == ["python", "-m", "mailpipe_gateway", "smtp"]
    assert container["Image"] == {"Ref": "GatewayImage"}
    assert [p["ContainerPort"] for p in container["PortMappings"]] == [25]
    assert "Secrets" not in container
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert not {name for name in environment if name.startswith(("MAILPIPE_TLS_", "MAILPIPE_SUBMISSION"))}
    assert environment["MAILPIPE_MAIL_BUCKET"] == {"Ref": "MailBucket"}
    assert environment["MAILPIPE_INBOUND_QUEUE_URL"] == {"Ref": "InboundQueue"}
    assert environment["MAILPIPE_DIRECTORY_TABLE"] == {"Ref": "DirectoryTable"}
    assert environment["MAILPIPE_MAILBOX_TABLE"] == {"Ref": "MailboxTable"}
    assert environment["MAILPIPE_VALIDATE_FUNCTION"] == {"Ref": "ValidateRecipientFunction"}
    assert environment["MAILPIPE_HOSTNAME"] == {"Ref": "GatewayHostname"}
    assert environment["MAILPIPE_SMTP_PORT"] == "25"
    assert environment["MAILPIPE_MAX_MESSAGE_SIZE"] == {"Ref": "MaxMessageSize"}
    assert container["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "GatewayLogGroup"}
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["GatewayTaskRole", "Arn"]}


def test_gateway_task_role_is_least_privilege(template: dict[str, Any]) -> None:
    """Without a certificate (no submission) the SMTP gateway does not read the directory itself."""
    role = _smtp_gateway(template, secret="")["GatewayTaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    grants: dict[str, set[str]] = {}
    for policy in role["Policies"]:
        for statement in _as_list(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow"
            for resource in _as_list(statement["Resource"]):
                grants.setdefault(_sub_text(resource), set()).update(_as_list(statement["Action"]))
    spool = "${MailBucket.Arn}/spool/*"
    assert "s3:PutObject" in grants.pop(spool)
    assert grants == {
        json.dumps({"Fn::GetAtt": ["InboundQueue", "Arn"]}): {"sqs:SendMessage"},
        json.dumps({"Fn::GetAtt": ["ValidateRecipientFunction", "Arn"]}): {"lambda:InvokeFunction"},
    }


def test_gateway_network(template: dict[str, Any]) -> None:
    """Without a certificate: port 25 only."""
    resources = _smtp_gateway(template, secret="")
    assert not SUBMISSION_RESOURCES & set(resources)
    ingress = resources["GatewaySecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress] == [("tcp", 25, 25)]
    assert resources["GatewayLoadBalancer"]["Properties"]["Type"] == "network"
    listener = resources["GatewayListener"]["Properties"]
    assert (listener["Protocol"], listener["Port"]) == ("TCP", 25)
    target_group = resources["GatewayTargetGroup"]["Properties"]
    assert (target_group["Protocol"], target_group["Port"], target_group["TargetType"]) == ("TCP", 25, "ip")
    service = resources["GatewayService"]
    assert service["Properties"]["LaunchType"] == "FARGATE"
    assert service["Properties"]["LoadBalancers"] == [
        {"ContainerName": "gateway", "ContainerPort": 25, "TargetGroupArn": {"Ref": "GatewayTargetGroup"}}
    ]
    assert _as_list(service["DependsOn"]) == ["GatewayListener"]
    assert not _refs(service.get("Metadata", {}))


# --------------------------------------------------------------------------- SMTP gateway: rspamd sidecar


def test_rspamd_parameters(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["DeployRspamd"]["Default"] == "true", "the spam filter is on unless turned off"
    assert parameters["DeployRspamd"]["AllowedValues"] == ["true", "false"]
    image = parameters["RspamdImage"]["Default"]
    assert image.startswith("docker.io/rspamd/rspamd:") and not image.endswith(":latest"), "a pinned tag"
    assert parameters["GatewayDnsblZones"]["Default"] == "", "no blocklists unless configured"
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (smtp,) = [g for g in groups if g["Label"]["default"].startswith("SMTP gateway")]
    assert {"DeployRspamd", "RspamdImage", "GatewayDnsblZones"} <= set(smtp["Parameters"])
    assert template["Conditions"]["GatewayRspamdEnabled"] == {
        "Fn::And": [{"Condition": "GatewayEnabled"}, {"Fn::Equals": [{"Ref": "DeployRspamd"}, "true"]}]
    }


@pytest.mark.parametrize("secret", ["", SECRET_ARN])
def test_rspamd_sidecar_in_the_gateway_task(template: dict[str, Any], secret: str) -> None:
    deployed = _smtp_gateway(template, secret)
    task = deployed["GatewayTaskDefinition"]["Properties"]
    assert [c["Name"] for c in task["ContainerDefinitions"]] == ["gateway", "rspamd"]
    rspamd = _container(task, "rspamd")
    assert rspamd["Image"] == {"Ref": "RspamdImage"}
    assert rspamd["Essential"] is True
    assert "PortMappings" not in rspamd, "rspamd is for the gateway on loopback, not for the network"
    check = rspamd["HealthCheck"]
    assert check["Command"][0] == "CMD" and "127.0.0.1:11333" in check["Command"]
    assert check["StartPeriod"] >= 60 and check["Timeout"] < check["Interval"]
    assert rspamd["LogConfiguration"]["Options"]["awslogs-group"] == {"Ref": "GatewayLogGroup"}
    assert rspamd["LogConfiguration"]["Options"]["awslogs-stream-prefix"] == "rspamd"

    gateway = _container(task, "gateway")
    assert gateway["DependsOn"] == [{"ContainerName": "rspamd", "Condition": "HEALTHY"}]
    # As the code reads it: the filter asks the sidecar's normal worker.
    settings_module = _require("mailpipe_gateway.smtp.settings", "mailpipe")
    env = _container_env(gateway, _parameters(template))
    settings = settings_module.GatewaySettings.from_env(
        {k: v for k, v in env.items() if not k.startswith("MAILPIPE_TLS_")}
    )
    assert settings.rspamd_url == "http://127.0.0.1:11333"
    assert settings.dnsbl_zones == ()

    # A valid Fargate size for the CPU, and a gigabyte more than without the sidecar.
    without = _deploy(
        template,
        DeployGateway="true",
        VpcId="vpc-0123456789abcdef0",
        SubnetIds="subnet-0123456789abcdef0",
        GatewayImage="image",
        GatewayTlsSecretArn=secret,
        DeployRspamd="false",
    )["GatewayTaskDefinition"]["Properties"]
    assert task["Cpu"] == "1024" and int(task["Memory"]) in range(2048, 8193, 1024)
    assert int(task["Memory"]) == int(without["Memory"]) + 1024

    egress = deployed["GatewaySecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert ("udp", 11335) in {(r["IpProtocol"], r["FromPort"]) for r in egress}, "fuzzy hash lookups"
    ingress = deployed["GatewaySecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert not {11333, 11334} & {r["FromPort"] for r in ingress}


def test_without_rspamd_the_gateway_runs_alone(template: dict[str, Any]) -> None:
    deployed = _deploy(
        template,
        DeployGateway="true",
        VpcId="vpc-0123456789abcdef0",
        SubnetIds="subnet-0123456789abcdef0",
        GatewayImage="image",
        DeployRspamd="false",
    )
    task = deployed["GatewayTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    assert container["Name"] == "gateway" and "DependsOn" not in container
    assert "MAILPIPE_RSPAMD_URL" not in _container_env(container)
    assert (task["Cpu"], task["Memory"]) == ("512", "1024")
    egress = deployed["GatewaySecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(r["IpProtocol"], r["FromPort"]) for r in egress] == [("tcp", 443)]


def test_dnsbl_zones_reach_the_gateway(template: dict[str, Any]) -> None:
    deployed = _deploy(
        template,
        DeployGateway="true",
        VpcId="vpc-0123456789abcdef0",
        SubnetIds="subnet-0123456789abcdef0",
        GatewayImage="image",
        GatewayDnsblZones="zen.spamhaus.org,bl.example.org",
    )
    gateway = _container(deployed["GatewayTaskDefinition"], "gateway")
    settings_module = _require("mailpipe_gateway.smtp.settings", "mailpipe")
    env = _container_env(gateway, _parameters(template, GatewayDnsblZones="zen.spamhaus.org,bl.example.org"))
    settings = settings_module.GatewaySettings.from_env(env)
    assert settings.dnsbl_zones == ("zen.spamhaus.org", "bl.example.org")


# --------------------------------------------------------------------------- SMTP gateway: submission


def test_gateway_tls_secret_parameter_and_conditions(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    secret = parameters["GatewayTlsSecretArn"]
    assert secret["Type"] == "String" and secret["Default"] == ""
    # The same shape as the access gateway's: the full ARN of a JSON secret {"cert": ..., "key": ...}.
    assert secret["AllowedPattern"] == parameters["AccessTlsSecretArn"]["AllowedPattern"]
    pattern = re.compile(secret["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch(SECRET_ARN)
    assert not pattern.fullmatch("arn:aws:secretsmanager:us-east-1:123456789012:secret:mailpipe/smtp-tls")
    assert not pattern.fullmatch("mailpipe/smtp-tls")
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (smtp,) = [g for g in groups if g["Label"]["default"].startswith("SMTP gateway")]
    assert "GatewayTlsSecretArn" in smtp["Parameters"]
    # Optional: the SMTP gateway is deployable without it (port 25 only; test_gateway_rules).

    conditions = template["Conditions"]
    assert conditions["GatewayTlsSecretSet"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "GatewayTlsSecretArn"}, ""]}]
    }
    assert conditions["GatewaySubmissionEnabled"] == {
        "Fn::And": [{"Condition": "GatewayEnabled"}, {"Condition": "GatewayTlsSecretSet"}]
    }
    for deploy, arn in itertools.product(["false", "true"], ["", SECRET_ARN]):
        evaluated = _evaluate_conditions(
            template, _parameters(template, DeployGateway=deploy, GatewayTlsSecretArn=arn)
        )
        assert evaluated["GatewaySubmissionEnabled"] is (deploy == "true" and arn != ""), (deploy, arn)

    # Every conditional piece of the SMTP gateway's resources hangs on that one condition.
    for name, resource in template["Resources"].items():
        if name.startswith("Gateway"):
            decided = {
                node["Fn::If"][0] for node in _walk(resource) if isinstance(node, dict) and "Fn::If" in node
            }
            assert decided <= {"GatewaySubmissionEnabled", "GatewayRspamdEnabled"}, (name, decided)


def test_gateway_without_certificate_offers_no_submission(template: dict[str, Any]) -> None:
    """No secret: the SMTP gateway stays port 25 only, without STARTTLS, secrets or directory access."""
    deployed = _smtp_gateway(template, secret="")
    assert not SUBMISSION_RESOURCES & set(deployed)
    smtp = {name: body for name, body in deployed.items() if name.startswith("Gateway")}
    text = json.dumps(smtp)
    for absent in (
        "GatewayTlsSecretArn",
        "secretsmanager",
        "dynamodb:",
        "MAILPIPE_SUBMISSION",
        "MAILPIPE_TLS_",
    ):
        assert absent not in text, absent
    assert "Policies" not in deployed["GatewayExecutionRole"]["Properties"]

    settings_module = _require("mailpipe_gateway.smtp.settings", "mailpipe")
    container = _container(deployed["GatewayTaskDefinition"], "gateway")
    settings = settings_module.GatewaySettings.from_env(_container_env(container, _parameters(template)))
    assert settings.port == 25
    assert settings.tls_cert is None and settings.tls_key is None  # no STARTTLS


def test_gateway_with_certificate_task_definition(
    template: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _smtp_gateway(template, SECRET_ARN)["GatewayTaskDefinition"]["Properties"]
    # argon2id password checks (64 MiB each) on a pool of 32 threads, and the rspamd sidecar's 1 GB;
    # a valid Fargate size for 1 vCPU.
    assert task["Cpu"] == "1024"
    assert int(task["Memory"]) >= 3072 and int(task["Memory"]) in range(2048, 8193, 1024)
    container = _container(task, "gateway")
    assert container["Command"] == ["python", "-m", "mailpipe_gateway", "smtp"]
    mappings = container["PortMappings"]
    assert sorted(p["ContainerPort"] for p in mappings) == sorted([25, *SUBMISSION_PORTS])
    assert {p.get("Protocol", "tcp") for p in mappings} == {"tcp"}

    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["MAILPIPE_SMTP_PORT"] == "25"
    for port, (_, _, variable) in SUBMISSION_PORTS.items():
        assert environment[variable] == str(port), variable
    # Submission reads the directory: the task is told which table.
    assert environment["MAILPIPE_DIRECTORY_TABLE"] == {"Ref": "DirectoryTable"}
    # The certificate never appears in the task definition in clear: it comes from Secrets Manager.
    assert not {name for name in environment if name.startswith("MAILPIPE_TLS_")}
    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    assert secrets == {
        "MAILPIPE_TLS_CERT_PEM": {"Fn::Sub": "${GatewayTlsSecretArn}:cert::"},
        "MAILPIPE_TLS_KEY_PEM": {"Fn::Sub": "${GatewayTlsSecretArn}:key::"},
    }

    # As the code reads it: the certificate (STARTTLS on 25, and what the submission listeners use,
    # built from these settings with only the port replaced) and the submission ports.
    settings_module = _require("mailpipe_gateway.smtp.settings", "mailpipe")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # certificate_from_env writes the PEM files
    env = _container_env(container, _parameters(template))
    settings = settings_module.GatewaySettings.from_env(env)
    assert settings.port == 25
    assert settings.tls_cert is not None and settings.tls_key is not None
    assert settings.tls_cert.read_text() == env["MAILPIPE_TLS_CERT_PEM"]
    assert {int(env[variable]) for _, _, variable in SUBMISSION_PORTS.values()} == set(SUBMISSION_PORTS)


def test_gateway_with_certificate_network(template: dict[str, Any]) -> None:
    resources = _smtp_gateway(template, SECRET_ARN)
    ingress = resources["GatewaySecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress) == sorted(
        ("tcp", port, port) for port in [25, *SUBMISSION_PORTS]
    )
    assert {r["CidrIp"] for r in ingress} == {"0.0.0.0/0"}

    service = resources["GatewayService"]
    load_balancers = service["Properties"]["LoadBalancers"]
    service_targets = {
        lb["ContainerPort"]: (lb["ContainerName"], lb["TargetGroupArn"]) for lb in load_balancers
    }
    assert len(service_targets) == len(load_balancers) == 1 + len(SUBMISSION_PORTS)
    assert service_targets[25] == ("gateway", {"Ref": "GatewayTargetGroup"})

    for port, (listener_id, target_group_id, _) in SUBMISSION_PORTS.items():
        listener = resources[listener_id]["Properties"]
        assert listener["LoadBalancerArn"] == {"Ref": "GatewayLoadBalancer"}  # the MX host's NLB
        assert (listener["Protocol"], listener["Port"]) == ("TCP", port)  # TLS ends in the gateway
        assert listener["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": target_group_id}}]

        target_group = resources[target_group_id]["Properties"]
        assert (target_group["Protocol"], target_group["Port"], target_group["TargetType"]) == (
            "TCP",
            port,
            "ip",
        )
        assert target_group["VpcId"] == {"Ref": "VpcId"}
        assert target_group["HealthCheckProtocol"] == "TCP"
        attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
        # Failed-login throttling works per client address.
        assert attributes["preserve_client_ip.enabled"] == "true"
        assert 300 <= int(attributes["deregistration_delay.timeout_seconds"]) <= 3600

        assert service_targets[port] == ("gateway", {"Ref": target_group_id})

    # ECS refuses a target group that no listener attaches to a load balancer yet: the service waits for
    # every listener, the submission ones through a reference (DependsOn cannot be conditional).
    waits_for = set(_as_list(service["DependsOn"])) | _refs(service.get("Metadata", {}))
    assert waits_for >= {"GatewayListener"} | {listener for listener, _, _ in SUBMISSION_PORTS.values()}


def test_gateway_with_certificate_reads_only_its_secret_and_the_directory(template: dict[str, Any]) -> None:
    resources = _smtp_gateway(template, SECRET_ARN)
    execution = resources["GatewayExecutionRole"]["Properties"]
    assert execution["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}
    ]
    assert _grants(execution) == {"${GatewayTlsSecretArn}": {"secretsmanager:GetSecretValue"}}

    task_role = resources["GatewayTaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in task_role
    grants = _grants(task_role)
    spool = "${MailBucket.Arn}/spool/*"
    assert "s3:PutObject" in grants.pop(spool)
    # Directory.authenticate (GetItem) and Directory.owned_addresses (GetItem, BatchGetItem; Scan in a
    # directory from before the send-as hints); reads only.
    assert grants == {
        json.dumps({"Fn::GetAtt": ["InboundQueue", "Arn"]}): {"sqs:SendMessage"},
        json.dumps({"Fn::GetAtt": ["ValidateRecipientFunction", "Arn"]}): {"lambda:InvokeFunction"},
        json.dumps({"Fn::GetAtt": ["DirectoryTable", "Arn"]}): {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",  # password rehash only: see test_gateways_may_only_rehash_passwords
        },
    }
    text = json.dumps(task_role)
    assert "MailboxTable" not in text and "secretsmanager" not in text


# --------------------------------------------------------------------------- access gateway (IMAP/POP3)


def test_access_gateway_is_optional(template: dict[str, Any], resources: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    deploy = parameters["DeployAccessGateway"]
    assert deploy["Type"] == "String"
    assert deploy["Default"] == "false"
    assert sorted(deploy["AllowedValues"]) == ["false", "true"]
    secret = parameters["AccessTlsSecretArn"]
    assert secret["Type"] == "String" and secret["Default"] == ""
    pattern = re.compile(secret["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("arn:aws:secretsmanager:us-east-1:123456789012:secret:mailpipe/tls-AbC123")
    # ECS needs the full ARN (with Secrets Manager's 6-character suffix) to select a JSON key.
    assert not pattern.fullmatch("arn:aws:secretsmanager:us-east-1:123456789012:secret:mailpipe/tls")
    assert not pattern.fullmatch("mailpipe/tls")
    assert int(parameters["AccessGatewayDesiredCount"]["Default"]) >= 1
    assert template["Conditions"]["AccessGatewayEnabled"] == {
        "Fn::Equals": [{"Ref": "DeployAccessGateway"}, "true"]
    }

    access = {name for name in resources if name.startswith("AccessGateway")}
    assert {name for pair in ACCESS_PORTS.values() for name in pair} <= access
    conditional = {name for name, r in resources.items() if r.get("Condition") == "AccessGatewayEnabled"}
    assert conditional == access
    # The service runs in the shared cluster.
    assert resources["AccessGatewayService"]["Properties"]["Cluster"] == {"Ref": "GatewayCluster"}


def test_access_gateway_task_definition(resources: dict[str, Any]) -> None:
    task = resources["AccessGatewayTaskDefinition"]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["NetworkMode"] == "awsvpc"
    # Up to a 40 MiB APPEND literal per IMAP session is held in memory.
    assert int(task["Cpu"]) >= 1024
    assert int(task["Memory"]) >= 2048
    assert task["RuntimePlatform"]["CpuArchitecture"] == {"Ref": "GatewayArchitecture"}
    assert task["TaskRoleArn"] == {"Fn::GetAtt": ["AccessGatewayTaskRole", "Arn"]}
    assert task["ExecutionRoleArn"] == {"Fn::GetAtt": ["AccessGatewayExecutionRole", "Arn"]}

    (container,) = task["ContainerDefinitions"]
    assert container["Command"] == ["python", "-m", "mailpipe_gateway", "access"]
    assert container["Image"] == {"Ref": "GatewayImage"}
    assert container["Essential"] is True
    mappings = container["PortMappings"]
    assert sorted(p["ContainerPort"] for p in mappings) == sorted(ACCESS_PORTS)
    assert {p.get("Protocol", "tcp") for p in mappings} == {"tcp"}

    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    # Resources.from_env needs all four.
    assert environment["MAILPIPE_MAIL_BUCKET"] == {"Ref": "MailBucket"}
    assert environment["MAILPIPE_INBOUND_QUEUE_URL"] == {"Ref": "InboundQueue"}
    assert environment["MAILPIPE_DIRECTORY_TABLE"] == {"Ref": "DirectoryTable"}
    assert environment["MAILPIPE_MAILBOX_TABLE"] == {"Ref": "MailboxTable"}
    assert environment["MAILPIPE_CHANGES_TOPIC_ARN"] == {"Ref": "MailboxChangesTopic"}
    assert environment["MAILPIPE_HOSTNAME"] == {
        "Fn::If": ["AccessGatewayHostnameSet", {"Ref": "AccessGatewayHostname"}, {"Ref": "GatewayHostname"}]
    }
    ports = {
        "MAILPIPE_IMAP_PORT": "143",
        "MAILPIPE_IMAPS_PORT": "993",
        "MAILPIPE_POP3_PORT": "110",
        "MAILPIPE_POP3S_PORT": "995",
    }
    for name, port in ports.items():
        assert environment[name] == port, name
        assert int(port) in ACCESS_PORTS
    assert environment["AWS_DEFAULT_REGION"] == {"Ref": "AWS::Region"}
    assert environment["LOG_LEVEL"] == "INFO"
    # The certificate never appears in the task definition in clear: it comes from Secrets Manager.
    assert not {n for n in environment if n.startswith("MAILPIPE_TLS_")}

    secrets = {s["Name"]: s["ValueFrom"] for s in container["Secrets"]}
    assert secrets == {
        "MAILPIPE_TLS_CERT_PEM": {"Fn::Sub": "${AccessTlsSecretArn}:cert::"},
        "MAILPIPE_TLS_KEY_PEM": {"Fn::Sub": "${AccessTlsSecretArn}:key::"},
    }
    logs = container["LogConfiguration"]
    assert logs["LogDriver"] == "awslogs"
    assert logs["Options"]["awslogs-group"] == {"Ref": "AccessGatewayLogGroup"}


def test_access_gateway_environment_is_what_the_code_reads(resources: dict[str, Any]) -> None:
    """The task's environment and secrets, as the container sees them, configure the real settings."""
    config = _require("mailpipe.config", "mailpipe")
    access = _require("mailpipe_gateway.access", "mailpipe")
    (container,) = resources["AccessGatewayTaskDefinition"]["Properties"]["ContainerDefinitions"]
    env = {
        e["Name"]: e["Value"] if isinstance(e["Value"], str) else f"<{next(iter(e['Value']))}>"
        for e in container["Environment"]
    }
    env.update({s["Name"]: "<secret>" for s in container["Secrets"]})
    resources = config.Resources.from_env(env)  # raises if one of the four is missing
    assert resources.changes_topic_arn == "<Ref>"  # so access.change_feed makes the feed
    settings = access.AccessSettings.from_env(env)
    ports = (settings.imap_port, settings.imaps_port, settings.pop3_port, settings.pop3s_port)
    assert ports == (143, 993, 110, 995)
    assert settings.host == "0.0.0.0"
    assert {"MAILPIPE_TLS_CERT_PEM", "MAILPIPE_TLS_KEY_PEM"} <= set(env)


def test_access_gateway_task_role_is_least_privilege(resources: dict[str, Any]) -> None:
    role = resources["AccessGatewayTaskRole"]["Properties"]
    assert "ManagedPolicyArns" not in role
    grants = _grants(role)
    assert grants == {
        json.dumps({"Fn::GetAtt": ["DirectoryTable", "Arn"]}): {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",  # password rehash only: see test_gateways_may_only_rehash_passwords
        },
        # TransactWriteItems is authorized per item: PutItem, UpdateItem, DeleteItem.
        json.dumps({"Fn::GetAtt": ["MailboxTable", "Arn"]}): {
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:BatchWriteItem",
        },
        "${MailboxTable.Arn}/index/by_modseq": {"dynamodb:Query"},
        "${MailBucket.Arn}/messages/*": {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"},
        # The change feed: queues of its own (by name prefix), and a subscription to the topic.
        CHANGE_QUEUES: {
            action for action, resource in ACCESS_GATEWAY_FEED_CALLS if resource == CHANGE_QUEUES
        },
        "*": {"sqs:ListQueues"},  # names only; it has no resource to scope to
        json.dumps({"Ref": "MailboxChangesTopic"}): {"sns:Subscribe", "sns:Unsubscribe"},
    }
    # No spool, no mail queue, no function, no wildcard actions.
    text = json.dumps(role["Policies"])
    assert "spool" not in text
    assert "InboundQueue" not in text and "OutboundQueue" not in text
    assert "ValidateRecipientFunction" not in text and "lambda:" not in text
    for actions in grants.values():
        assert not {a for a in actions if "*" in a}, actions


def test_access_gateway_may_make_every_call_of_the_change_feed(resources: dict[str, Any]) -> None:
    role = resources["AccessGatewayTaskRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in _as_list(policy["PolicyDocument"]["Statement"])]
    missing = [
        call
        for call in sorted(ACCESS_GATEWAY_FEED_CALLS)
        if not any(
            call[0] in _as_list(statement["Action"])
            and any(
                _sub_text(granted) == call[1] or json.dumps(granted) == json.dumps({"Ref": call[1]})
                for granted in _as_list(statement["Resource"])
            )
            for statement in statements
        )
    ]
    assert not missing, f"the access gateway may not make these calls: {missing}"
    # The queue names the feed makes are the ones the role may touch.
    from mailpipe.changes.feed import NAME_PREFIX

    assert CHANGE_QUEUES.endswith(":" + NAME_PREFIX + "*")


def test_mailbox_table_streams_mailbox_items_to_the_relay(resources: dict[str, Any]) -> None:
    """The relay reads old and new images, and the filter passes mailbox items and nothing else."""
    from mailpipe.store.model import MAILBOX_PREFIX, SUBSCRIPTION_PREFIX, USER_PREFIX

    table = resources["MailboxTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    function = resources["MailboxChangesFunction"]["Properties"]
    (event,) = function["Events"].values()
    assert event["Type"] == "DynamoDB"
    source = event["Properties"]
    assert source["Stream"] == {"Fn::GetAtt": ["MailboxTable", "StreamArn"]}
    assert source["StartingPosition"] == "LATEST"
    assert source["MaximumBatchingWindowInSeconds"] == 0
    assert source["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["MailboxChangesFailureQueue", "Arn"]
    }
    # Retries end, so one bad batch cannot hold the shard (and every later change) for a day.
    assert 0 <= source["MaximumRetryAttempts"] <= 20
    assert source["MaximumRecordAgeInSeconds"] <= 3600
    # Mailbox items, and subscription items (names kept apart from the mailboxes).
    patterns = [json.loads(f["Pattern"]) for f in source["FilterCriteria"]["Filters"]]
    assert patterns == [
        {"dynamodb": {"Keys": {"pk": {"S": [{"prefix": USER_PREFIX}]}, "sk": {"S": [{"prefix": prefix}]}}}}
        for prefix in (MAILBOX_PREFIX, SUBSCRIPTION_PREFIX)
    ]
    # Its lag pages.
    (age,) = _alarms(resources, "IteratorAge").values()
    assert age["Properties"]["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": "MailboxChangesFunction"}}
    ]
    _pages(age["Properties"])


def test_gateways_may_only_rehash_passwords(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """A login may replace its user's password hash, and the gateways may write nothing else
    in the directory (mailpipe.directory.Directory._rehash)."""
    roles = [
        _smtp_gateway(template, SECRET_ARN)["GatewayTaskRole"]["Properties"],
        resources["AccessGatewayTaskRole"]["Properties"],
    ]
    for role in roles:
        statements = [
            statement
            for policy in role["Policies"]
            for statement in _as_list(policy["PolicyDocument"]["Statement"])
            if "dynamodb:UpdateItem" in _as_list(statement["Action"])
            and "DirectoryTable" in json.dumps(statement["Resource"])
        ]
        assert len(statements) == 1
        assert statements[0]["Condition"] == {
            "ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "sk", "password_hash"]},
            "StringEqualsIfExists": {"dynamodb:ReturnValues": "NONE"},
        }


def test_access_gateway_execution_role_reads_only_its_secret(resources: dict[str, Any]) -> None:
    role = resources["AccessGatewayExecutionRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"}
    ]
    assert _grants(role) == {"${AccessTlsSecretArn}": {"secretsmanager:GetSecretValue"}}
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
    # Each gateway reads only its own certificate (the SMTP gateway's execution role reads
    # GatewayTlsSecretArn, when set: test_gateway_with_certificate_reads_only_its_secret); no task role
    # reads a secret.
    assert "AccessTlsSecretArn" not in json.dumps(resources["GatewayExecutionRole"])
    assert "secretsmanager" not in json.dumps(resources["GatewayTaskRole"])
    for name, resource in resources.items():
        if name.startswith("AccessGateway"):
            assert "GatewayTlsSecretArn" not in json.dumps(resource), name


def test_access_gateway_network(resources: dict[str, Any]) -> None:
    group = resources["AccessGatewaySecurityGroup"]["Properties"]
    assert group["VpcId"] == {"Ref": "VpcId"}
    ingress = group["SecurityGroupIngress"]
    assert sorted((r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in ingress) == sorted(
        ("tcp", port, port) for port in ACCESS_PORTS
    )
    assert {r["CidrIp"] for r in ingress} == {"0.0.0.0/0"}
    egress = group["SecurityGroupEgress"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in egress] == [("tcp", 443, 443)]

    balancer = resources["GatewayLoadBalancer"]["Properties"]
    assert (balancer["Type"], balancer["Scheme"]) == ("network", "internet-facing")
    assert balancer["Subnets"] == {"Ref": "SubnetIds"}

    service = resources["AccessGatewayService"]
    properties = service["Properties"]
    assert properties["LaunchType"] == "FARGATE"
    assert properties["DesiredCount"] == {"Ref": "AccessGatewayDesiredCount"}
    assert properties["TaskDefinition"] == {"Ref": "AccessGatewayTaskDefinition"}
    network = properties["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["SecurityGroups"] == [{"Ref": "AccessGatewaySecurityGroup"}]
    assert network["Subnets"] == {"Ref": "SubnetIds"}
    assert network["AssignPublicIp"] == {"Ref": "GatewayAssignPublicIp"}
    service_targets = {
        lb["ContainerPort"]: (lb["ContainerName"], lb["TargetGroupArn"]) for lb in properties["LoadBalancers"]
    }
    assert len(service_targets) == len(properties["LoadBalancers"]) == len(ACCESS_PORTS)
    assert set(_as_list(service["DependsOn"])) == {listener for listener, _ in ACCESS_PORTS.values()}

    for port, (listener_id, target_group_id) in ACCESS_PORTS.items():
        listener = resources[listener_id]["Properties"]
        assert listener["LoadBalancerArn"] == {"Ref": "GatewayLoadBalancer"}  # one NLB for all ports
        assert (listener["Protocol"], listener["Port"]) == ("TCP", port)
        assert listener["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": target_group_id}}]

        target_group = resources[target_group_id]["Properties"]
        assert (target_group["Protocol"], target_group["Port"], target_group["TargetType"]) == (
            "TCP",
            port,
            "ip",
        )
        assert target_group["VpcId"] == {"Ref": "VpcId"}
        assert target_group["HealthCheckProtocol"] == "TCP"
        attributes = {a["Key"]: a["Value"] for a in target_group["TargetGroupAttributes"]}
        assert attributes["preserve_client_ip.enabled"] == "true"
        delay = int(attributes["deregistration_delay.timeout_seconds"])
        assert delay <= 3600  # the most an NLB allows
        if port in (143, 993):
            # IMAP IDLE sessions last up to 30 minutes.
            assert delay >= 1800, (target_group_id, delay)
        else:
            assert delay >= 300, (target_group_id, delay)

        assert service_targets[port] == ("access-gateway", {"Ref": target_group_id})


def test_access_gateway_cfn_lint_ignores_are_narrow(resources: dict[str, Any]) -> None:
    """Only the checks that trip on the empty defaults of the optional parameters are silenced."""
    for name, resource in resources.items():
        ignored = resource.get("Metadata", {}).get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
        assert set(ignored) <= {"W1030", "W1031"}, (name, ignored)
        if name == "WebmailDistribution":
            # WebmailCertificateArn's empty default, taken only under an !If that needs it set.
            assert ignored == ["W1030"]
            continue
        if ignored:
            assert resource.get("Condition") in (
                "GatewayEnabled",
                "GatewaySubmissionEnabled",
                "AccessGatewayEnabled",
                "AnyGatewayEnabled",
            ), name


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    expected = {
        "MailBucketName": {"Ref": "MailBucket"},
        "InboundQueueUrl": {"Ref": "InboundQueue"},
        "DirectoryTableName": {"Ref": "DirectoryTable"},
        "MailboxTableName": {"Ref": "MailboxTable"},
        "ValidateRecipientFunctionName": {"Ref": "ValidateRecipientFunction"},
        "InboundFunctionName": {"Ref": "InboundFunction"},
    }
    for name, value in expected.items():
        assert outputs[name]["Value"] == value, name
    dns = outputs["GatewayLoadBalancerDnsName"]
    assert dns["Condition"] == "GatewayEnabled"
    assert dns["Value"] == {"Fn::GetAtt": ["GatewayLoadBalancer", "DNSName"]}
    access_dns = outputs["AccessGatewayLoadBalancerDnsName"]
    assert access_dns["Condition"] == "AccessGatewayEnabled"
    assert access_dns["Value"] == {"Fn::GetAtt": ["GatewayLoadBalancer", "DNSName"]}


# --------------------------------------------------------------------------- other deployment files


def test_samconfig() -> None:
    config = tomllib.loads(SAMCONFIG.read_text(encoding="utf-8"))
    deploy = config["default"]["deploy"]["parameters"]
    stack_name = deploy.get(
        "stack_name", config["default"].get("global", {}).get("parameters", {}).get("stack_name")
    )
    assert stack_name == "mailpipe"
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()
    assert 'DeployGateway="false"' in deploy.get("parameter_overrides", 'DeployGateway="false"')


def test_gateway_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0].startswith(
        f"FROM python:{RUNTIME.removeprefix('python')}-slim"
    )  # as the functions
    # The servers and the core only: no `mailpipe` command, no dev stack, none of their dependencies.
    assert re.search(r"^RUN pip install -r gateway/requirements\.txt", text, re.MULTILINE)
    copied = [line.split()[1] for line in instructions if line.startswith("COPY ")]
    assert sorted(copied) == sorted(
        [
            "layers/core/requirements.txt",
            "gateway/requirements.txt",
            "layers/core/mailpipe/",
            "gateway/mailpipe_gateway/",
        ]
    )
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "EXPOSE 25" in instructions
    assert instructions[-1] == 'CMD ["python", "-m", "mailpipe_gateway", "smtp"]'
    assert "cap_net_bind_service" in text  # how the non-root process binds port 25


# --------------------------------------------------------------------------- Amazon SES

SES_ARN = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:"


def _ses_send_statement(resources: dict[str, Any]) -> dict[str, Any]:
    (statement,) = [
        s
        for s in _statements(resources["OutboundFunction"]["Properties"]["Policies"])
        if any(a.startswith("ses:") for a in _as_list(s["Action"]))
    ]
    return statement


def test_ses_sending_is_scoped_to_the_identity_and_configuration_set(template: dict[str, Any]) -> None:
    """SESv2 raw sends need ses:SendRawEmail; SES authorizes them against the identity and the set."""
    for domain, expected in (
        (
            "crepes.fr",
            [SES_ARN + "identity/${SesDomain}", SES_ARN + "configuration-set/${SesConfigurationSet}"],
        ),
        ("", [SES_ARN + "configuration-set/${SesConfigurationSet}"]),
    ):
        statement = _ses_send_statement(_deploy(template, SesDomain=domain))
        assert sorted(_as_list(statement["Action"])) == ["ses:SendEmail", "ses:SendRawEmail"]
        assert [_sub_text(r) for r in _as_list(statement["Resource"])] == expected, domain
        assert "Condition" not in statement
    # No other function, and no wildcard, may send.
    for name, resource in template["Resources"].items():
        if name != "OutboundFunction":
            assert '"ses:Send' not in json.dumps(resource), name
    assert "*" not in json.dumps(_ses_send_statement(template["Resources"])["Resource"])


def test_ses_identity_signs_with_mailpipes_dkim_key_and_its_own_mail_from(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    assert parameters["SesDomain"]["Default"] == "" and parameters["SesDkimSelector"]["Default"] == ""
    domain = re.compile(parameters["SesDomain"]["AllowedPattern"])
    assert domain.fullmatch("") and domain.fullmatch("crepes.fr") and domain.fullmatch("xn--bcher-kva.test")
    assert not domain.fullmatch("Crepes.FR") and not domain.fullmatch("crepes.fr/x")
    assert re.fullmatch(parameters["SesMailFromSubdomain"]["AllowedPattern"], "bounce")
    assert "SesEmailIdentity" not in _deploy(template)

    identity = _deploy(template, SesDomain="crepes.fr", SesDkimSelector="mp2026")["SesEmailIdentity"]
    properties = identity["Properties"]
    assert properties["EmailIdentity"] == {"Ref": "SesDomain"}
    assert properties["DkimAttributes"] == {"SigningEnabled": True}
    # Bring Your Own DKIM: the key of the DKIM key contract, never in the template or a parameter.
    assert properties["DkimSigningAttributes"] == {
        "DomainSigningSelector": {"Ref": "SesDkimSelector"},
        "DomainSigningPrivateKey": {
            "Fn::Sub": "{{resolve:secretsmanager:mailpipe/dkim/${SesDomain}/${SesDkimSelector}"
            ":SecretString:private_key_base64}}"
        },
    }
    assert properties["MailFromAttributes"] == {
        "MailFromDomain": {"Fn::Sub": "${SesMailFromSubdomain}.${SesDomain}"},
        "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
    }
    assert properties["ConfigurationSetAttributes"] == {
        "ConfigurationSetName": {"Ref": "SesConfigurationSet"}
    }
    # Bounces reach senders as mailpipe's DSN; SES's forwarded bounce mail would be a second one.
    assert properties["FeedbackAttributes"] == {"EmailForwardingEnabled": False}
    # Without a selector, SES's own keys (Easy DKIM).
    easy = _deploy(template, SesDomain="crepes.fr")["SesEmailIdentity"]["Properties"]
    assert "DkimSigningAttributes" not in easy and easy["DkimAttributes"] == {"SigningEnabled": True}


def test_ses_events_reach_the_events_function_and_nothing_else(resources: dict[str, Any]) -> None:
    destination = resources["SesEventDestination"]["Properties"]
    assert destination["ConfigurationSetName"] == {"Ref": "SesConfigurationSet"}
    event = destination["EventDestination"]
    assert event["Enabled"] is True
    assert sorted(event["MatchingEventTypes"]) == ["bounce", "complaint", "deliveryDelay", "reject"]
    assert event["SnsDestination"] == {"TopicARN": {"Ref": "SesEventTopic"}}
    assert resources["SesEventDestination"]["DependsOn"] == "SesEventTopicPolicy"

    (publish,) = resources["SesEventTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert resources["SesEventTopicPolicy"]["Properties"]["Topics"] == [{"Ref": "SesEventTopic"}]
    assert (publish["Principal"], publish["Action"]) == ({"Service": "ses.amazonaws.com"}, "sns:Publish")
    assert publish["Condition"]["StringEquals"] == {
        "AWS:SourceAccount": {"Ref": "AWS::AccountId"},
        "AWS:SourceArn": {"Fn::Sub": SES_ARN + "configuration-set/${SesConfigurationSet}"},
    }
    assert "KmsMasterKeyId" not in resources["SesEventTopic"].get("Properties", {})

    subscription = resources["SesEventSubscription"]["Properties"]
    assert subscription == {
        "TopicArn": {"Ref": "SesEventTopic"},
        "Protocol": "sqs",
        "Endpoint": {"Fn::GetAtt": ["SesEventQueue", "Arn"]},
    }
    queue_policy = resources["SesEventQueuePolicy"]["Properties"]
    assert queue_policy["Queues"] == [{"Ref": "SesEventQueue"}]
    (send,) = queue_policy["PolicyDocument"]["Statement"]
    assert (send["Principal"], send["Action"]) == ({"Service": "sns.amazonaws.com"}, "sqs:SendMessage")
    assert send["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "SesEventTopic"}}}

    function = resources["SesEventsFunction"]["Properties"]
    (source,) = function["Events"].values()
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": ["SesEventQueue", "Arn"]}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert resources["SesEventQueue"]["Properties"]["VisibilityTimeout"] >= 6 * 30


def test_ses_events_function_policies_are_narrow(resources: dict[str, Any]) -> None:
    policies = resources["SesEventsFunction"]["Properties"]["Policies"]
    templates = [(name, body) for p in policies for name, body in p.items() if name != "Statement"]
    assert templates == [
        ("SQSPollerPolicy", {"QueueName": {"Fn::GetAtt": ["SesEventQueue", "QueueName"]}}),
        ("SQSSendMessagePolicy", {"QueueName": {"Fn::GetAtt": ["InboundQueue", "QueueName"]}}),
        ("DynamoDBCrudPolicy", {"TableName": {"Ref": "OutboundTable"}}),
    ]
    (statement,) = _statements(policies)
    assert (statement["Action"], _sub_text(statement["Resource"])) == (
        "s3:PutObject",
        "${MailBucket.Arn}/spool/*",
    )
    assert "ses:" not in json.dumps(policies) and "messages/" not in json.dumps(policies)


def test_ses_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["SesConfigurationSetName"]["Value"] == {"Ref": "SesConfigurationSet"}
    assert outputs["SesEventDeadLetterQueueUrl"]["Value"] == {"Ref": "SesEventDeadLetterQueue"}


@pytest.mark.parametrize(
    ("domain", "selector"), [("", ""), ("", "mp2026"), ("crepes.fr", ""), ("crepes.fr", "mp2026")]
)
def test_every_ses_parameter_combination_deploys_a_consistent_stack(
    template: dict[str, Any], domain: str, selector: str
) -> None:
    deployed = _deploy(template, SesDomain=domain, SesDkimSelector=selector)
    for name, body in deployed.items():
        for target in _refs(body) | set(_as_list(body.get("DependsOn", []))):
            assert target in deployed or target in template["Parameters"] or target.startswith("AWS::"), (
                f"{name} refers to {target}, which is not deployed"
            )
    assert ("SesEmailIdentity" in deployed) is bool(domain)
    if domain:
        byo = "DkimSigningAttributes" in deployed["SesEmailIdentity"]["Properties"]
        assert byo is bool(selector)
    # The event path exists whatever the domain: the transport names the set in every send.
    assert {"SesConfigurationSet", "SesEventDestination", "SesEventsFunction"} <= set(deployed)


# --------------------------------------------------------------------------- alarms and availability


def _alarms(resources: dict[str, Any], metric: str) -> dict[str, dict[str, Any]]:
    return {
        name: r
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == metric
    }


def _pages(alarm: dict[str, Any]) -> None:
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert alarm["OKActions"] == [{"Ref": "AlertTopic"}]


@pytest.mark.parametrize("metric", ["Errors", "Throttles"])
def test_every_function_pages_on_errors_and_throttles(resources: dict[str, Any], metric: str) -> None:
    functions = {name for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert functions >= set(FUNCTIONS) | {"OutboundFunction"}
    alarmed = set()
    for name, resource in _alarms(resources, metric).items():
        alarm = resource["Properties"]
        assert "Condition" not in resource, name
        assert alarm["Namespace"] == "AWS/Lambda"
        assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
            "Sum",
            "GreaterThanThreshold",
            0,
        )
        assert alarm["Period"] * alarm["EvaluationPeriods"] <= 900, name
        # A function nobody invoked reports nothing: that is no error.
        assert alarm["TreatMissingData"] == "notBreaching"
        _pages(alarm)
        ((dimension),) = alarm["Dimensions"]
        assert dimension["Name"] == "FunctionName"
        alarmed.add(dimension["Value"]["Ref"])
    assert alarmed == functions


def test_queue_age_pages_before_the_dead_letter_queue(resources: dict[str, Any]) -> None:
    """A message in the outbound queue is re-enqueued at least every 15 minutes (its longest SQS
    delay): one much older means the function is not taking them, hours before the DLQ would say so."""
    from mailpipe.outbound.schedule import SQS_MAX_DELAY_SECONDS

    alarmed = {}
    for name, resource in _alarms(resources, "ApproximateAgeOfOldestMessage").items():
        alarm = resource["Properties"]
        assert "Condition" not in resource, name
        assert alarm["Namespace"] == "AWS/SQS"
        assert (alarm["Statistic"], alarm["ComparisonOperator"]) == ("Maximum", "GreaterThanThreshold")
        assert 2 * SQS_MAX_DELAY_SECONDS <= alarm["Threshold"] <= 2 * 3600, name
        _pages(alarm)
        ((dimension),) = alarm["Dimensions"]
        alarmed[dimension["Value"]["Fn::GetAtt"][0]] = alarm
    assert set(alarmed) == {"OutboundQueue", "InboundQueue"}


GATEWAY_SERVICES = {
    # service: (condition, container, desired-count parameter, health-check port variable)
    "GatewayService": ("GatewayEnabled", "gateway", "GatewayDesiredCount", "MAILPIPE_SMTP_PORT"),
    "AccessGatewayService": (
        "AccessGatewayEnabled",
        "access-gateway",
        "AccessGatewayDesiredCount",
        "MAILPIPE_IMAP_PORT",
    ),
}


@pytest.mark.parametrize("service", sorted(GATEWAY_SERVICES))
def test_gateways_run_two_tasks_scale_on_cpu_and_page_when_short(
    template: dict[str, Any], service: str
) -> None:
    condition, container_name, desired, port_variable = GATEWAY_SERVICES[service]
    deployed = _deploy(
        template, DeployGateway="true", DeployAccessGateway="true", AccessTlsSecretArn=SECRET_ARN
    )
    parameters = template["Parameters"]
    # Two tasks by default, which Fargate spreads over the subnets' availability zones.
    assert int(parameters[desired]["Default"]) == 2
    assert deployed[service]["Properties"]["DesiredCount"] == {"Ref": desired}
    assert "two or more availability zones" in parameters["SubnetIds"]["Description"]

    prefix = service.removesuffix("Service")
    target = deployed[f"{prefix}ScalableTarget"]
    assert template["Resources"][f"{prefix}ScalableTarget"]["Condition"] == condition
    props = target["Properties"]
    assert (props["ServiceNamespace"], props["ScalableDimension"]) == ("ecs", "ecs:service:DesiredCount")
    assert props["ResourceId"] == {"Fn::Sub": f"service/${{GatewayCluster}}/${{{service}.Name}}"}
    assert props["MinCapacity"] == {"Ref": desired}
    assert props["MaxCapacity"] == {"Ref": "GatewayMaxCount"}
    assert int(parameters["GatewayMaxCount"]["Default"]) >= 2
    (policy,) = [
        r
        for r in deployed.values()
        if r["Type"] == "AWS::ApplicationAutoScaling::ScalingPolicy"
        and r["Properties"]["ScalingTargetId"] == {"Ref": f"{prefix}ScalableTarget"}
    ]
    tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    assert policy["Properties"]["PolicyType"] == "TargetTrackingScaling"
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    )
    assert 40 <= tracking["TargetValue"] <= 80

    # Fewer tasks running than desired pages: Container Insights' task counts, enabled on the cluster.
    cluster = deployed["GatewayCluster"]["Properties"]
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    (alarm,) = [
        r["Properties"]
        for r in deployed.values()
        if r["Type"] == "AWS::CloudWatch::Alarm"
        and json.dumps({"Fn::GetAtt": [service, "Name"]}) in json.dumps(r)
    ]
    queries = {m["Id"]: m for m in alarm["Metrics"]}
    assert queries["missing"]["Expression"] == "desired - running"
    for query, metric in (("desired", "DesiredTaskCount"), ("running", "RunningTaskCount")):
        stat = queries[query]["MetricStat"]["Metric"]
        assert (stat["Namespace"], stat["MetricName"]) == ("ECS/ContainerInsights", metric)
        assert {"Name": "ClusterName", "Value": {"Ref": "GatewayCluster"}} in stat["Dimensions"]
        assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service, "Name"]}} in stat["Dimensions"]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    _pages(alarm)

    # ECS waits longer than the gateway's drain before it kills the container, and checks it greets.
    from mailpipe_gateway.run import SHUTDOWN_GRACE_SECONDS

    task = deployed[deployed[service]["Properties"]["TaskDefinition"]["Ref"]]
    container = _container(task, container_name)
    assert SHUTDOWN_GRACE_SECONDS + 10 <= container["StopTimeout"] <= 120  # Fargate's maximum
    check = container["HealthCheck"]
    assert check["Command"][:3] == ["CMD", "python", "-c"]
    assert port_variable in check["Command"][3] and port_variable in _container_env(container)
    assert check["Timeout"] < check["Interval"]


@pytest.mark.parametrize(
    ("deploy_gateway", "deploy_access_gateway"), [("true", "false"), ("false", "true"), ("true", "true")]
)
def test_one_load_balancer_for_every_port(
    template: dict[str, Any], deploy_gateway: str, deploy_access_gateway: str
) -> None:
    deployed = _deploy(
        template,
        DeployGateway=deploy_gateway,
        DeployAccessGateway=deploy_access_gateway,
        GatewayTlsSecretArn=SECRET_ARN,
        AccessTlsSecretArn=SECRET_ARN if deploy_access_gateway == "true" else "",
    )
    balancers = [n for n, r in deployed.items() if r["Type"] == "AWS::ElasticLoadBalancingV2::LoadBalancer"]
    assert balancers == ["GatewayLoadBalancer"]
    listeners = [
        r["Properties"] for r in deployed.values() if r["Type"] == "AWS::ElasticLoadBalancingV2::Listener"
    ]
    assert {listener["LoadBalancerArn"]["Ref"] for listener in listeners} == {"GatewayLoadBalancer"}
    ports = sorted(listener["Port"] for listener in listeners)
    expected = (set(SUBMISSION_PORTS) | {25} if deploy_gateway == "true" else set()) | (
        set(ACCESS_PORTS) if deploy_access_gateway == "true" else set()
    )
    assert ports == sorted(expected)  # each port once


def test_webmail_behind_cloudfront_with_the_local_servers_csp(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    """The webmail's files come from a private bucket only CloudFront reads, with the same CSP the
    local server sends; JMAP goes through the same distribution (one origin), never cached."""
    from mailpipe_tools.local.webmail_files import content_security_policy

    policy = resources["WebmailResponseHeadersPolicy"]["Properties"]["ResponseHeadersPolicyConfig"]
    csp = policy["SecurityHeadersConfig"]["ContentSecurityPolicy"]
    # The push socket goes to the WebSocket API's own host, which the page may connect to.
    websocket = "wss://${JmapWebSocketApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"
    own_name = "wss://${JmapWebSocketDomainName}"  # with the stack's own names (docs/deploy-domain.md)
    assert csp == {
        "ContentSecurityPolicy": {
            "Fn::If": [
                "JmapWebSocketDomainSet",
                {"Fn::Sub": content_security_policy(own_name)},
                {"Fn::Sub": content_security_policy(websocket)},
            ]
        },
        "Override": True,
    }
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["MAILPIPE_JMAP_WEBSOCKET_URL"]["Fn::Sub"].startswith(websocket + "/")
    block = resources["WebmailBucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert all(block[s] is True for s in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls"))
    (statement,) = resources["WebmailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "cloudfront.amazonaws.com"}
    assert statement["Action"] == "s3:GetObject" and "AWS:SourceArn" in statement["Condition"]["StringEquals"]
    config = resources["WebmailDistribution"]["Properties"]["DistributionConfig"]
    assert config["DefaultRootObject"] == "webmail/index.html"
    default = config["DefaultCacheBehavior"]
    assert default["ResponseHeadersPolicyId"] == {"Ref": "WebmailResponseHeadersPolicy"}
    assert default["ViewerProtocolPolicy"] == "redirect-to-https"
    api = {b["PathPattern"]: b for b in config["CacheBehaviors"]}
    assert set(api) == {"/jmap/*", "/.well-known/jmap"}
    for behavior in api.values():
        assert behavior["TargetOriginId"] == "jmap" and behavior["ViewerProtocolPolicy"] == "https-only"
    cache = resources["WebmailApiCachePolicy"]["Properties"]["CachePolicyConfig"]
    assert cache["DefaultTTL"] == 0
    assert cache["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]["Headers"] == ["Authorization"]


WEB_DOMAINS = {
    "WebmailDomainName": "webmail.example.org",
    "JmapDomainName": "jmap.example.org",
    "JmapWebSocketDomainName": "jmap-push.example.org",
}
ZONE = "Z0123456789ABCDEFGHIJ"
CLOUDFRONT_ZONE = "Z2FDTNDATAQYW2"


@pytest.mark.parametrize("webmail_certificate", ["", "arn:aws:acm:us-east-1:123456789012:certificate/abc"])
@pytest.mark.parametrize("names", [(), ("JmapDomainName",), tuple(WEB_DOMAINS)])
def test_the_web_side_behind_the_stacks_own_names(
    template: dict[str, Any], names: tuple[str, ...], webmail_certificate: str
) -> None:
    """Each name set gets its certificate (DNS-validated in the hosted zone), its custom domain and
    API mapping or CloudFront alias, and its alias record; none set deploys as before."""
    chosen = {name: WEB_DOMAINS[name] for name in names}
    deployed = _deploy(
        template,
        **chosen,
        HostedZoneId=ZONE if names else "",
        WebmailCertificateArn=webmail_certificate,
    )
    for body in deployed.values():
        for target in _refs(body) | set(_as_list(body.get("DependsOn", []))):
            generated = target == "JmapHttpApiApiGatewayDefaultStage"  # SAM makes it with the HttpApi
            assert (
                generated
                or target in deployed
                or target in template["Parameters"]
                or target.startswith("AWS::")
            )

    def certificate(logical_id: str, domain: str) -> None:
        properties = deployed[logical_id]["Properties"]
        assert properties["DomainName"] == {"Ref": domain} and properties["ValidationMethod"] == "DNS"
        assert properties["DomainValidationOptions"] == [
            {"DomainName": {"Ref": domain}, "HostedZoneId": {"Ref": "HostedZoneId"}}
        ]

    def record(logical_id: str, domain: str) -> dict[str, Any]:
        properties = deployed[logical_id]["Properties"]
        assert (properties["HostedZoneId"], properties["Name"], properties["Type"]) == (
            {"Ref": "HostedZoneId"},
            {"Ref": domain},
            "A",
        )
        return properties["AliasTarget"]

    api_parts = {
        "JmapDomainName": (
            "JmapCertificate",
            "JmapCustomDomain",
            "JmapApiMapping",
            "JmapDnsRecord",
            "JmapHttpApi",
        ),
        "JmapWebSocketDomainName": (
            "JmapWebSocketCertificate",
            "JmapWebSocketCustomDomain",
            "JmapWebSocketApiMapping",
            "JmapWebSocketDnsRecord",
            "JmapWebSocketApi",
        ),
    }
    for domain, (cert, custom, mapping, dns, api) in api_parts.items():
        present = domain in chosen
        assert (
            {cert, custom, mapping, dns} <= set(deployed)
            if present
            else not {cert, custom, mapping, dns} & set(deployed)
        )
        if not present:
            continue
        certificate(cert, domain)
        (configuration,) = deployed[custom]["Properties"]["DomainNameConfigurations"]
        assert configuration == {
            "CertificateArn": {"Ref": cert},
            "EndpointType": "REGIONAL",
            "SecurityPolicy": "TLS_1_2",
        }
        assert deployed[mapping]["Properties"]["ApiId"] == {"Ref": api}
        assert deployed[mapping]["Properties"]["DomainName"] == {"Ref": custom}
        assert "ApiMappingKey" not in deployed[mapping]["Properties"]  # the stage at the name's root
        assert record(dns, domain) == {
            "DNSName": {"Fn::GetAtt": [custom, "RegionalDomainName"]},
            "HostedZoneId": {"Fn::GetAtt": [custom, "RegionalHostedZoneId"]},
        }

    config = deployed["WebmailDistribution"]["Properties"]["DistributionConfig"]
    if "WebmailDomainName" in chosen:
        assert config["Aliases"] == [{"Ref": "WebmailDomainName"}]
        viewer = config["ViewerCertificate"]
        assert (viewer["SslSupportMethod"], viewer["MinimumProtocolVersion"]) == ("sni-only", "TLSv1.2_2021")
        if webmail_certificate:
            assert viewer["AcmCertificateArn"] == {"Ref": "WebmailCertificateArn"}
            assert "WebmailCertificate" not in deployed
        else:
            assert viewer["AcmCertificateArn"] == {"Ref": "WebmailCertificate"}
            certificate("WebmailCertificate", "WebmailDomainName")
        assert record("WebmailDnsRecord", "WebmailDomainName") == {
            "DNSName": {"Fn::GetAtt": ["WebmailDistribution", "DomainName"]},
            "HostedZoneId": CLOUDFRONT_ZONE,
        }
    else:
        assert "Aliases" not in config and "ViewerCertificate" not in config
        assert not {"WebmailCertificate", "WebmailDnsRecord"} & set(deployed)

    outputs = _resolve(template["Outputs"], _evaluate_conditions(template, _parameters(template, **chosen)))
    if "JmapDomainName" in chosen:
        assert outputs["JmapApiUrl"]["Value"] == {"Fn::Sub": "https://${JmapDomainName}/.well-known/jmap"}
    else:
        assert "execute-api" in outputs["JmapApiUrl"]["Value"]["Fn::Sub"]
    web_socket = "JmapWebSocketDomainName" in chosen
    assert (
        outputs["JmapWebSocketUrl"]["Value"]["Fn::Sub"] == "wss://${JmapWebSocketDomainName}"
    ) is web_socket


def test_web_domain_rules(template: dict[str, Any]) -> None:
    """The hosted zone is required with any name; the webmail's certificate outside us-east-1."""
    rules = template["Rules"]
    zone = rules["WebDomainsNeedHostedZone"]
    named = {operand["Fn::Not"][0]["Fn::Equals"][0]["Ref"] for operand in zone["RuleCondition"]["Fn::Or"]}
    assert named == set(WEB_DOMAINS)
    (assertion,) = zone["Assertions"]
    assert assertion["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "HostedZoneId"}, ""]}]}
    cloudfront = rules["WebmailCertificateOutsideUsEast1"]
    assert cloudfront["RuleCondition"] == {
        "Fn::And": [
            {"Fn::Not": [{"Fn::Equals": [{"Ref": "WebmailDomainName"}, ""]}]},
            {"Fn::Equals": [{"Ref": "WebmailCertificateArn"}, ""]},
        ]
    }
    (assertion,) = cloudfront["Assertions"]
    assert assertion["Assert"] == {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]}
    for name in (*WEB_DOMAINS, "HostedZoneId", "WebmailCertificateArn"):
        assert template["Parameters"][name]["Default"] == ""
