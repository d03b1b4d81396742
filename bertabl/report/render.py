"""Render a Report (layouts.py) as Markdown, a standalone LaTeX document (booktabs), CSV or JSON.

Renderers only format: every number, mark and note was decided when the Report was built.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict
from typing import Any

from bertabl.report.document import Detail, Line, Report, Shown, Table
from bertabl.report.provenance import ReportContext, provenance_lines

SYNTHETIC_WARNING = (
    "**Data: synthetic** (bertabl's embedded suite; not comparable to paper numbers)."
)


# -- Markdown -----------------------------------------------------------------------------------
def shown_md(cell: Shown) -> str:
    text = _core(cell, pm=" ± ", dash="—", minus="−")
    if _extras(cell):
        text += f" <sub>{_extras(cell)}</sub>"
    if cell.notes:
        text += f"<sup>{','.join(map(str, cell.notes))}</sup>"
    return text


def _extras(cell: Shown) -> str:
    parts = [] if cell.n is None else [f"n={cell.n}"]
    parts += [
        f"{k} {label}"
        for k, label in (
            (cell.failed, "failed"),
            (cell.diverged, "diverged"),
            (cell.stalled, "stalled"),
        )
        if k
    ]
    return ", ".join(parts)


def _core(cell: Shown, pm: str, dash: str, minus: str) -> str:
    if cell.text is not None:
        return cell.text
    if cell.value is None:
        return dash
    d = cell.digits
    text = f"{cell.value:.{d}f}"
    if cell.std is not None:
        text += f"{pm}{cell.std:.{d}f}"
    if cell.ci is not None:
        text += f" [{cell.ci[0]:.{d}f}, {cell.ci[1]:.{d}f}]"
    if cell.delta is not None:
        sign = "+" if round(cell.delta, d) >= 0 else minus
        text += f" ({sign}{abs(cell.delta):.{d}f})"
    return text + cell.mark


def render_markdown(
    report: Report, ctx: ReportContext, trials_csv: str | None = None, curves: str | None = None
) -> str:
    """The report as GitHub-flavoured Markdown; `trials_csv` names the per-trial CSV beside it,
    `curves` the learning-curves PNG (report/curves.py)."""
    lines = _md_summary(report)
    if curves:
        lines += ["## Learning curves", "", f"![Learning curves]({curves})", ""]
    lines += ["## Cells in detail", ""] + _md_details(report.details, trials_csv)
    lines += ["", "## Compute by pre-training trial", ""] + _md_compute(ctx)
    lines += ["", "## Provenance", ""] + [f"- {line}" for line in provenance_lines(ctx)]
    return "\n".join(lines) + "\n"


def render_summary(report: Report) -> str:
    """The report's tables, notes and rules as Markdown (what `bertabl report` prints)."""
    return "\n".join(_md_summary(report)) + "\n"


def _md_summary(report: Report) -> list[str]:
    lines = [f"# {report.title}", ""]
    if report.description:
        lines += [report.description, ""]
    if report.synthetic:
        lines += [SYNTHETIC_WARNING, ""]
    for table in report.tables:
        if table.caption:
            lines += [f"**{table.caption}**", ""]
        lines += _md_table(table) + [""]
    if report.figure is not None:
        lines += [f"![Figure 5]({report.name}.png) ([PDF]({report.name}.pdf))", ""]
    lines += [f"<sup>{i}</sup> {note}  " for i, note in enumerate(report.notes, 1)]
    if report.notes:
        lines.append("")
    for rule in report.rules:
        lines += [rule, ""]
    return lines


def _md_table(table: Table) -> list[str]:
    header = [
        h + "".join(f"<sup>{n}</sup>" for n in table.header_notes.get(i, []))
        for i, h in enumerate(table.header)
    ]
    out = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for line in table.lines:
        label = f"*{line.label}*" if line.source == "paper" else line.label
        out.append(f"| {label} | " + " | ".join(shown_md(c) for c in line.cells) + " |")
    return out


