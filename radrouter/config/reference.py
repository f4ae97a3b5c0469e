"""The configuration reference, generated from the settings schema so docs and defaults cannot drift."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from radrouter.config.commitment import CommitmentPeer
from radrouter.config.deidentification import Deidentification
from radrouter.config.pipelines import (
    CodeSetting,
    FindingSetting,
    LabelSetting,
    NetworkPipelineSetting,
    WorkerPool,
)
from radrouter.config.rules import DERIVED_KEYS, Condition, Match, PipelineRequest, Rule
from radrouter.config.settings import Destination, Settings
from radrouter.config.worklist import FindingMatch, MeasurementMatch, TriageRule


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is Match:
        return "`{}` (every series)"
    if field.default_factory is not None:
        produced = field.default_factory()  # type: ignore[call-arg]
        if isinstance(produced, list) and produced and all(isinstance(v, enum.Enum) for v in produced):
            return "`[" + ", ".join(str(v.value) for v in produced) + "]`"
        return f"`{produced!r}`" if not produced else "the defaults shown below"
    value: Any = field.get_default()
    if isinstance(value, CodeSetting):
        return f"`{value.scheme} {value.value}` ({value.meaning})"
    if isinstance(value, str) and value == "":
        return '`""`'
    return f"`{getattr(value, 'value', value)}`" if value is not None else "(none)"


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        annotation = field.annotation
        expand = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if expand and annotation not in (Condition, Match, CodeSetting):
            rows.extend(_rows(annotation, f"{key}."))  # type: ignore[arg-type]
        else:
            rows.append((key, _default(field), field.description or ""))
    return rows


def reference_rows() -> list[tuple[str, str, str]]:
    """(key, default, description) for every option, nested keys joined by dots."""
    rows = [
        row
        for row in _rows(Settings, "")
        if row[0] not in ("destinations", "rules", "worklist.triage_rules", "pipelines", "pools")
    ]
    rows += _rows(CommitmentPeer, "commitment.requesters.<AE title>.")
    rows += _rows(Destination, "destinations.<name>.")
    rows += _rows(Deidentification, "destinations.<name>.deidentify.")
    rows += _rows(NetworkPipelineSetting, "pipelines.<name>.")
    rows += _rows(LabelSetting, "pipelines.<name>.labels[].")
    rows += _rows(FindingSetting, "pipelines.<name>.findings[].")
    rows += _rows(WorkerPool, "pools.<name>.")
    rows += _rows(Rule, "rules[].")
    rows += _rows(PipelineRequest, "rules[].pipelines[].")
    rows += [(f"rules[].match.<Keyword>.{key}", default, text) for key, default, text in _rows(Condition, "")]
    rows += _rows(Match, "rules[].match.")
    rows += [(f"rules[].match.{key}", "(derived)", text) for key, text in DERIVED_KEYS.items()]
    rows += _rows(TriageRule, "worklist.triage_rules[].")
    rows = [row for row in rows if not row[0].endswith((".finding", ".measurement"))]
    rows += _rows(FindingMatch, "worklist.triage_rules[].finding.")
    rows += _rows(MeasurementMatch, "worklist.triage_rules[].measurement.")
    return rows


def reference_markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{key}` | {default} | {text} |" for key, default, text in reference_rows()]
    return "\n".join(lines) + "\n"
