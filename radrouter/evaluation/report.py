"""An evaluation as JSON, as a terminal table, and as one self-contained HTML page with plots."""

from __future__ import annotations

import html
import math
from dataclasses import asdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rich.table import Table

from radrouter.evaluation.runner import Evaluation, GroupScores
from radrouter.monitoring.plots import figure_png


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def as_json(evaluation: Evaluation) -> dict[str, Any]:
    """Plain JSON: infinite distances (one mask empty) become null."""
    return {
        "source": evaluation.source,
        "threshold": evaluation.threshold,
        "overall": asdict(evaluation.overall),
        "subgroups": {
            descriptor: {value: asdict(group) for value, group in groups.items()}
            for descriptor, groups in evaluation.subgroups.items()
        },
        "cases": [
            {
                "case": scores.case,
                "descriptors": scores.descriptors,
                "segments": {
                    name: {"dice": d, "hd95_mm": _finite(h)} for name, (d, h) in scores.segments.items()
                },
                "findings": {
                    code: {"truth": truth, "probability": probability}
                    for code, (truth, probability) in scores.findings.items()
                },
            }
            for scores in evaluation.cases
        ],
    }


def _figure(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rows(label: str, group: GroupScores) -> list[list[str]]:
    rows = [
        [label, name, str(s.cases), _figure(s.dice_mean), _figure(s.dice_min), _figure(s.hd95_mean, 2)]
        + ["-"] * 5
        for name, s in group.segments.items()
    ]
    rows += [
        [label, code, f"{f.cases} ({f.positives}+)"]
        + ["-"] * 3
        + [_figure(v) for v in (f.sensitivity, f.specificity, f.ppv, f.f1, f.auc)]
        for code, f in group.findings.items()
    ]
    return rows


COLUMNS = (
    "group",
    "segment / finding",
    "cases",
    "Dice mean",
    "Dice min",
    "HD95 mm",
    "sens",
    "spec",
    "PPV",
    "F1",
    "AUC",
)


def _all_rows(evaluation: Evaluation) -> list[list[str]]:
    rows = _rows("all", evaluation.overall)
    for descriptor, groups in evaluation.subgroups.items():
        for value, group in groups.items():
            rows += _rows(f"{descriptor} = {value}", group)
    return rows


def as_table(evaluation: Evaluation) -> Table:
    table = Table(title=f"Evaluation of {evaluation.source} (threshold {evaluation.threshold})")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in COLUMNS[:2] else "right")
    for row in _all_rows(evaluation):
        table.add_row(*row)
    return table


def _dice_plot(evaluation: Evaluation) -> str | None:
    """Dice of every case, one box per segment: spread and outliers at a glance."""
    names = sorted({name for scores in evaluation.cases for name in scores.segments})
    if not names:
        return None
    figure, axes = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.2))
    data = [[s.segments[name][0] for s in evaluation.cases if name in s.segments] for name in names]
    axes.boxplot(data, tick_labels=names)
    for position, values in enumerate(data, start=1):
        axes.scatter([position] * len(values), values, s=12, alpha=0.6)
    axes.set_ylim(0, 1.02)
    axes.set_ylabel("Dice")
    return figure_png(figure)


def as_html(evaluation: Evaluation) -> str:
    """One page, no external files: the table, and a Dice plot per segment."""
    header = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in _all_rows(evaluation)
    )
    plot = _dice_plot(evaluation)
    image = f'<h2>Dice per case</h2><img alt="Dice per case" src="{plot}">' if plot else ""
    title = html.escape(f"Evaluation of {evaluation.source}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "td{text-align:right}td:nth-child(-n+2){text-align:left}</style></head>"
        f"<body><h1>{title}</h1><p>{len(evaluation.cases)} case(s), finding threshold "
        f"{evaluation.threshold}</p><table><tr>{header}</tr>{body}</table>{image}</body></html>"
    )