def _md_details(details: list[Detail], trials_csv: str | None) -> list[str]:
    ci = any(d.ci is not None for d in details)
    head = ["Row", "Column", "Metric", "n", "Mean", "Std", "Median", "Best on dev"]
    head += ["95% CI"] if ci else []
    head += ["Failed", "Diverged", "Stalled", "p vs baseline", "Δ vs baseline (95% CI)"]
    head += ["MDE (80%)"]
    head += ["Selected grid point", "Trial-hours"]
    head += ["Tokens (planned)", "Trials"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in details:
        point = ", ".join(f"{k}={v:g}" for k, v in (d.grid_point or {}).items()) or d.status
        ids = ", ".join(f"`{i}`" for i in d.trial_ids)
        cells = [
            f"{d.row_label} (`{d.row}`)",
            d.column,
            f"{d.split} {d.metric}",
            str(d.n),
            _pct(d.mean),
            _pct(d.std),
            _pct(d.median),
            _pct(d.best),
        ]
        if ci:
            cells.append(f"[{100 * d.ci[0]:.1f}, {100 * d.ci[1]:.1f}]" if d.ci else "—")
        cells += [
            str(d.failed),
            str(d.diverged),
            "—" if d.stalled is None else str(d.stalled),
            "—" if d.p_vs_baseline is None else f"{d.p_vs_baseline:.3g}",
            _difference(d.difference_ci),
            _mde(d),
            point,
            f"{d.hours:.3f}",
            f"{d.tokens:,}",
            f"<details><summary>{len(d.trial_ids)}</summary>{ids}</details>",
        ]
        out.append("| " + " | ".join(cells) + " |")
    if trials_csv:
        out += [
            "",
            f"Every trial (status, grid point, restart, score, seconds): [{trials_csv}]"
            f"({trials_csv}).",
        ]
    return out


def _md_compute(ctx: ReportContext) -> list[str]:
    out = [
        "| Trial | Rows | Status | Trial-hours | Tokens | FLOPs (6·N·T) |",
        "|---|---|---|---:|---:|---:|",
    ]
    for p in ctx.pretrain:
        out.append(
            f"| `{p.id}` | {', '.join(p.rows)} | {p.status} | {p.hours:.3f} | {p.tokens:,} | "
            f"{p.flops:.3g} |"
        )
    return out


def _difference(interval: tuple[float, float] | None) -> str:
    if interval is None:
        return "—"
    low, high = (100 * x for x in interval)
    return f"[{low:+.1f}, {high:+.1f}]"


def _mde(detail: Detail) -> str:
    """The MDE in points; where restart noise alone earns marks, how often it would."""
    if detail.mde is None:  # compared, yet no MDE: a sign flip over 5 or fewer restarts
        return "none" if detail.p_vs_baseline is not None else "—"
    text = f"{100 * detail.mde:.1f}"
    if detail.false_marks is not None:
        text += f" (marks {100 * detail.false_marks:.0f}% of zero differences)"
    return text


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


# -- LaTeX --------------------------------------------------------------------------------------
def shown_tex(cell: Shown) -> str:
    if cell.text is not None:
        return latex_escape(cell.text)
    text = _core(cell, pm=r" $\pm$ ", dash="---", minus="$-$")
    if cell.mark:
        text = text[: -len(cell.mark)] + f"$^{{{cell.mark}}}$"
    if _extras(cell):
        text += rf"\textsubscript{{{_extras(cell)}}}"
    if cell.notes:
        text += r"\textsuperscript{" + ",".join(map(str, cell.notes)) + "}"
    return text


def render_latex(report: Report, ctx: ReportContext) -> str:
    """A standalone document (pdflatex); the `table` environments paste into a paper as they
    are (they need only \\usepackage{booktabs})."""
    lines = [
        "% Generated by bertabl. Standalone: pdflatex this file. To paste into a paper, copy the",
        "% table environments (they need \\usepackage{booktabs}).",
        r"\documentclass{article}",
        r"\usepackage[T1]{fontenc}",
        r"\usepackage[utf8]{inputenc}",
        r"\usepackage[landscape,margin=1.5cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\begin{document}",
        rf"\section*{{{tex_text(report.title)}}}",
    ]
    if report.description:
        lines.append(tex_text(report.description) + r"\par")
    if report.synthetic:
        lines.append(tex_text(SYNTHETIC_WARNING) + r"\par")
    for table in report.tables:
        lines += _tex_table(table, report)
    if report.notes:
        lines.append(r"\noindent\footnotesize")
        lines += [
            rf"\textsuperscript{{{i}}} {tex_text(note)}\\" for i, note in enumerate(report.notes, 1)
        ]
        lines.append(r"\normalsize")
    lines += [r"\section*{Provenance}", r"\begin{itemize}"]
    lines += [rf"\item {tex_text(line)}" for line in provenance_lines(ctx)]
    lines += [r"\end{itemize}", r"\end{document}"]
    return "\n".join(lines) + "\n"


def _tex_table(table: Table, report: Report) -> list[str]:
    header = [
        latex_escape(h)
        + "".join(rf"\textsuperscript{{{n}}}" for n in table.header_notes.get(i, []))
        for i, h in enumerate(table.header)
    ]
    caption = report.title + (f": {table.caption}" if table.caption else "")
    if report.synthetic:
        caption += " (synthetic data)"
    caption_tex = tex_text(caption) + ". " + " ".join(tex_text(r) for r in report.rules)
    body = []
    previous: Line | None = None
    for line in table.lines:
        if previous is not None and previous.source == "paper" and line.source == "ours":
            body.append(r"\addlinespace")
        label = latex_escape(line.label)
        label = rf"\textit{{{label}}}" if line.source == "paper" else label
        body.append(" & ".join([label, *(shown_tex(c) for c in line.cells)]) + r" \\")
        previous = line
    return [
        r"\begin{table}[ht]",
        r"\centering",
        r"\small",
        rf"\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *body,
        r"\bottomrule",
        r"\end{tabular}",
        rf"\caption{{{caption_tex}}}",
        r"\end{table}",
    ]


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(ch, ch) for ch in text)


