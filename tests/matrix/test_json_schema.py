"""The editors' matrix schema (bertabl/matrix/matrix.schema.json): in sync with the pydantic
models, named by every shipped matrix, and validating them as an editor would (jsonschema)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from bertabl.errors import MatrixError
from bertabl.io import tomllib
from bertabl.matrix import Matrix
from bertabl.matrix.json_schema import SHIPPED, editor_schema
from bertabl.matrix.load import validate
from tests.conftest import REPO

SCHEMA_LINE = "#:schema ../bertabl/matrix/matrix.schema.json"
MATRICES = sorted((REPO / "matrices").glob("*.toml"))


def problems(schema: dict, document: dict) -> list[str]:
    """Each schema error as `key.path: message` (what an editor underlines)."""
    validator = jsonschema.Draft7Validator(schema)
    return [
        ".".join(map(str, e.absolute_path)) + ": " + e.message
        for e in validator.iter_errors(document)
    ]


def test_the_shipped_schema_is_the_models_schema():
    shipped = json.loads(SHIPPED.read_text(encoding="utf-8"))
    assert shipped == editor_schema(), (
        "bertabl/matrix/matrix.schema.json is stale: regenerate it with "
        "`bertabl schema > bertabl/matrix/matrix.schema.json`"
    )
    jsonschema.Draft7Validator.check_schema(shipped)


@pytest.mark.parametrize("path", MATRICES, ids=[p.name for p in MATRICES])
def test_every_matrix_names_the_schema_and_passes_it(path: Path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first == SCHEMA_LINE
    target = (path.parent / first.split(maxsplit=1)[1]).resolve()
    assert target == SHIPPED.resolve()
    document = tomllib.loads(path.read_text(encoding="utf-8"))
    assert problems(json.loads(SHIPPED.read_text(encoding="utf-8")), document) == []


def test_keys_a_preset_fills_are_not_required_but_still_validated():
    demo = tomllib.loads((REPO / "matrices" / "demo.toml").read_text(encoding="utf-8"))
    strict = problems(Matrix.model_json_schema(), demo)  # pydantic's own: after the preset
    assert any("'objective' is a required property" in p for p in strict)
    assert problems(editor_schema(), demo) == []
    schema = editor_schema()
    assert "objective" not in schema["$defs"]["PretrainSection"].get("required", [])
    assert schema["$defs"]["FinetuneSection"]["required"] == ["tasks"]  # no preset names tasks
    # the preset still has to provide them: without one, validation names the key
    raw = {"name": "x", "finetune": {"tasks": ["syn_agree"]}, "pretrain": {}}
    with pytest.raises(Exception, match="objective"):
        Matrix.model_validate(raw)
    with pytest.raises(MatrixError, match="finetune.tasks"):
        validate({"name": "x"}, origin="x.toml")


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda m: m["pretrain"]["variants"][0]["pretrain"].update(objectiv="mlm"), "objectiv"),
        (lambda m: m["pretrain"]["variants"][0]["pretrain"].update(objective="bert"), "objective"),
        (lambda m: m.setdefault("scales", {}).update(huge={}), "huge"),
        (lambda m: m.update(scales={"tiny": {"pretrain": {"steps": "many"}}}), "steps"),
        (lambda m: m.update(scales={"tiny": {"pretrain": {"step": 10}}}), "step"),
        (lambda m: m.update(tracking={"tensorboard": "yes"}), "tensorboard"),
    ],
    ids=["variant-typo", "variant-value", "scale-name", "scale-type", "scale-typo", "tracking"],
)
def test_variant_and_scales_tables_are_typed(edit, where: str):
    demo = tomllib.loads((REPO / "matrices" / "demo.toml").read_text(encoding="utf-8"))
    edit(demo)
    found = problems(editor_schema(), demo)
    assert found and any(where in p for p in found), found
