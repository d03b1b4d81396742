# bertabl for GPU hosts: torch and CUDA come from the official PyTorch image; every other
# dependency is pinned by constraints.txt.
#
#   docker build -t bertabl .
#   docker run --rm --gpus all bertabl tasks
#
# BASE_IMAGE picks the CUDA build. The default (CUDA 12.6) works with older drivers; Blackwell
# GPUs and recent drivers may want CUDA 13:
#   docker build -t bertabl --build-arg BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime .
# Keep the default tag's torch version equal to the torch pin in constraints.txt (the tests
# check it). Whatever base is used (python and pip on PATH, torch installed), its torch stays.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /workspace

COPY pyproject.toml constraints.txt README.md ./
COPY bertabl/ bertabl/

# Install bertabl with the pinned dependencies, except torch, and its `bench` extra (accelerate,
# which the benches' HF Trainer baselines need): constraints.txt pins torch==2.13.0, which pip
# could satisfy with a CPU or other CUDA wheel. Its torch line is replaced by the exact version
# already in the image, so pip keeps the base's torch (and fails rather than swap it).
RUN set -eu; \
    torch_version="$(python -c 'import importlib.metadata as m; print(m.version("torch"))')"; \
    grep -viE '^[[:space:]]*torch([^a-z0-9_.-]|$)' constraints.txt > constraints-image.txt; \
    echo "torch==${torch_version}" >> constraints-image.txt; \
    python -m pip install -c constraints-image.txt ".[bench]"; \
    test "$(python -c 'import importlib.metadata as m; print(m.version("torch"))')" = "${torch_version}"; \
    rm -rf constraints-image.txt build bertabl.egg-info

COPY matrices/ matrices/
# The benchmarks (bench/README.md), after the install step so that editing them keeps its layer:
#   docker run --rm --gpus all --entrypoint python bertabl -m bench.pretrain --device cuda
COPY bench/ bench/

# Run directories (runs/<matrix name>), reports (--out reports) and local datasets.
VOLUME ["/workspace/runs", "/workspace/reports", "/data"]

ENTRYPOINT ["bertabl"]
CMD ["--help"]
