"""The Dockerfile, .dockerignore and README's Docker section, checked without a Docker engine.

The Dockerfile is parsed here (parser directives, comments, line continuations, exec and shell
forms). Its install step runs against stand-in `python`/`pip` commands to show that pip keeps the
base image's torch. Where a Docker engine answers (`docker info`), one more (slow) test builds the
image.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

IMAGE = "bertabl"
BASE_TAG = re.compile(
    r"pytorch/pytorch:(?P<torch>\d+\.\d+\.\d+)-cuda(?P<cuda>\d+\.\d+)-cudnn(?P<cudnn>\d+)-runtime"
)
# What the image needs from the build context, and nothing else (bench/: the benchmarks run on a
# GPU host from the image).
NEEDED = {"pyproject.toml", "constraints.txt", "README.md", "bertabl", "matrices", "bench"}


# --- Dockerfile parsing ----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # everything after the keyword, continuation lines joined
    line: int  # where it starts in the file

    def exec_form(self) -> list[str] | None:
        """The JSON array of ENTRYPOINT ["x"], CMD [...], COPY [...], or None (shell form)."""
        if not self.args.startswith("["):
            return None
        try:
            value = json.loads(self.args)
        except json.JSONDecodeError:
            return None
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        return None

    def words(self) -> list[str]:
        form = self.exec_form()
        return form if form is not None else shlex.split(self.args)

    def flags(self) -> list[str]:
        """RUN's own flags (`--mount=...`) before its command."""
        if self.keyword != "RUN":
            return []
        words = self.args.split()
        return words[: next((i for i, w in enumerate(words) if not w.startswith("--")), 0)]

    def command(self) -> str:
        """A RUN's shell command, without RUN's own flags."""
        return re.sub(r"^(?:\s*--\S+)*\s*", "", self.args) if self.keyword == "RUN" else ""


def parse_dockerfile(text: str) -> list[Instruction]:
    lines = text.splitlines()
    escape = "\\"
    for line in lines:  # parser directives: `# name=value` lines at the very top
        directive = re.fullmatch(r"#\s*([A-Za-z]+)\s*=\s*(\S+)\s*", line)
        if directive is None:
            break
        if directive.group(1).lower() == "escape":
            escape = directive.group(2)
    continuation = re.compile(re.escape(escape) + r"[ \t]*$")

    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments, also inside a continued instruction
        if not parts:
            start = number
        end = continuation.search(raw)
        if end is not None:
            parts.append(raw[: end.start()])
            continue
        parts.append(raw)
        instructions.append(_instruction("".join(parts), start))
        parts = []
    if parts:
        instructions.append(_instruction("".join(parts), start))
    return instructions


def _instruction(text: str, line: int) -> Instruction:
    keyword, _, args = text.strip().partition(" ")
    return Instruction(keyword.upper(), args.strip(), line)


@functools.cache
def dockerfile() -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile((REPO / "Dockerfile").read_text()))


def instructions(keyword: str) -> list[Instruction]:
    return [instr for instr in dockerfile() if instr.keyword == keyword]


def global_args() -> dict[str, str | None]:
    """The ARGs declared before the first FROM, with their defaults."""
    result: dict[str, str | None] = {}
    for instr in dockerfile():
        if instr.keyword == "FROM":
            break
        if instr.keyword == "ARG":
            for word in shlex.split(instr.args):
                name, sep, default = word.partition("=")
                result[name] = default if sep else None
    return result


def copies() -> list[tuple[Instruction, list[str], list[str], str]]:
    """(instruction, flags, sources, destination) of every COPY/ADD."""
    result = []
    for instr in dockerfile():
        if instr.keyword in ("COPY", "ADD"):
            words = instr.words()
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            result.append((instr, flags, paths[:-1], paths[-1]))
    return result


def env() -> dict[str, str]:
    result: dict[str, str] = {}
    for instr in instructions("ENV"):
        words = shlex.split(instr.args)
        if words and "=" not in words[0]:  # legacy `ENV NAME value with spaces`
            result[words[0]] = " ".join(words[1:])
            continue
        for word in words:
            name, _, value = word.partition("=")
            result[name] = value
    return result


