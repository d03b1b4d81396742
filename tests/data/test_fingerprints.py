"""Input fingerprints (data/fingerprints.py): noted while a plan is built, compared later."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from bertabl.data.fingerprints import (
    Fingerprint,
    changed_content,
    changed_on_disk,
    file_sha256,
    recording,
)


def test_hashing_notes_each_file_once_while_recording(tmp_path: Path):
    path = tmp_path / "train.tsv"
    path.write_bytes(b"sentence\tlabel\nfine\t1\n")
    expected = hashlib.sha256(path.read_bytes()).digest()
    assert file_sha256(path) == expected  # outside a recording: hashed, noted nowhere
    with recording() as noted:
        assert file_sha256(path) == expected
        file_sha256(tmp_path / "." / "train.tsv")  # the same file by another spelling
    stat = path.stat()
    assert noted == {
        str(path): Fingerprint(str(path), stat.st_size, stat.st_mtime_ns, expected.hex())
    }


def test_changes_on_disk_are_told_from_size_and_mtime_and_gone_files_are_not_changes(
    tmp_path: Path,
):
    same, grown, touched, gone = (tmp_path / n for n in ("same", "grown", "touched", "gone"))
    for path in (same, grown, touched, gone):
        path.write_text("abc")
    with recording() as noted:
        for path in (same, grown, touched, gone):
            file_sha256(path)
    grown.write_text("abcd")
    stat = touched.stat()
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    gone.unlink()
    inputs = list(noted.values())
    assert [Path(f.path).name for f in changed_on_disk(inputs)] == ["grown", "touched"]
    assert noted[str(gone)].differs_on_disk() is None


def test_content_changes_between_two_plans_name_the_file_and_its_sizes():
    before = [Fingerprint("/d/a", 10, 1, "aa"), Fingerprint("/d/b", 2_000, 1, "bb")]
    now = [Fingerprint("/d/a", 10, 5, "aa"), Fingerprint("/d/b", 2_048, 5, "cc")]
    assert changed_content(before, now) == ["/d/b (2,000 -> 2,048 bytes)"]
    assert changed_content(before, [Fingerprint("/e/b", 2_048, 5, "cc")]) == []  # moved: a new path
