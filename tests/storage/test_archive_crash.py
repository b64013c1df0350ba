"""A writer killed mid-write leaves nothing under a listed prefix of the local archive, and what
it leaves in the temporary area is removed by the next writer, never a live writer's file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storage.archive.local import TEMP_FOLDER, LocalArchive
from storage.files import locked_temp_file, remove_abandoned

KEY = "invoices/C1/OR00000001.pdf"

# A child that starts archiving a PDF and stops for good in the middle of writing it (its
# fsync never returns), so the parent can kill it exactly there.
STALLED_WRITER = textwrap.dedent(
    """
    import sys, time
    import storage.files
    from storage.archive.local import LocalArchive

    def stall(fd):
        print("writing", flush=True)
        time.sleep(600)

    storage.files.os.fsync = stall
    LocalArchive(sys.argv[1]).put_once(sys.argv[2], b"%PDF-1.4 " + b"x" * 100_000)
    """
)


def start_stalled_writer(root: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", STALLED_WRITER, str(root), KEY],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout.readline().strip() == "writing"
    return child


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def age(folder: Path, seconds: float = 3600) -> None:
    past = time.time() - seconds
    for path in folder.iterdir():
        os.utime(path, (past, past))


def test_a_writer_killed_mid_write_leaves_nothing_under_invoices(tmp_path):
    kill(start_stalled_writer(tmp_path))
    leftovers = files_under(tmp_path)
    # before: invoices/C1/.OR00000001.pdf.<random>, a partial file beside the final key
    assert leftovers and all(f.startswith(f"{TEMP_FOLDER}/") for f in leftovers)
    archive = LocalArchive(tmp_path)
    assert list(archive.list()) == [] and archive.head(KEY) is None

    age(tmp_path / TEMP_FOLDER)
    archive.put_once("invoices/C2/OR00000002.pdf", b"%PDF-1.4 two")
    assert files_under(tmp_path) == ["invoices/C2/OR00000002.pdf"]
    assert LocalArchive(tmp_path).put_once(KEY, b"%PDF-1.4 one").existed is False


def test_the_next_writer_leaves_a_live_writer_alone_in_any_process(tmp_path):
    child = start_stalled_writer(tmp_path)
    try:
        age(tmp_path / TEMP_FOLDER)  # even an old file is left while its writer lives
        LocalArchive(tmp_path).put_once("invoices/C2/OR00000002.pdf", b"%PDF-1.4 two")
        assert len(list((tmp_path / TEMP_FOLDER).iterdir())) == 1
    finally:
        kill(child)
    LocalArchive(tmp_path).put_once("invoices/C3/OR00000003.pdf", b"%PDF-1.4 three")
    assert list((tmp_path / TEMP_FOLDER).iterdir()) == []


def test_a_just_created_file_is_not_taken_for_a_leftover(tmp_path):
    (tmp_path / "put.fresh").write_bytes(b"partial")  # not locked yet: created an instant ago
    assert remove_abandoned(tmp_path) == []
    with locked_temp_file(tmp_path, b"live") as live:
        age(tmp_path)
        assert remove_abandoned(tmp_path) == ["put.fresh"]
        assert Path(live).read_bytes() == b"live"
    assert list(tmp_path.iterdir()) == []


def test_reports_are_replaced_through_the_temporary_area_too(tmp_path):
    archive = LocalArchive(tmp_path)
    archive.replace("reports/2026-11/run-1.json", b"{}")
    archive.replace("reports/2026-11/run-1.json", b'{"a": 1}')
    assert files_under(tmp_path) == ["reports/2026-11/run-1.json"]
    assert archive.get("reports/2026-11/run-1.json") == b'{"a": 1}'


def test_the_temporary_area_is_no_key(tmp_path):
    with pytest.raises(ValueError, match="temporary files"):
        LocalArchive(tmp_path).put_once(f"{TEMP_FOLDER}/x.pdf", b"x")


def test_put_once_says_whether_the_object_was_there(tmp_path):
    archive = LocalArchive(tmp_path)
    assert archive.put_once(KEY, b"%PDF-1.4 one").existed is False
    assert archive.put_once(KEY, b"%PDF-1.4 one").existed is True