def workdir() -> str:
    return instructions("WORKDIR")[-1].args


def pinned() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    return pins


def pip_runs() -> list[Instruction]:
    return [instr for instr in instructions("RUN") if re.search(r"\bpip\b", instr.args)]


def test_parser_handles_directives_comments_and_continuations():
    text = (
        "# syntax=docker/dockerfile:1\n"
        "# a comment\n"
        "ARG BASE=img:1.0\n"
        "FROM ${BASE}\n"
        "\n"
        "RUN one \\\n"
        "    # a comment inside the continuation\n"
        "    && two \\  \n"
        "    && three\n"
        'COPY ["a b", "c", "dest/"]\n'
        'entrypoint ["tool"]\n'
    )
    parsed = parse_dockerfile(text)
    assert [i.keyword for i in parsed] == ["ARG", "FROM", "RUN", "COPY", "ENTRYPOINT"]
    assert " ".join(parsed[2].args.split()) == "one && two && three"
    assert parsed[2].line == 6
    assert parsed[3].exec_form() == ["a b", "c", "dest/"]
    assert parsed[4].exec_form() == ["tool"]
    backtick = parse_dockerfile("# escape=`\nRUN a `\n  b\n")
    assert " ".join(backtick[0].args.split()) == "a b"


def base_arg() -> str | None:
    """The ARG that the (single) FROM names its base image by."""
    froms = instructions("FROM")
    match = re.fullmatch(r"\$\{?(\w+)\}?(?:\s+AS\s+\S+)?", froms[0].args, re.IGNORECASE)
    return match.group(1) if match else None


def base_image() -> str | None:
    return global_args().get(base_arg() or "")


def test_base_image_is_a_build_arg_with_a_pinned_default():
    froms = instructions("FROM")
    assert len(froms) == 1, "one stage: torch comes from its base image"
    assert base_arg(), f"FROM should name its base through an ARG, not {froms[0].args!r}"
    default = base_image()
    assert default, f"ARG {base_arg()} needs a default base image"
    name, _, tag = default.partition("@")[0].rpartition(":")
    assert name and tag and tag != "latest", f"pin the base image's tag: {default!r}"
    base = BASE_TAG.fullmatch(default)
    assert base, f"{default!r} is not a pytorch/pytorch CUDA runtime tag"
    assert base.group("torch") == pinned()["torch"], "base image torch != constraints.txt pin"


def test_copy_sources_exist_and_are_only_what_the_image_needs():
    copied = set()
    for _, flags, sources, _ in copies():
        assert not any(f.startswith("--from") for f in flags)
        for source in sources:
            assert not any(c in source for c in "*?["), f"COPY {source}: name it exactly"
            path = posixpath.normpath(source)
            assert path not in (".", ".."), "COPY . would copy the whole build context"
            assert (REPO / path).exists(), f"COPY {source}: no such path in the repository"
            copied.add(path)
    assert copied == NEEDED
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["readme"] in copied, "setuptools reads the readme when it builds bertabl"


def test_install_steps_come_after_the_sources_they_install():
    order = list(dockerfile())
    installs = pip_runs()
    assert len(installs) == 2, "the dependencies, then bertabl (a layer each)"
    copied = {
        posixpath.normpath(s): order.index(instr)
        for instr, _, sources, _ in copies()
        for s in sources
    }
    dependencies, package = (order.index(i) for i in installs)
    assert copied["pyproject.toml"] < dependencies and copied["constraints.txt"] < dependencies
    for needed in ("pyproject.toml", "README.md", "bertabl"):  # setuptools reads the readme
        assert copied[needed] < package, f"COPY {needed} after the pip install of bertabl"


