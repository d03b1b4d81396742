"""Reading a matrix: TOML file + scale preset + `--set` overrides -> validated `Matrix`.

Errors name the file, the key path as a user would write it (`finetune.grid.learning_rate[2]`)
and what is allowed, in one message, never a traceback.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bertabl.errors import MatrixError
from bertabl.io import tomllib
from bertabl.matrix.presets import PRESETS, deep_merge
from bertabl.matrix.references import first_problem
from bertabl.matrix.schema import CROSS_REFERENCE, Matrix


@dataclass(frozen=True)
class MatrixSource:
    """Where a matrix came from: recorded with every run for the report's provenance footer."""

    path: str
    sha256: str
    scale: str
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"overrides": list(self.overrides)}


def load_matrix(
    path: str | Path, overrides: list[str] | tuple[str, ...] = (), scale: str | None = None
) -> tuple[Matrix, MatrixSource]:
    """The validated matrix in `path` with `overrides` ("key.path=value") and `scale` applied."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            near = difflib.get_close_matches(path.name, [p.name for p in path.parent.iterdir()])
            hint = f" (did you mean {path.parent / near[0]}?)" if near else ""
        raise MatrixError(f"{path}: matrix file not found{hint}")
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise MatrixError(f"{path}: not valid TOML: {err}") from None
    # --set scale=... picks the preset (so it goes in before resolving); --scale beats it
    late = []
    for override in overrides:
        key, value = parse_override(override, origin=str(path))
        if key[0] in ("scale", "scales"):
            _set_path(raw, key, value, origin=f"{path}: --set {override}")
        else:
            late.append(override)
    if scale is not None:
        raw["scale"] = scale
    matrix = validate(raw, origin=str(path), overrides=late)
    source = MatrixSource(
        path=str(path),
        sha256=hashlib.sha256(data).hexdigest(),
        scale=matrix.scale,
        overrides=tuple(overrides),
    )
    return matrix, source


def validate(
    raw: dict[str, Any], origin: str, overrides: list[str] | tuple[str, ...] = ()
) -> Matrix:
    """`raw` (a parsed TOML table) resolved and validated; errors name `origin`.

    Precedence, lowest first: the scale preset, the file, the file's own `[scales.<scale>]`
    table (what this matrix changes at that scale, e.g. Table 6's model sizes at `tiny`), and
    the `--set` overrides.
    """
    scale = raw.get("scale", "tiny")
    if scale not in PRESETS:
        raise MatrixError(
            f"{origin}: scale: unknown preset '{scale}'; allowed: {', '.join(PRESETS)}"
        )
    per_scale = raw.get("scales", {})
    if not isinstance(per_scale, dict) or any(not isinstance(v, dict) for v in per_scale.values()):
        raise MatrixError(f"{origin}: scales: expected tables such as [scales.tiny]")
    for name in per_scale:
        if name not in PRESETS:
            raise MatrixError(
                f"{origin}: scales.{name}: unknown scale; allowed: {', '.join(PRESETS)}"
            )
        if "scale" in per_scale[name] or "scales" in per_scale[name]:
            raise MatrixError(f"{origin}: scales.{name}: cannot set the scale inside a scale")
    # deep copy: --set writes into nested tables that may still be the preset's own
    resolved = copy.deepcopy(deep_merge(deep_merge(PRESETS[scale], raw), per_scale.get(scale, {})))
    for override in overrides:
        key, value = parse_override(override, origin=origin)
        _set_path(resolved, key, value, origin=f"{origin}: --set {override}")
    _drop_preset_settings_of_other_tasks(resolved, PRESETS[scale])
    try:
        matrix = Matrix.model_validate(resolved)
    except ValidationError as err:
        raise MatrixError(format_validation_error(err, origin)) from None
    problem = first_problem(matrix)  # what one section says about another (references.py)
    if problem:  # the line names its own key path
        raise MatrixError(f"{origin}: {problem}")
    return matrix


def _drop_preset_settings_of_other_tasks(resolved: dict[str, Any], preset: dict[str, Any]):
    """A preset gives the paper's protocol for many tasks (SQuAD, SWAG, ...); a matrix keeps
    only those of the tasks it fine-tunes. (Settings the matrix itself gives for a task it does
    not fine-tune stay, and fail validation: they are a mistake.)"""
    finetune = resolved.get("finetune")
    if not isinstance(finetune, dict) or not isinstance(finetune.get("task_settings"), dict):
        return
    tasks = finetune.get("tasks") or []
    preset_settings = preset.get("finetune", {}).get("task_settings", {})
    for task in list(finetune["task_settings"]):
        same = finetune["task_settings"][task] == preset_settings.get(task)
        if task not in tasks and same:
            del finetune["task_settings"][task]


def parse_override(text: str, origin: str = "matrix") -> tuple[list[str], Any]:
    """`key.path=value` -> (["key", "path"], value); value is read as TOML, else as a string."""
    if "=" not in text:
        raise MatrixError(
            f"{origin}: --set {text}: expected key.path=value, e.g. pretrain.steps=1000"
        )
    key, _, value = text.partition("=")
    path = split_key_path(key.strip())
    if not path or "" in path:
        raise MatrixError(f"{origin}: --set {text}: empty key part; expected key.path=value")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()  # bare words: --set pretrain.objective=mlm
    return path, parsed


def split_key_path(key: str) -> list[str]:
    """Split on dots outside double quotes: `pretrain.axes."model.layers"` -> 3 parts."""
    parts, current, quoted = [], "", False
    for ch in key:
        if ch == '"':
            quoted = not quoted
        elif ch == "." and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts if key else []


def format_key_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """("finetune", "grid", "learning_rate", 2) -> finetune.grid.learning_rate[2]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            part = f'"{part}"' if "." in part else part
            out += f".{part}" if out else part
    return out or "(top level)"


def format_validation_error(
    err: ValidationError,
    origin: str,
    prefix: tuple[str, ...] = (),
    root: type[BaseModel] = Matrix,
) -> str:
    """One readable line per problem: `origin: key.path: what is wrong; what is allowed`.

    `root` is the model that was validated; `prefix` is where it sits in the matrix, for display
    (e.g. root=PretrainConfig, prefix=("pretrain",)).
    """
    lines = []
    for problem in err.errors(include_url=False):
        if problem["type"] == CROSS_REFERENCE:  # the line names its own key path
            lines.append(f"{origin}: {problem['msg']}")
            continue
        loc = tuple(p for p in problem["loc"] if not _is_union_tag(p))
        described = _describe(problem, loc, root)
        lines.append(f"{origin}: {format_key_path(prefix + loc)}: {described}")
    return "\n".join(lines)


def _describe(problem: dict[str, Any], loc: tuple[Any, ...], root: type[BaseModel]) -> str:
    kind, msg = problem["type"], problem["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(root, loc[:-1])
        typed = str(loc[-1])
        near = [k for k in allowed if k.startswith(typed)] or difflib.get_close_matches(
            typed, allowed, n=1
        )
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        return f"unknown key{hint}; allowed keys here: {', '.join(allowed)}"
    if kind == "missing":
        return "required key is missing; set it in the matrix or with --set"
    if kind == "string_pattern_mismatch":
        return f"'{problem['input']}' is not a valid name; use lowercase letters, digits, _ and -"
    msg = msg.removeprefix("Value error, ")
    if kind not in ("value_error", "assertion_error") and "input" in problem:
        msg += f" (got {problem['input']!r})"
    return msg


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the model that sits at `loc` below `root`."""
    model = root
    keyed = False  # the previous part was a dict field: this part is one of its keys
    for part in loc:
        if isinstance(part, int) or keyed:
            keyed = False
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        nested = _model_in(field.annotation)
        if nested is None:
            return []
        keyed = getattr(field.annotation, "__origin__", None) is dict
        model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _is_union_tag(part: Any) -> bool:
    # pydantic inserts the member type name (e.g. "int", "function-after[...]") into the loc of
    # union members; users never write those.
    return isinstance(part, str) and ("[" in part or part in ("int", "float", "str", "bool"))


def _set_path(raw: dict[str, Any], path: list[str], value: Any, origin: str) -> None:
    node = raw
    for i, key in enumerate(path[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            where = format_key_path(path[: i + 1])
            raise MatrixError(f"{origin}: {where} is a value, not a table; cannot set inside it")
        node = child
    node[path[-1]] = value