UNICODE_TEX = {
    "—": "---",
    "±": r"$\pm$",
    "·": r"$\cdot$",
    "−": "$-$",
    "×": r"$\times$",
    "≥": r"$\geq$",
}


def tex_text(text: str) -> str:
    """Plain text with Markdown's `code` and **bold** -> escaped LaTeX."""
    out = latex_escape(text)
    out = re.sub(r"`([^`]*)`", r"\\texttt{\1}", out)
    out = re.sub(r"\*\*([^*]*)\*\*", r"\\textbf{\1}", out)
    for char, tex in UNICODE_TEX.items():
        out = out.replace(char, tex)
    return out


# -- CSV and JSON -------------------------------------------------------------------------------
CSV_FIELDS = [
    "table",
    "row",
    "source",
    "column",
    "value",
    "std",
    "ci_low",
    "ci_high",
    "delta",
    "mark",
    "n",
    "notes",
]


def render_csv(report: Report, ctx: ReportContext) -> str:
    """Every shown cell, one a line (long format); numbers unrounded, notes as their text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for t, table in enumerate(report.tables):
        for line in table.lines:
            for heading, cell in zip(table.header[1:], line.cells, strict=True):
                writer.writerow(
                    {
                        "table": t + 1,
                        "row": line.label,
                        "source": line.source,
                        "column": heading,
                        "value": cell.text if cell.text is not None else _num(cell.value),
                        "std": _num(cell.std),
                        "ci_low": _num(cell.ci and cell.ci[0]),
                        "ci_high": _num(cell.ci and cell.ci[1]),
                        "delta": _num(cell.delta),
                        "mark": cell.mark,
                        "n": "" if cell.n is None else cell.n,
                        "notes": "; ".join(report.notes[n - 1] for n in cell.notes),
                    }
                )
    return buffer.getvalue()


def _num(value: float | None) -> str:
    return "" if value is None else repr(round(value, 6))


def render_json(report: Report, ctx: ReportContext) -> str:
    return json.dumps({"report": asdict(report), "provenance": asdict(ctx)}, indent=1) + "\n"


TRIAL_FIELDS = [
    "trial",
    "stage",
    "row",
    "task",
    "grid_point",
    "restart",
    "status",
    "score",
    "seconds",
    "tokens_planned",
]


def render_trials_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, TRIAL_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


RENDERERS = {"md": render_markdown, "tex": render_latex, "csv": render_csv, "json": render_json}