def shell_commands(script: str) -> list[list[str]]:
    """The simple commands of a shell script: words split at ; && || | and newlines."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for word in lexer:
        if word in (";", "&&", "||", "|", "&"):
            commands.append([])
        else:
            commands[-1].append(word)
    return [command for command in commands if command]


def test_pip_is_never_handed_torch_or_the_unfiltered_constraints():
    runs = pip_runs()
    assert runs, "the Dockerfile should install bertabl with pip"
    installs = 0
    for instr in runs:
        for words in shell_commands(instr.args):
            pip = [i for i, w in enumerate(words) if re.search(r"(^|/)pip[\d.]*$", w)]
            if not pip or "install" not in words[pip[0] :]:
                continue
            installs += 1
            after = words[words.index("install", pip[0]) + 1 :]
            for flag in ("-U", "--upgrade", "--force-reinstall", "-I", "--ignore-installed"):
                assert flag not in after, f"pip install {flag} could replace the base's torch"
            for i, word in enumerate(after):
                assert not re.match(r"torch\b(?![-_.\w])", word), f"pip install {word}"
                if word in ("-c", "--constraint", "-r", "--requirement"):
                    target = posixpath.normpath(posixpath.join(workdir(), after[i + 1]))
                    assert target != posixpath.join(workdir(), "constraints.txt"), (
                        "constraints.txt pins torch==2.13.0, which pip may satisfy with a CPU "
                        "or other CUDA wheel; hand pip a copy without its torch line"
                    )
    assert installs, "no `pip install` in the Dockerfile's RUN steps"


# --- the install step, run with stand-in python and pip ---------------------------------------

FAKE = """\
#!{python}
# Stand-in for the base image's python/pip: reports a torch version, records each pip call.
import json, os, pathlib, sys

state = pathlib.Path(os.environ["FAKE_STATE"])
args = sys.argv[1:]


def pip(args):
    files, i = {{}}, 0
    while i < len(args):
        arg = args[i]
        for flag in ("-c", "--constraint", "-r", "--requirement"):
            kind = "constraint" if flag in ("-c", "--constraint") else "requirement"
            if arg == flag:
                files[kind + " " + args[i + 1]] = pathlib.Path(args[i + 1]).read_text()
                i += 1
            elif arg.startswith(flag + "="):
                path = arg.split("=", 1)[1]
                files[kind + " " + path] = pathlib.Path(path).read_text()
        i += 1
    with open(state / "pip_calls.jsonl", "a") as log:
        log.write(json.dumps({{"args": args, "files": files}}) + "\\n")
    swapped = state / "torch_after_pip"
    if swapped.exists():  # simulate a pip that replaced torch
        (state / "torch_version").write_text(swapped.read_text())
    return 0


if pathlib.Path(sys.argv[0]).name.startswith("pip"):
    sys.exit(pip(args))
if args[:2] == ["-m", "pip"]:
    sys.exit(pip(args[2:]))
if args[:1] == ["-c"] and "torch" in args[1]:
    print((state / "torch_version").read_text())
    sys.exit(0)
if args[:1] == ["-c"]:  # any other script (reading pyproject.toml): run it for real
    exec(compile(args[1], "<-c>", "exec"), {{"__name__": "__main__"}})
    sys.exit(0)
