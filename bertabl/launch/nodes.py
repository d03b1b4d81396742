"""`python -m bertabl.launch.nodes ADDRESS COUNT [TIMEOUT]`: wait until a Ray cluster has COUNT
alive nodes, so that `bertabl run` (which checks placement against the nodes alive when it
starts) sees the whole allocation. The Slurm script calls it after starting Ray's nodes."""

from __future__ import annotations

import os
import socket
import sys
import time


def wait_for_nodes(address: str, count: int, timeout: float) -> list[dict]:
    """The alive nodes once there are `count` of them; TimeoutError after `timeout` seconds
    (the head not answering counts as no node)."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    import ray

    deadline = time.monotonic() + timeout
    host, port = address.rsplit(":", 1)
    # ray.init retries an absent head for minutes, so first wait for its GCS port to answer.
    while not _answers(host, int(port)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the head did not answer within {timeout:g} s")
        time.sleep(1)
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        while True:
            alive = [n for n in ray.nodes() if n.get("Alive")]
            if len(alive) >= count:
                return alive
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(alive)} of {count} node(s) up after {timeout:g} s")
            time.sleep(2)
    finally:
        ray.shutdown()


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    address, count = argv[0], int(argv[1])
    timeout = float(argv[2]) if len(argv) > 2 else 300.0
    try:
        nodes = wait_for_nodes(address, count, timeout)
    except TimeoutError as err:
        print(f"bertabl slurm: Ray at {address}: {err}", file=sys.stderr)
        return 1
    cpus = sum(n["Resources"].get("CPU", 0) for n in nodes)
    gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
    print(f"bertabl slurm: Ray at {address}: {len(nodes)} node(s), {cpus:g} CPU, {gpus:g} GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
