"""Golden files: fixture records -> exactly the expected Markdown and LaTeX, per layout.

The fixtures are real Plans of small matrices (tests/fixtures/report/*.toml) with hand-written
records (*.records.json), some cells finished, some pending, failed or diverged. After an
intended change to the report, regenerate the golden files and review their diff:

    BERTABL_REGEN_GOLDEN=1 PYTHONPATH=. python -m pytest tests/report/test_golden.py
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from bertabl.cli import app
from bertabl.errors import MatrixError
from bertabl.orchestrate.store import RunStore
from bertabl.report.layouts import build_report, infer_layout
from bertabl.report.provenance import collect_context
from bertabl.report.render import render_latex, render_markdown
from tests.conftest import REPO
from tests.report.fixtures import (
    FIXTURES,
    GIT_COMMIT,
    LAYOUT_FIXTURES,
    VERSIONS,
    fixture_plan,
    fixture_records,
    fixture_source,
)

GOLDEN = FIXTURES / "golden"
REGENERATE = os.environ.get("BERTABL_REGEN_GOLDEN") == "1"


@pytest.fixture(autouse=True)
def _from_repo_root(monkeypatch):
    monkeypatch.chdir(REPO)  # the fixtures' data paths are relative to the repository


def _rendered(name: str) -> dict[str, str]:
    plan = fixture_plan(name)
    records = fixture_records(plan, name)
    report = build_report(plan, records, ci=name == "table5")  # one golden with --ci
    ctx = collect_context(plan, records, fixture_source(name), VERSIONS, GIT_COMMIT)
    return {
        "md": render_markdown(report, ctx, f"{name}.trials.csv"),
        "tex": render_latex(report, ctx),
    }


@pytest.mark.parametrize("name", LAYOUT_FIXTURES)
def test_golden_markdown_and_latex(name: str):
    for ext, text in _rendered(name).items():
        path = GOLDEN / f"{name}.{ext}"
        if REGENERATE:
            path.write_text(text, encoding="utf-8")
        assert text == path.read_text(encoding="utf-8"), f"{path} differs (see module docstring)"


@pytest.mark.parametrize("name", LAYOUT_FIXTURES)
def test_latex_is_plain_ascii(name: str):
    # pdflatex with inputenc copes with little Unicode: every special character must be a macro.
    assert _rendered(name)["tex"].isascii()


def test_layout_is_inferred_from_the_matrix():
    assert infer_layout(fixture_plan("table5")) == "table5"  # its name
    assert infer_layout(fixture_plan("table7")) == "table7"
    assert infer_layout(fixture_plan("table6")) == "table6"  # report.layout, name "sizes"
    # generic.toml's variants (bert_base, no_nsp) are Table 5 ids, but its tasks are not
    assert infer_layout(fixture_plan("generic")) == "generic"
    renamed = fixture_plan("table5")
    renamed.matrix = renamed.matrix.model_copy(update={"name": "pretraining_tasks"})
    assert infer_layout(renamed) == "table5"  # by its variants and tasks


def test_paper_numbers_and_deltas_come_from_the_reference_file():
    md = _rendered("table5")["md"]
    # Table 5, No NSP: MNLI-m 83.9, BERT-Base 84.4 -> -0.5; LTR & No NSP SQuAD 77.8 vs 88.5.
    assert "| *No NSP (paper)* | 83.9 (−0.5) | 84.9 (−3.5) |" in md
    assert "77.8 (−10.7)" in md
    md8 = _rendered("table8")["md"]
    # mask100 vs 80/10/10 over six paired restarts, every difference the same sign: p = 2/64.
    assert "59.3 ± 1.2 (−1.7)*" in md8
    assert "| 0.0312 |" in md8


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("name", LAYOUT_FIXTURES)
def test_standalone_latex_compiles(name: str, tmp_path):
    tex = tmp_path / f"{name}.tex"
    tex.write_text(_rendered(name)["tex"], encoding="utf-8")
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / f"{name}.pdf").is_file()


def _run_dir(name: str, tmp_path):
    """A run directory holding the fixture's records, as `bertabl run` leaves it."""
    plan = fixture_plan(name)
    store = RunStore(tmp_path / "runs" / name)
    store.write_manifest(plan.matrix.model_dump(mode="json"), fixture_source(name))
    store.write_plan(plan)
    for record in fixture_records(plan, name).values():
        store.write_record(
            record.id, record.config, record.status, metrics=record.metrics, timings=record.timings
        )
    return store.root