sys.exit("fake python: unexpected arguments %r" % (args,))
"""


def run_install_step(tmp_path: Path, base_torch: str, torch_after_pip: str | None = None):
    """Run the Dockerfile's pip RUN steps in a copy of the context with fake python/pip."""
    context, bin_dir, state = tmp_path / "workspace", tmp_path / "bin", tmp_path / "state"
    for folder in (context, bin_dir, state):
        folder.mkdir()
    for name in ("pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy(REPO / name, context / name)
    fake = FAKE.format(python=sys.executable)
    for name in ("python", "python3", "pip", "pip3"):
        (bin_dir / name).write_text(fake)
        (bin_dir / name).chmod(0o755)
    (state / "torch_version").write_text(base_torch)
    if torch_after_pip is not None:
        (state / "torch_after_pip").write_text(torch_after_pip)
    environment = {
        **os.environ,
        **env(),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_STATE": str(state),
    }
    before = sorted(p.name for p in context.iterdir())
    for instr in pip_runs():
        result = subprocess.run(
            ["/bin/sh", "-c", instr.command()],
            cwd=context,
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            return result, [], before, sorted(p.name for p in context.iterdir())
    log = state / "pip_calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, calls, before, sorted(p.name for p in context.iterdir())


def requirement_name(line: str) -> str | None:
    line = line.split("#", 1)[0].strip()
    match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    return match.group(1).lower().replace("_", "-") if match else None


def pyproject_requirements(*extras: str) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [
        r for extra in extras for r in project["optional-dependencies"][extra]
    ]


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs a POSIX shell")
@pytest.mark.parametrize("base_torch", ["2.13.0+cu126", "2.12.1+cu130"])
def test_install_step_keeps_the_base_images_torch(tmp_path, base_torch):
    result, calls, before, after = run_install_step(tmp_path, base_torch)
    assert result.returncode == 0, result.stdout + result.stderr
    installs = [call for call in calls if "install" in call["args"]]
    dependencies, package = installs  # the dependencies' layer, then bertabl's
    expected = [
        line
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if requirement_name(line) not in (None, "torch")
    ]
    constraints = [t for f, t in dependencies["files"].items() if f.startswith("constraint ")]
    assert constraints, "the dependencies were installed without the pinned constraints"
    for text in constraints:
        lines = text.splitlines()
        torch_lines = [line for line in lines if requirement_name(line) == "torch"]
        assert torch_lines == [f"torch=={base_torch}"], torch_lines
        others = [line for line in lines if requirement_name(line) not in (None, "torch")]
        assert others == expected, "every other pin of constraints.txt must reach pip"
    [requirements] = [t for f, t in dependencies["files"].items() if f.startswith("requirement ")]
    # bertabl's dependencies, its bench extra (the benches' baselines) and cluster extra
    # (ray[default]: the dashboard, `ray start`), read from pyproject.toml
    assert requirements.splitlines() == pyproject_requirements("bench", "cluster")
    assert package["args"][-1] == "." and "--no-deps" in package["args"], package["args"]
    assert after == before, "the install step should clean up what it wrote"


def test_a_code_change_does_not_reinstall_the_dependencies():
    """Docker rebuilds every layer after the first changed COPY: the dependencies are installed
    from pyproject.toml and constraints.txt alone, before bertabl's code is copied."""
    order = list(dockerfile())
    dependencies, package = pip_runs()
    sources_of = {
        posixpath.normpath(s): order.index(instr)
        for instr, _, sources, _ in copies()
        for s in sources
    }
    assert sources_of["pyproject.toml"] < order.index(dependencies)
    assert sources_of["constraints.txt"] < order.index(dependencies)
    for code in ("bertabl", "README.md", "matrices", "bench"):
        assert order.index(dependencies) < sources_of[code], f"COPY {code} before the install"
    assert sources_of["bertabl"] < order.index(package) and "--no-deps" in package.command()
    for later in ("matrices", "bench"):  # edited often, installed by nothing
        assert order.index(package) < sources_of[later]


def test_pip_keeps_its_downloads_in_a_cache_mount():
    (first, *_) = dockerfile_lines()
    assert re.fullmatch(r"#\s*syntax=docker/dockerfile:1\S*", first), "RUN --mount needs it"
    assert "PIP_NO_CACHE_DIR" not in env(), "it would leave the cache mount empty"
    order = list(dockerfile())
    users = [order.index(i) for i in instructions("USER")]
    for instr in pip_runs():
        assert "--mount=type=cache,target=/root/.cache/pip" in instr.flags(), instr.line
        assert not users or order.index(instr) < min(users), "pip's cache is root's: before USER"


def dockerfile_lines() -> list[str]:
    return (REPO / "Dockerfile").read_text().splitlines()


def stage_args() -> dict[str, str | None]:
    """Every ARG, before and after FROM, with its default."""
    result: dict[str, str | None] = {}
    for instr in instructions("ARG"):
        for word in shlex.split(instr.args):
            name, sep, default = word.partition("=")
            result[name] = default if sep else None
    return result


def test_runs_as_a_non_root_user_who_owns_the_volumes():
    order = list(dockerfile())
    (user,) = instructions("USER")
    name = user.args.split(":")[0]
    assert name not in ("root", "0") and not name.startswith("$"), user.args
    (entrypoint,) = instructions("ENTRYPOINT")
    assert order.index(user) < order.index(entrypoint)
    [setup] = [i for i in instructions("RUN") if re.search(r"\buseradd\b", i.args)]
    words = [w for command in shell_commands(setup.command()) for w in command]
    assert "--uid" in words and "${USER_ID}" in words and name in words
    assert stage_args().get("USER_ID") == "1000", "the host user's uid on most machines"
    made = {w for c in shell_commands(setup.command()) if c[:2] == ["mkdir", "-p"] for w in c[2:]}
    owned = [c[-len(c) + 3 :] for c in shell_commands(setup.command()) if c[:2] == ["chown", "-R"]]
    owned_paths = {p for c in owned for p in c}
    for volume in volume_paths():
        assert volume in made, f"VOLUME {volume}: not created before it is declared"
        assert any(volume == p or volume.startswith(p + "/") for p in owned_paths), volume
    for instr, flags, _, _ in copies():
        if order.index(instr) > order.index(user):
            assert f"--chown={name}:{name}" in flags, f"line {instr.line}: COPY as root"


def test_the_hugging_face_cache_is_a_volume():
    assert env().get("HF_HOME") in volume_paths()


def symlinks() -> dict[str, str]:
    """link -> target of every `ln -s TARGET LINK` in the RUN steps."""
    links = {}
    for instr in instructions("RUN"):
        for words in shell_commands(instr.command()):
            if words[:2] == ["ln", "-s"] and len(words) == 4:
                links[posixpath.normpath(words[3])] = posixpath.normpath(words[2])
    return links


def resolve_in_image(path: str) -> str:
    path = posixpath.normpath(posixpath.join(workdir(), path))
    for link, target in symlinks().items():
        if path == link or path.startswith(link + "/"):
            return target + path[len(link) :]
    return path


def data_paths(value) -> list[str]:
    """Every string of a parsed matrix that is a path into the shared datasets."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in data_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in data_paths(v)]
    return [value] if isinstance(value, str) and value.startswith("../shared/data") else []


def test_the_paper_matrices_data_paths_resolve_to_the_data_volume():
    """`../shared/data/...` (a checkout beside shared/) from /workspace is /shared/data, which
    must lead into the /data volume where `-v <datasets>:/data` mounts them."""
    found = 0
    for matrix in sorted((REPO / "matrices").glob("*.toml")):
        for path in data_paths(tomllib.loads(matrix.read_text())):
            found += 1
            resolved = resolve_in_image(path)
            assert resolved == "/data" or resolved.startswith("/data/"), (matrix.name, path)
    assert found, "no matrix names ../shared/data any more: drop this test"
    assert "/data" in volume_paths()
    assert resolve_in_image("../shared/data/glue/SST-2") == "/data/glue/SST-2"
    assert resolve_in_image("runs/demo") == "/workspace/runs/demo"


def test_the_git_commit_build_arg_reaches_report_provenance():
    from bertabl.report.provenance import GIT_COMMIT_ENV

    order = list(dockerfile())
    (start,) = instructions("FROM")
    [arg] = [i for i in instructions("ARG") if i.args.split("=")[0] == "GIT_COMMIT"]
    assert order.index(start) < order.index(arg), "an ARG before FROM is not seen by ENV"
    assert env().get(GIT_COMMIT_ENV) == "${GIT_COMMIT}"


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs a POSIX shell")
def test_install_step_fails_if_pip_replaced_torch(tmp_path):
    result, *_ = run_install_step(tmp_path, "2.13.0+cu126", torch_after_pip="2.13.0+cpu")
    assert result.returncode != 0


# --- entrypoint, layout ----------------------------------------------------------------------


def test_the_image_runs_the_benches_with_their_extra():
    """bench/ is copied, its baselines' dependency (the `bench` extra: accelerate) installed and
    pinned, and the benches import only what the image has (bertabl, its dependencies)."""
    destinations = {
        posixpath.normpath(posixpath.join(workdir(), d))
        for _, _, sources, d in copies()
        if "bench" in {posixpath.normpath(s) for s in sources}
    }
    assert destinations == {"/workspace/bench"}, "python -m bench.X runs from /workspace"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for requirement in extras["bench"]:
        assert requirement_name(requirement) in pinned(), f"{requirement}: not in constraints.txt"
    # psutil: a dependency of ray (pinned in constraints.txt), so in the image with bertabl
    allowed = {"bench", "bertabl", "torch", "transformers", "datasets", "numpy", "accelerate"}
    allowed.add("psutil")
    allowed.add("tensorboardX")  # a bertabl dependency (the [tracking] writer)
    for path in (REPO / "bench").glob("*.py"):
        for line in path.read_text().splitlines():
            found = re.match(r"\s*(?:from|import) (\w+)", line)
            if found and found.group(1) not in sys.stdlib_module_names:
                assert found.group(1) in allowed, f"{path.name}: {line.strip()}"


def test_entrypoint_is_bertabl_and_cmd_is_help():
    (entrypoint,) = instructions("ENTRYPOINT")
    assert entrypoint.exec_form() == [IMAGE], "exec form, so `docker run bertabl ARGS` works"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["bertabl"] == "bertabl.cli:app"
    (cmd,) = instructions("CMD")
    assert cmd.exec_form() == ["--help"]
    from typer.testing import CliRunner

    from bertabl.cli import app

    result = CliRunner().invoke(app, cmd.exec_form())
    assert result.exit_code == 0, result.output


def test_workdir_env_and_volumes():
    assert workdir() == "/workspace"
    variables = env()
    assert variables.get("PYTHONUNBUFFERED") == "1"
    assert "HF_HUB_OFFLINE" not in variables, "users may want Hub datasets: leave it to them"
    volumes = set(volume_paths())
    assert {"/workspace/runs", "/workspace/reports", "/data"} <= volumes
    # `bertabl run` writes runs/<matrix name> relative to the working directory
    assert posixpath.join(workdir(), "runs") in volumes
    # the matrices land where `bertabl run matrices/NAME.toml` finds them
    destinations = {posixpath.normpath(posixpath.join(workdir(), d)) for *_, d in copies()}
    assert "/workspace/matrices" in destinations


def volume_paths() -> list[str]:
    return [path for instr in instructions("VOLUME") for path in instr.words()]


# --- .dockerignore ---------------------------------------------------------------------------


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is an exception `!`, regex) per line, as Docker reads them."""
    rules = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = posixpath.normpath(line[1:].strip() if exception else line).lstrip("/")
        rules.append((exception, re.compile(_pattern_regex(pattern))))
    return rules


def _pattern_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"  # `**/`: any number of directories, none included
                i += 1
            else:
                out += ".*"
            continue
        if char == "*":
            out += "[^/]*"
        elif char == "?":
            out += "[^/]"
        elif char == "[" and "]" in pattern[i + 1 :]:
            end = pattern.index("]", i + 1)
            inner = pattern[i + 1 : end]
            out += "[" + ("^" + inner[1:] if inner[:1] in ("!", "^") else inner) + "]"
            i = end
        elif char == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(char)
        i += 1
    return out


def ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves `path` (relative, '/'-separated) out of the build context: the last
    rule that matches it or one of its parent directories decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for exception, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            result = not exception
    return result


@functools.cache
def repo_rules() -> list[tuple[bool, re.Pattern[str]]]:
    return dockerignore_rules((REPO / ".dockerignore").read_text())


@pytest.mark.parametrize(
    "patterns, path, expected",
    [
        ("tests", "tests/test_cli.py", True),
        ("tests", "bertabl/tests/x.py", False),
        ("/runs/", "runs/demo/matrix.json", True),
        ("**/__pycache__", "__pycache__/a.pyc", True),
        ("**/__pycache__", "bertabl/data/__pycache__/a.pyc", True),
        ("**/*.py[cod]", "bertabl/a.pyc", True),
        ("**/*.py[cod]", "bertabl/a.py", False),
        ("*.md", "README.md", True),
        ("*.md", "reports/demo.md", False),
        ("*.md\n!README.md", "README.md", False),
        ("bertabl/**/*.toml", "bertabl/matrix/presets/tiny.toml", True),
        ("bertabl/**/*.toml", "bertabl/x.toml", True),
    ],
)
def test_dockerignore_matcher(patterns, path, expected):
    assert ignored(path, dockerignore_rules(patterns)) is expected


def test_dockerignore_keeps_every_copy_source():
    rules = repo_rules()
    for _, _, sources, _ in copies():
        for source in sources:
            source = posixpath.normpath(source)
            assert not ignored(source, rules), f".dockerignore leaves out COPY source {source}"
            root = REPO / source
            for path in [root] if root.is_file() else root.rglob("*"):
                relative = path.relative_to(REPO).as_posix()
                if path.is_file() and ignored(relative, rules):
                    assert "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo"), (
                        f".dockerignore leaves out {relative}, which COPY {source} needs"
                    )


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "runs/demo/matrix.json",
        "tests/test_cli.py",
        "bertabl/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
        "bertabl.egg-info/PKG-INFO",
    ],
)
def test_dockerignore_leaves_out_local_state(path):
    assert ignored(path, repo_rules())


