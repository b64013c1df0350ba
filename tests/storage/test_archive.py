"""The local archive is write-once: same bytes again is a no-op, other bytes are refused."""

import io

import pytest

from billing.domain.errors import ArchiveConflictError, ConfigurationError
from storage.archive import open_archive, sha256_hex
from storage.archive.local import LocalArchive
from storage.blobs import open_store


def test_put_once_is_idempotent_and_never_overwrites(tmp_path):
    archive = LocalArchive(tmp_path)
    first = archive.put_once("invoices/C1/OR00000001.pdf", b"%PDF-1.4 one")
    assert (first.size, first.sha256) == (12, sha256_hex(b"%PDF-1.4 one"))
    assert archive.put_once("invoices/C1/OR00000001.pdf", b"%PDF-1.4 one") == first
    with pytest.raises(
        ArchiveConflictError, match="invoices/C1/OR00000001.pdf already holds other bytes"
    ):
        archive.put_once("invoices/C1/OR00000001.pdf", b"%PDF-1.4 two")
    assert archive.get("invoices/C1/OR00000001.pdf") == b"%PDF-1.4 one"
    assert list(archive.list("invoices/")) == ["invoices/C1/OR00000001.pdf"]
    assert (tmp_path / "invoices/C1/OR00000001.pdf").stat().st_mode & 0o222 == 0


@pytest.mark.parametrize("key", ["../x.pdf", "invoices/../../x", "", "/"])
def test_keys_cannot_escape_the_archive(tmp_path, key):
    with pytest.raises(ValueError, match="invalid archive key"):
        LocalArchive(tmp_path).put_once(key, b"x")


@pytest.mark.parametrize("url", ["ftp://files.example.ro/archive", "gs://bucket/archive"])
def test_an_archive_url_no_backend_implements_is_refused(url):
    # it used to become a local folder named "ftp:" beside the process
    with pytest.raises(ConfigurationError, match=r"INVOICES_ARCHIVE_URL: .* no backend"):
        open_archive(url)
    with pytest.raises(ConfigurationError, match="no backend"):
        open_store(url)


def test_download_writes_the_stored_bytes(tmp_path):
    archive = LocalArchive(tmp_path / "archive")
    archive.put_once("manifests/2026-11.json", b"{}" * 1_000_000)
    out = io.BytesIO()
    archive.download("manifests/2026-11.json", out)
    assert out.getvalue() == b"{}" * 1_000_000
    with pytest.raises(FileNotFoundError):
        archive.download("manifests/2026-12.json", io.BytesIO())


def test_list_walks_folder_by_folder_in_sorted_order(tmp_path):
    """list() yields keys in sorted-path order without holding the whole tree (a million
    invoices' folders), hidden files included and the temporary folder left out."""
    archive = LocalArchive(tmp_path / "archive")
    keys = ["a/b.pdf", "a-c", "a/.x", "A/z", "b/c/d/e.pdf", "b/c.pdf", "b/c-d/f", "ab", "b/c/a"]
    for key in keys:
        path = tmp_path / "archive" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (tmp_path / "archive" / ".tmp").mkdir(exist_ok=True)
    (tmp_path / "archive" / ".tmp" / "partial").write_bytes(b"x")
    root = tmp_path / "archive"
    expected = [
        p.relative_to(root).as_posix()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.relative_to(root).as_posix().startswith(".tmp/")
    ]
    assert list(archive.list()) == expected and sorted(expected) == sorted(keys)
    assert list(archive.list("b/")) == ["b/c/a", "b/c/d/e.pdf", "b/c-d/f", "b/c.pdf"]