def test_report_command_writes_every_format(tmp_path):
    run_dir = _run_dir("table5", tmp_path)
    out = tmp_path / "reports"
    args = ["report", str(run_dir), "--out", str(out), "--latex", "--ci"]
    result = CliRunner().invoke(
        app, [*args, "--format", "md", "--format", "csv", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "table5.csv",
        "table5.json",
        "table5.md",
        "table5.tex",
        "table5.trials.csv",
    ]
    cells = list(csv.DictReader(io.StringIO((out / "table5.csv").read_text())))
    [mnli] = [c for c in cells if c["row"] == "No NSP" and c["column"] == "MNLI-m"]
    assert (float(mnli["value"]), float(mnli["delta"])) == (60.5, pytest.approx(-1.0))
    assert float(mnli["ci_low"]) <= 60.5 <= float(mnli["ci_high"])
    [pending] = [c for c in cells if c["row"] == "LTR & No NSP" and c["column"] == "SQuAD F1"]
    assert pending["value"] == "" and pending["notes"] == "pending: not run yet"
    data = json.loads((out / "table5.json").read_text())
    assert data["report"]["layout"] == "table5"
    assert data["provenance"]["source"]["path"] == "tests/fixtures/report/table5.toml"
    trials = list(csv.DictReader(io.StringIO((out / "table5.trials.csv").read_text())))
    plan = fixture_plan("table5")
    assert len(trials) == len(plan.pretrain) + len(plan.finetune)
    bilstm = [t for t in trials if t["row"] == "ltr_no_nsp_bilstm" and t["task"] == "mrpc"]
    assert [t["status"] for t in bilstm] == ["failed", "failed"]


def test_report_command_rejects_an_unknown_format(tmp_path):
    run_dir = _run_dir("generic", tmp_path)
    result = CliRunner().invoke(app, ["report", str(run_dir), "--format", "docx"])
    assert result.exit_code == 2
    assert "'docx' is not one of" in result.output


def test_figure5_writes_png_and_pdf(tmp_path):
    run_dir = _run_dir("fig5", tmp_path)
    out = tmp_path / "reports"
    result = CliRunner().invoke(app, ["report", str(run_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "fig5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "fig5.pdf").read_bytes()[:5] == b"%PDF-"
    assert "![Figure 5](fig5.png)" in (out / "fig5.md").read_text()
    again = tmp_path / "again"
    assert CliRunner().invoke(app, ["report", str(run_dir), "--out", str(again)]).exit_code == 0
    for name in ("fig5.png", "fig5.pdf"):  # no timestamps: same results, same bytes
        assert (again / name).read_bytes() == (out / name).read_bytes()


def test_paper_rows_must_name_a_variant_and_a_paper_row():
    plan = fixture_plan("table7")
    wrong_id = plan.matrix.model_copy(
        update={"report": plan.matrix.report.model_copy(update={"paper_rows": {"embeddings": "x"}})}
    )
    plan.matrix = wrong_id
    with pytest.raises(MatrixError, match=r"report.paper_rows.embeddings = 'x': not a row"):
        build_report(plan, {})
    plan.matrix = wrong_id.model_copy(
        update={"report": wrong_id.report.model_copy(update={"paper_rows": {"nope": "elmo"}})}
    )
    with pytest.raises(MatrixError, match="report.paper_rows.nope: no variant is named 'nope'"):
        build_report(plan, {})