# --- README --------------------------------------------------------------------------------------

# docker options that take a value (the rest are flags); enough for the commands the README uses
RUN_VALUE_OPTIONS = {
    "-v", "--volume", "-e", "--env", "--env-file", "--name", "--network", "--net", "--entrypoint",
    "--shm-size", "--gpus", "-p", "--publish", "-w", "--workdir", "-u", "--user", "--mount",
    "--ipc", "--ulimit", "--runtime", "--platform", "-l", "--label", "--cpus", "-m", "--memory",
    "--add-host", "--device", "--cap-add", "--cap-drop", "-h", "--hostname", "--restart", "--pid",
    "--security-opt", "--tmpfs", "--log-driver", "--log-opt", "--group-add",
}  # fmt: skip
EXEC_VALUE_OPTIONS = {"-e", "--env", "--env-file", "-u", "--user", "-w", "--workdir"}


def docker_section(markdown: str) -> str | None:
    match = re.search(r"^##\s+Docker\b.*?(?=^##\s|\Z)", markdown, re.MULTILINE | re.DOTALL)
    return match.group(0) if match else None


def docker_commands(markdown: str) -> list[list[str]]:
    """Every `docker build|run|exec ...` in the fenced code blocks, split into words."""
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        text = re.sub(r"\\\n", " ", block)
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            for found in re.findall(r"docker\s+(?:build|run|exec)\b[^\n;|&)]*", line):
                commands.append(shlex.split(found))
    return commands


