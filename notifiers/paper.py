"""The paper print batch: a cycle's paper invoices merged into PDFs for the print house, sorted by
postal code, each with a CSV of the mailing data in the same order.

`build_print_batch` makes one file of the batch (the print stage cuts a cycle into parts of at
most `INVOICES_PRINT_BATCH_SIZE` invoices). It merges by streaming: each invoice's PDF is read
when its turn comes, its objects are written out and the PDF is dropped, so a file never holds
more than one source PDF in memory besides the bytes already written. Objects that are
byte-for-byte the same in several invoices (a font subset made of the same characters, its
widths and character map, the resource dictionaries) are written once and shared. An object is
parsed only when its source bytes are new to the file: one whose bytes and references match an
object already copied is that object again, unparsed (most of a merge's time was pypdf parsing
each invoice's font dictionary, its widths array a few hundred numbers long, again).

Both outputs are deterministic: the same invoices give the same bytes, so a re-run after a crash
writes the same file again (a no-op in the write-once archive) instead of printing anything
twice.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pypdf import PdfReader
from pypdf.errors import PyPdfError
from pypdf.generic import ArrayObject, DictionaryObject, IndirectObject, PdfObject, StreamObject

from billing.domain.errors import RenderError
from billing.domain.model import Address
from billing.domain.spreadsheet import spreadsheet_row

CSV_COLUMNS = (
    "sequence", "invoice_number", "customer_id", "name", "street", "postal_code", "city",
    "county", "country", "first_page", "pages",
)  # fmt: skip

# Every PDF 1.x feature a source may use is valid under this header.
PDF_HEADER = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
_CATALOG, _PAGES = 1, 2  # object numbers kept for the merged file's own catalog and page tree
_REFERENCE = re.compile(rb"(\d+)\s+(\d+)\s+R\b")
_STREAM = b"\nstream\n"  # how a stream's data starts in the renderer's PDFs


@dataclass(frozen=True)
class PaperItem:
    """One paper invoice of a print file: where it goes, and how to read its PDF (called once,
    when the invoice's turn comes, so the merge holds one source PDF at a time)."""

    number: str
    customer_id: str
    name: str
    mailing_address: Address
    read_pdf: Callable[[], bytes]


def print_order(item: PaperItem) -> tuple[str, str]:
    """The print house's order: mailing postal code, then invoice number."""
    return (item.mailing_address.postal_code, item.number)


def build_print_batch(items: Sequence[PaperItem]) -> tuple[bytes, bytes]:
    """(merged PDF, mailing CSV) of `items`, both ordered by postal code, then invoice number."""
    merged = _StreamingMerge()
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(CSV_COLUMNS)
    page = 1
    for sequence, item in enumerate(sorted(items, key=print_order), start=1):
        pages = merged.append(item.read_pdf(), item.number)
        a = item.mailing_address
        # the print house opens this in a spreadsheet: a name must not run as a formula
        table.writerow(
            spreadsheet_row([sequence, item.number, item.customer_id, item.name, a.street,
                             a.postal_code, a.city, a.county, a.country, page, pages])
        )  # fmt: skip
        page += pages
    return merged.finish(), rows.getvalue().encode("utf-8")


class _StreamingMerge:
    """A PDF written object by object as source pages are appended: only the object offsets,
    the page list and one digest per distinct object are kept, never the sources' objects."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.out.write(PDF_HEADER)
        self.content = hashlib.sha256()  # of the objects written: the file's identifier
        self.offsets: dict[int, int] = {}
        self.next_number = _PAGES + 1
        self.kids: list[int] = []
        self.shared: dict[bytes, int] = {}  # sha256 of an object's bytes -> its number
        # sha256 of a source object's bytes + the numbers its references got -> its number
        self.shared_sources: dict[bytes, int] = {}
        self.source = b""
        self.spans: dict[tuple[int, int], tuple[int, int]] = {}  # source object -> its bytes

    def append(self, pdf: bytes, number: str) -> int:
        """Write every page of invoice `number`'s `pdf`; returns how many there were."""
        try:
            reader = PdfReader(io.BytesIO(pdf))
            self.source, self.spans = pdf, _object_spans(reader, len(pdf))
            copied: dict[tuple[int, int], int] = {}  # this source's object -> its number here
            for page in reader.pages:  # pypdf puts inherited attributes on each page
                body = self._dictionary(page, copied, skip=("/Parent",))
                body = body[:-2] + b"/Parent %d 0 R\n>>" % _PAGES
                self.kids.append(self._write(body))  # a page is never shared: it is one place
            return len(reader.pages)
        except (PyPdfError, ValueError) as error:  # trying again reads the same bytes
            raise RenderError(f"invoice {number}: its PDF cannot be merged: {error}") from error

    def finish(self) -> bytes:
        kids = b" ".join(b"%d 0 R" % n for n in self.kids)
        self._write(
            b"<<\n/Type /Pages\n/Count %d\n/Kids [ %s ]\n>>" % (len(self.kids), kids), _PAGES
        )
        self._write(b"<<\n/Type /Catalog\n/Pages %d 0 R\n>>" % _PAGES, _CATALOG)
        size = self.next_number
        xref = self.out.tell()
        self.out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
        for number in range(1, size):
            self.out.write(b"%010d 00000 n \n" % self.offsets[number])
        digest = self.content.hexdigest()[:32].encode()  # the same invoices, the same id
        self.out.write(
            b"trailer\n<<\n/Size %d\n/Root %d 0 R\n/ID [ <%s> <%s> ]\n>>\nstartxref\n%d\n%%%%EOF\n"
            % (size, _CATALOG, digest, digest, xref)
        )
        return self.out.getvalue()

    def _write(self, body: bytes, number: int | None = None) -> int:
        if number is None:
            number, self.next_number = self.next_number, self.next_number + 1
        self.offsets[number] = self.out.tell()
        written = b"%d 0 obj\n%s\nendobj\n" % (number, body)
        self.out.write(written)
        self.content.update(written)
        return number

    def _reference(self, ref: IndirectObject, copied: dict[tuple[int, int], int]) -> bytes:
        """`ref` as a reference to the copy of its object here, written first if it is not yet:
        an object already written with the same bytes (by any earlier invoice) is reused."""
        source = (ref.idnum, ref.generation)
        if source not in copied:
            copied[source] = 0  # in progress: a reference back to it would be a cycle
            key = self._source_key(ref, copied)
            if key is not None and key in self.shared_sources:
                copied[source] = self.shared_sources[key]
                return b"%d 0 R" % copied[source]
            body = self._value(ref.get_object(), copied)
            digest = hashlib.sha256(body).digest()
            if digest not in self.shared:
                self.shared[digest] = self._write(body)
            copied[source] = self.shared[digest]
            if key is not None:
                self.shared_sources[key] = copied[source]
        elif copied[source] == 0:
            raise ValueError(f"object {ref.idnum} refers back to itself: cannot merge it in order")
        return b"%d 0 R" % copied[source]

    def _source_key(self, ref: IndirectObject, copied: dict[tuple[int, int], int]) -> bytes | None:
        """What makes `ref`'s copy the same as an earlier one, read off its source bytes: their
        digest and the numbers its references got here (copying those first, in the order
        `_value` would). None where the bytes alone cannot tell (a string, which could hold
        text that looks like a reference; a stream whose length is another object; a layout
        this reading does not know): that object is parsed."""
        span = self.spans.get((ref.idnum, ref.generation))
        if span is None:
            return None
        data = self.source[span[0] : span[1]]
        start = data.find(b"obj")
        if start < 0:
            return None
        head, stream, _ = data.partition(_STREAM)
        head = head[start + 3 :]
        if not stream and b"stream" in data:
            return None
        if b"(" in head or b"<" in head.replace(b"<<", b"") or b"%" in head:
            return None
        if stream and re.search(rb"/Length\s+\d+\s+\d+\s+R", head):
            return None  # _value leaves the length out and writes its own
        references = [
            self._reference(IndirectObject(int(m[1]), int(m[2]), ref.pdf), copied)
            for m in _REFERENCE.finditer(head)
        ]
        return hashlib.sha256(data[start:]).digest() + b" ".join(references)

    def _value(self, value: PdfObject, copied: dict[tuple[int, int], int]) -> bytes:
        if isinstance(value, IndirectObject):
            return self._reference(value, copied)
        if isinstance(value, StreamObject):  # the data as stored (still compressed)
            data = value._data  # noqa: SLF001 (pypdf keeps a stream's raw bytes there)
            head = self._dictionary(value, copied, skip=("/Length",))
            return head[:-2] + b"/Length %d\n>>\nstream\n%s\nendstream" % (len(data), data)
        if isinstance(value, DictionaryObject):
            return self._dictionary(value, copied)
        if isinstance(value, ArrayObject):
            return b"[ " + b" ".join(self._value(v, copied) for v in value) + b" ]"
        leaf = io.BytesIO()
        value.write_to_stream(leaf)
        return leaf.getvalue()

    def _dictionary(
        self, value: DictionaryObject, copied: dict[tuple[int, int], int], skip: tuple = ()
    ) -> bytes:
        entries = [
            self._value(key, copied) + b" " + self._value(item, copied)
            for key, item in value.items()
            if key not in skip and not (len(key) > 2 and key[1] == "%" and key[-1] == "%")
        ]
        return b"<<\n" + b"".join(entry + b"\n" for entry in entries) + b">>"


def _object_spans(reader: PdfReader, size: int) -> dict[tuple[int, int], tuple[int, int]]:
    """Where each object of the source's cross-reference table lies: from its offset to the
    next object's (or to the end). Objects in object streams are left out (they are parsed)."""
    entries = sorted(
        (offset, (number, generation))
        for generation, table in reader.xref.items()
        for number, offset in table.items()
        if number not in reader.xref_objStm
    )
    ends = [offset for offset, _ in entries[1:]] + [size]
    return {source: (offset, end) for (offset, source), end in zip(entries, ends, strict=True)}
