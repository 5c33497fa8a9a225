"""Reading template.yaml: the resources the dev stack creates and the functions it runs.

The template is the one source of truth, so local runs and AWS cannot drift apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form intrinsics (!Ref X -> {"Ref": "X"}, !Sub -> Fn::Sub, ...)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@dataclass(frozen=True)
class SqsEventSource:
    function: str
    queue: str
    batch_size: int = 10
    report_batch_item_failures: bool = False


@dataclass(frozen=True)
class StreamEventSource:
    """A DynamoDB stream event source mapping: the table's stream, read by the function."""

    function: str
    table: str
    batch_size: int = 100
    starting_position: str = "LATEST"
    # FilterCriteria's patterns, parsed (event_pattern.py applies them).
    filters: tuple[dict[str, Any], ...] = ()


@dataclass
class Template:
    path: Path
    body: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, path: Path = DEFAULT_TEMPLATE) -> Template:
        return cls(path, yaml.load(path.read_text(), Loader=_CloudFormationLoader))

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.body.get("Resources", {})

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res.get("Type") == resource_type}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id].get("Properties", {})

    def functions(self) -> dict[str, dict[str, Any]]:
        return self.of_type("AWS::Serverless::Function")

    def function_environment(self) -> dict[str, Any]:
        """Globals' environment and every function's own, unresolved (the dev stack resolves them)."""
        env = dict(
            self.body.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        )
        for props in (res.get("Properties", {}) for res in self.functions().values()):
            env.update(props.get("Environment", {}).get("Variables", {}))
        return env

    def sqs_event_sources(self) -> list[SqsEventSource]:
        sources = []
        for name, res in self.functions().items():
            for event in res.get("Properties", {}).get("Events", {}).values():
                if event.get("Type") != "SQS":
                    continue
                props = event.get("Properties", {})
                queue = props["Queue"]
                queue_id = queue["Fn::GetAtt"][0] if isinstance(queue, dict) else str(queue)
                sources.append(
                    SqsEventSource(
                        function=name,
                        queue=queue_id,
                        batch_size=int(props.get("BatchSize", 10)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in props.get("FunctionResponseTypes", []),
                    )
                )
        return sources

    def stream_event_sources(self) -> list[StreamEventSource]:
        sources = []
        for name, res in self.functions().items():
            for event in res.get("Properties", {}).get("Events", {}).values():
                if event.get("Type") != "DynamoDB":
                    continue
                props = event.get("Properties", {})
                stream = props["Stream"]
                if not (
                    isinstance(stream, dict) and stream.get("Fn::GetAtt", [None, None])[1] == "StreamArn"
                ):
                    raise ValueError(f"{name}: the local runtime reads only streams of the template's tables")
                filters = props.get("FilterCriteria", {}).get("Filters", [])
                sources.append(
                    StreamEventSource(
                        function=name,
                        table=stream["Fn::GetAtt"][0],
                        batch_size=int(props.get("BatchSize", 100)),
                        starting_position=str(props.get("StartingPosition", "LATEST")),
                        filters=tuple(json.loads(f["Pattern"]) for f in filters),
                    )
                )
        return sources