def split_options(words: list[str], value_options: set[str]) -> tuple[dict[str, list[str]], list]:
    """({option: [values]}, positional words from the first one on)."""
    options: dict[str, list[str]] = {}
    i = 0
    while i < len(words) and words[i].startswith("-"):
        name, sep, value = words[i].partition("=")
        if not sep and name in value_options:
            i += 1
            value = words[i]
        options.setdefault(name, []).append(value)
        i += 1
    return options, words[i:]


def cli_groups() -> dict:
    import typer.main

    from bertabl.cli import app

    groups = {"bertabl": typer.main.get_command(app)}
    try:
        from ray.scripts.scripts import cli as ray_cli
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    else:
        groups["ray"] = ray_cli
    return groups


def check_cli_call(program: str, args: list[str], groups: dict) -> None:
    if program not in groups:
        return
    group = groups[program]
    assert args and args[0] in group.commands, f"{program} {args[:1]}: no such command"
    command = group.commands[args[0]]
    known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    for word in args[1:]:
        if word == "--":
            break
        if word.startswith("-"):
            assert word.split("=", 1)[0] in known, f"{program} {args[0]}: no option {word}"


def check_docker_section(section: str) -> None:
    """The README's Docker commands use this image, its build args and real CLI calls."""
    commands = docker_commands(section)
    groups = cli_groups()
    declared = stage_args()
    volumes = set(volume_paths())
    builds = [c[2:] for c in commands if c[1] == "build"]
    runs = [c[2:] for c in commands if c[1] == "run"]
    assert builds and runs, "the section should show docker build and docker run"
    for words in builds:
        options, _ = split_options(words, {"-t", "--tag", "--build-arg", "-f", "--file"})
        tags = options.get("-t", []) + options.get("--tag", [])
        assert tags and all(tag.split(":")[0] == IMAGE for tag in tags), words
        for build_arg in options.get("--build-arg", []):
            name, _, value = build_arg.partition("=")
            assert name in declared, f"--build-arg {name}: no such ARG in the Dockerfile"
            if name == base_arg():
                base = BASE_TAG.fullmatch(value)
                assert base and base.group("torch") == pinned()["torch"], build_arg
    for words in runs:
        options, rest = split_options(words, RUN_VALUE_OPTIONS)
        assert rest and rest[0].split(":")[0] == IMAGE, f"docker run {words}: not {IMAGE}"
        program = options.get("--entrypoint", [IMAGE])[-1]
        check_cli_call(program, rest[1:], groups)
        for volume in options.get("-v", []) + options.get("--volume", []):
            target = volume.split(":")[1]
            assert target in volumes or target.startswith(workdir() + "/"), volume
    for command in commands:
        if command[1] == "exec":
            _, rest = split_options(command[2:], EXEC_VALUE_OPTIONS)
            assert len(rest) >= 2, f"docker exec {command[2:]}: container and command"
            check_cli_call(rest[1], rest[2:], groups)
        for word in command:
            if re.fullmatch(r"matrices/[\w.-]+\.toml", word):
                assert (REPO / word).is_file(), f"{word} does not exist"


