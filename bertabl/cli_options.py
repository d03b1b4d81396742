"""The command line's choices and shared options: Enums, so that shell completion
(`bertabl --install-completion`) offers their values."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from bertabl.paper.tables import LAYOUTS


class Scale(str, enum.Enum):
    tiny = "tiny"
    budget = "budget"
    paper = "paper"


class Stage(str, enum.Enum):
    all = "all"
    pretrain = "pretrain"


class Format(str, enum.Enum):
    md = "md"
    tex = "tex"
    csv = "csv"
    json = "json"


# the report layouts paper/tables.py defines, in its order
Layout = enum.Enum("Layout", {name: name for name in LAYOUTS}, type=str)


SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a matrix key: key.path=value (TOML value). Repeatable."),
]
ScaleOption = Annotated[
    Scale | None, typer.Option("--scale", help="Scale preset, overriding the matrix's `scale`.")
]
RunDirOption = Annotated[
    Path | None, typer.Option("--run-dir", help="Run directory [default: runs/<matrix name>].")
]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Where to write the report [default: run dir].")
]
LatexOption = Annotated[bool, typer.Option("--latex", help="Also write a LaTeX table.")]
AddressOption = Annotated[
    str | None, typer.Option("--address", help="Ray cluster to join (or RAY_ADDRESS).")
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="Ray Tune's and Ray Train's own state: a path or URI Ray supports (s3://, "
        "gs://, ...) [default: <run dir>/tune and <run dir>/train].",
    ),
]
EffectOption = Annotated[
    float | None,
    typer.Option(
        "--effect",
        max=100.0,
        help="A difference in points (as the report shows scores): the restarts (or dev "
        "examples) each cell needs to detect it, and their cost.",
    ),
]
RestartsOption = Annotated[
    int | None,
    typer.Option("--restarts", min=1, max=10_000, help="What each cell detects with N restarts."),
]
