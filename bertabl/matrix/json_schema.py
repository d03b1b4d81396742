"""The matrix JSON schema for editors (Even Better TOML / taplo read `#:schema` lines).

Pydantic's schema of `Matrix` describes a matrix *after* its scale preset is applied, so it
marks keys such as `pretrain.objective` required that a matrix file may leave to its preset;
an editor would flag every shipped matrix. This schema is pydantic's with three changes:

- a key that a preset fills (in any of scales/*.toml) is not required, unless what the preset
  gives still lacks required keys of its own (validation still requires every key once the
  preset is applied);
- `pretrain.variants[].pretrain` (overrides of pretrain keys) gets the pretrain keys' types;
- `scales.<scale>` (a partial matrix) gets the matrix's keys, none of them required.

`bertabl schema` prints it; the shipped copy (matrix.schema.json beside this file) is
regenerated with `bertabl schema > bertabl/matrix/matrix.schema.json`, and a test keeps the
two equal.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from bertabl.matrix.presets import PRESETS
from bertabl.matrix.schema import Matrix

SHIPPED = Path(__file__).with_name("matrix.schema.json")
PARTIAL = "Partial"  # suffix of the $defs copies with nothing required


def editor_schema() -> dict[str, Any]:
    """The JSON schema editors validate and complete matrix files with."""
    schema = copy.deepcopy(Matrix.model_json_schema())
    defs = schema.setdefault("$defs", {})
    for preset in PRESETS.values():
        _relax(schema, preset, defs)
    for name in list(defs):
        defs[name + PARTIAL] = _partial(defs[name])
    root = {k: v for k, v in schema.items() if k not in ("$defs", "$schema", "required")}
    partial_matrix = _partial(root)
    for key in ("name", "scale", "scales"):
        partial_matrix["properties"].pop(key, None)
    partial_matrix["title"] = "Matrix changes at one scale"
    defs["Matrix" + PARTIAL] = partial_matrix
    schema["properties"]["scales"]["additionalProperties"] = {"$ref": f"#/$defs/Matrix{PARTIAL}"}
    scales = schema["properties"]["scales"]
    scales["propertyNames"] = {"enum": list(PRESETS)}
    variant = defs["Variant"]["properties"]["pretrain"]
    overrides = copy.deepcopy(defs[f"PretrainSection{PARTIAL}"])
    for key in ("axes", "variants"):
        overrides["properties"].pop(key, None)
    overrides["title"] = "Pretrain overrides"
    defs["PretrainOverrides"] = overrides
    variant.pop("additionalProperties", None)
    variant["$ref"] = "#/$defs/PretrainOverrides"
    variant.pop("type", None)
    return {"$schema": "http://json-schema.org/draft-07/schema#", **schema}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema `node` stands for ($ref, or a nullable anyOf), or None."""
    if "$ref" in node:
        return defs[node["$ref"].rsplit("/", 1)[-1]]
    if node.get("type") == "object":
        return node
    for option in node.get("anyOf", []):
        found = _resolve(option, defs)
        if found is not None:
            return found
    return None


def _relax(model: dict[str, Any], preset: dict[str, Any], defs: dict[str, Any]) -> None:
    """Drop from `model`'s required list each key `preset` fills completely."""
    properties = model.get("properties", {})
    for key, value in preset.items():
        if key not in properties:
            continue
        satisfied = True
        child = _resolve(properties[key], defs)
        if isinstance(value, dict) and child is not None and "properties" in child:
            _relax(child, value, defs)
            satisfied = not [k for k in child.get("required", []) if k not in value]
        if satisfied and key in model.get("required", []):
            model["required"] = [k for k in model["required"] if k != key]
            if not model["required"]:
                del model["required"]


def _partial(node: Any) -> Any:
    """A copy of `node` that requires nothing, its $refs pointing at the partial copies."""
    if isinstance(node, list):
        return [_partial(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {}
    for key, value in node.items():
        if key == "required":
            continue
        if key == "$ref" and isinstance(value, str):
            result[key] = value + PARTIAL
        elif key in ("properties", "$defs"):
            result[key] = {name: _partial(sub) for name, sub in value.items()}
        else:
            result[key] = _partial(value)
    return result