def test_readme_docker_section():
    section = docker_section((REPO / "README.md").read_text())
    if section is None:
        pytest.skip("README.md has no '## Docker' section yet")
    check_docker_section(section)


def test_docker_section_check_catches_drift():
    good = (
        "## Docker (GPU hosts)\n```bash\ndocker build -t bertabl .\n"
        'docker run --rm --gpus all -v "$PWD/runs:/workspace/runs" \\\n'
        "  bertabl run matrices/demo.toml --out reports\n```\n"
    )
    check_docker_section(docker_section(good))
    for old, new in [
        ("-t bertabl", "-t other"),
        ("  bertabl run", "  other run"),
        ("run matrices", "rnu matrices"),
        ("--out", "--output"),
        ("demo.toml", "missing.toml"),
        ("/workspace/runs", "/runs"),
    ]:
        with pytest.raises(AssertionError):
            check_docker_section(docker_section(good.replace(old, new)))


# --- a real build, where an engine answers ------------------------------------------------------


def docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return info.returncode == 0


@pytest.mark.slow
def test_image_builds_and_keeps_the_base_images_torch():
    if not docker_engine():
        pytest.skip("no Docker engine (docker info failed)")
    tag = "bertabl:pytest"
    build = subprocess.run(["docker", "build", "-t", tag, "."], cwd=REPO, timeout=3600)
    assert build.returncode == 0
    usage = subprocess.run(["docker", "run", "--rm", tag], capture_output=True, text=True)
    assert usage.returncode == 0 and "run" in usage.stdout, usage.stdout + usage.stderr
    version = "import importlib.metadata as m; print(m.version('torch'))"
    torch_in = {}
    for image in (tag, base_image()):
        probe = subprocess.run(
            ["docker", "run", "--rm", "--entrypoint", "python", image, "-c", version],
            capture_output=True,
            text=True,
        )
        assert probe.returncode == 0, probe.stderr
        torch_in[image] = probe.stdout.strip()
    assert len(set(torch_in.values())) == 1, torch_in
    assert torch_in[tag].split("+")[0] == pinned()["torch"]
