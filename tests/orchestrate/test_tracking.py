"""Experiment tracking: run names, and TensorBoard event files read back record by record."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from bertabl.io import tomllib
from bertabl.matrix import build_plan
from bertabl.matrix.load import validate
from bertabl.orchestrate.tracking import Tracker, curve_point, run_names, tracking_lines
from tests.conftest import TINY_MATRIX


@pytest.fixture(scope="module")
def plan():
    return build_plan(validate(tomllib.loads(TINY_MATRIX), origin="tiny.toml"), "tiny.toml")


def read_events(folder: Path) -> list:
    """Every Event in a run folder's event files, parsed from the TFRecord framing (length,
    masked CRC-32C of the length, data, its masked CRC) with tensorboardX's protobuf classes:
    what TensorBoard reads, checked without TensorBoard."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset < len(data):
            (length,) = struct.unpack_from("<Q", data, offset)
            body = data[offset + 12 : offset + 12 + length]
            (crc,) = struct.unpack_from("<I", data, offset + 12 + length)
            assert crc == _masked_crc(body), f"{path}: corrupt record at byte {offset}"
            events.append(Event.FromString(body))
            offset += 12 + length + 4
    return events


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)], in the order written; a purge event drops later steps (as
    TensorBoard does on a file_version/purge record)."""
    from tensorboardX.proto.event_pb2 import SessionLog

    curves: dict[str, list[tuple[int, float]]] = {}
    for event in read_events(folder):
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            for tag, points in curves.items():
                curves[tag] = [(s, v) for s, v in points if s < event.step]
        for value in event.summary.value:
            if value.HasField("simple_value"):
                curves.setdefault(value.tag, []).append((event.step, value.simple_value))
    return curves


def _masked_crc(data: bytes) -> int:
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _table()


def test_crc32c_known_answer():
    assert _crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert zlib.crc32(b"123456789") != _crc32c(b"123456789")  # not plain CRC-32


def test_one_run_per_trial_named_by_row_task_grid_point_and_restart(plan):
    names = run_names(plan)
    assert set(names) == {t.id for t in [*plan.pretrain, *plan.finetune]}
    assert len(set(names.values())) == len(names)
    pretrain = {names[t.id] for t in plan.pretrain}
    assert pretrain == {"pretrain/bert_base", "pretrain/no_nsp"}
    finetune = sorted(names[t.id] for t in plan.finetune)
    assert finetune[0] == (
        "finetune/bert_base/syn_agree/batch_size=16,learning_rate=0.001,epochs=1/restart=0"
    )
    assert finetune[-1].startswith("finetune/no_nsp/syn_chain/") and finetune[-1][-1] == "1"


def test_curve_points_keep_finite_numbers_by_step_or_epoch():
    assert curve_point({"step": 25, "loss": 2.5, "lr": 1e-3, "seconds": 3.0}) == (
        25,
        {"loss": 2.5, "lr": 1e-3},
    )
    assert curve_point({"epoch": 2, "dev_accuracy": 0.75, "train_loss": float("nan")}) == (
        2,
        {"dev_accuracy": 0.75},
    )
    assert curve_point({"trials": {}, "flag": True}) is None  # a test-split scoring


def test_tensorboard_events_read_back_and_a_resumed_attempt_continues(plan, tmp_path: Path):
    pt = plan.pretrain[0].id
    tracker = Tracker(plan, tmp_path)
    for step in (25, 50, 75):  # the first attempt dies after step 75
        tracker.result(pt, {"step": step, "loss": 10.0 - step / 25, "tokens_per_s": 100.0})
    tracker.end(pt)
    resumed = Tracker(plan, tmp_path)  # a new driver: the run resumes from step 50's checkpoint
    for step in (75, 100):
        resumed.result(pt, {"step": step, "loss": 1.0, "tokens_per_s": 200.0})
    ft = plan.finetune[0].id
    resumed.result(ft, {"epoch": 1, "train_loss": 0.7, "dev_accuracy": 0.5, "seconds": 1.0})
    resumed.close()

    curves = scalars(tmp_path / "pretrain" / run_names(plan)[pt].split("/", 1)[1])
    assert curves["loss"] == [(25, 9.0), (50, 8.0), (75, 1.0), (100, 1.0)]
    assert curves["tokens_per_s"][-1] == (100, 200.0)
    fine = scalars(tmp_path / run_names(plan)[ft])
    assert fine == {"train_loss": [(1, pytest.approx(0.7))], "dev_accuracy": [(1, 0.5)]}


def test_run_says_where_the_logs_go(plan, tmp_path: Path):
    folder = tmp_path / "tensorboard"
    assert tracking_lines(plan, tmp_path) == [
        f"TensorBoard: {folder} (tensorboard --logdir {folder})"
    ]
    raw = tomllib.loads(TINY_MATRIX + "\n[tracking]\ntensorboard = false\n")
    assert tracking_lines(build_plan(validate(raw, origin="tiny.toml")), tmp_path) == []
