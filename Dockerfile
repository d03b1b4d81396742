# syntax=docker/dockerfile:1
# bertabl for GPU hosts: torch and CUDA come from the official PyTorch image; every other
# dependency is pinned by constraints.txt.
#
#   docker build -t bertabl --build-arg GIT_COMMIT="$(git rev-parse HEAD)" .
#   docker run --rm --gpus all bertabl tasks
#
# BASE_IMAGE picks the CUDA build. The default (CUDA 12.6) works with older drivers; Blackwell
# GPUs and recent drivers may want CUDA 13:
#   docker build -t bertabl --build-arg BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime .
# Keep the default tag's torch version equal to the torch pin in constraints.txt (the tests
# check it). Whatever base is used (python and pip on PATH, torch installed), its torch stays.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

# The commit the image is built from: the image holds no .git, so report provenance reads it
# from BERTABL_GIT_COMMIT. USER_ID: the uid that owns what containers write (match the host
# user's, `--build-arg USER_ID="$(id -u)"`, so bind-mounted runs/ and reports/ stay yours).
ARG GIT_COMMIT=""
ARG USER_ID=1000

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/cache/huggingface

WORKDIR /workspace

# 1. The dependencies alone, from pyproject.toml and constraints.txt: a change to the code does
# not reinstall them (this layer stays cached), and pip's cache mount keeps downloaded wheels
# across the rebuilds that a change to the pins does cause. Installed: bertabl's dependencies,
# its `bench` extra (accelerate, for the benches' HF Trainer baselines) and `cluster` extra
# (ray[default]: the dashboard and `ray start`). constraints.txt pins torch==2.13.0, which pip
# could satisfy with a CPU or other CUDA wheel; its torch line is replaced by the exact version
# already in the image, so pip keeps the base's torch (and fails rather than swap it).
COPY pyproject.toml constraints.txt ./
RUN --mount=type=cache,target=/root/.cache/pip set -eu; \
    torch_version="$(python -c 'import importlib.metadata as m; print(m.version("torch"))')"; \
    grep -viE '^[[:space:]]*torch([^a-z0-9_.-]|$)' constraints.txt > constraints-image.txt; \
    echo "torch==${torch_version}" >> constraints-image.txt; \
    python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = p["optional-dependencies"]; print("\n".join(p["dependencies"] + extras["bench"] + extras["cluster"]))' > requirements-image.txt; \
    python -m pip install -c constraints-image.txt -r requirements-image.txt; \
    test "$(python -c 'import importlib.metadata as m; print(m.version("torch"))')" = "${torch_version}"; \
    rm -f constraints-image.txt requirements-image.txt

# 2. bertabl itself, without dependencies (all there already): seconds, on every code change.
COPY README.md ./
COPY bertabl/ bertabl/
RUN --mount=type=cache,target=/root/.cache/pip set -eu; \
    python -m pip install --no-deps .; \
    rm -rf build bertabl.egg-info

# 3. A non-root user owning the working directory, the volumes and the Hugging Face cache.
# The paper matrices name their data `../shared/data/...` (relative to the working directory,
# as in a checkout beside shared/): /shared/data links to the /data volume, so mounting the
# datasets at /data makes those paths resolve.
RUN set -eu; \
    existing="$(getent passwd "${USER_ID}" | cut -d: -f1)"; \
    if [ -n "${existing}" ]; then userdel "${existing}"; fi; \
    useradd --create-home --uid "${USER_ID}" --user-group bertabl; \
    mkdir -p /workspace/runs /workspace/reports /data /cache/huggingface /shared; \
    ln -s /data /shared/data; \
    chown -R bertabl:bertabl /workspace /data /cache
USER bertabl
ENV BERTABL_GIT_COMMIT=${GIT_COMMIT}

COPY --chown=bertabl:bertabl matrices/ matrices/
# The benchmarks (bench/README.md), after the install steps so that editing them keeps theirs:
#   docker run --rm --gpus all --entrypoint python bertabl -m bench.pretrain --device cuda
COPY --chown=bertabl:bertabl bench/ bench/

# Run directories (runs/<matrix name>), reports (--out reports), local datasets, and the
# Hugging Face cache (Hub datasets, tokenizers, evaluate metrics: downloaded once per volume).
VOLUME ["/workspace/runs", "/workspace/reports", "/data", "/cache/huggingface"]

ENTRYPOINT ["bertabl"]
CMD ["--help"]
