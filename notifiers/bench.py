"""E-mail throughput: messages per second with an invoice-sized PDF attached, to a local
aiosmtpd server on 127.0.0.1, through one connection and through a pool of connections, with
and without a delay in the server's reply (what a real relay's latency looks like); then the
embedded outboxes on disk: `.eml` files and the SMS JSON-lines file, each against the floor of
writing the same bytes plainly (one file a message; one appended line a message).

    python -m notifiers.bench [--messages N] [--pool P]

The attachment is a one-page PDF drawn with reportlab and padded to the size of the reference
invoice (`REFERENCE_PDF_BYTES`, what `renderers.pdf` makes of the sample invoice): notifiers may
not import renderers, and only the size matters to SMTP.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import sys
import time

from aiosmtpd.controller import Controller
from reportlab.pdfgen.canvas import Canvas
from rich.console import Console
from rich.table import Table

from notifiers.base import Outgoing
from notifiers.email import EmailNotifier

REFERENCE_PDF_BYTES = 16_673  # renderers.pdf of the sample invoice (template v1), measured


class _Sink:
    """Accepts every message after `delay` seconds (a relay's latency) and counts it."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted = 0

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's name)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.accepted += 1
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _messages(count: int, pdf: bytes) -> list[Outgoing]:
    return [
        Outgoing(
            f"BENCH{i:08d}:email",
            f"client{i}@example.ro",
            f"Factura BENCH{i:08d}",
            "Factura este atașată.",
            "<p>Factura este atașată.</p>",
            (f"BENCH{i:08d}.pdf", pdf),
        )  # fmt: skip
        for i in range(count)
    ]


def rate(count: int, pool: int, delay: float, pdf: bytes) -> float:
    """Messages per second for `count` messages through `pool` connections."""
    sink = _Sink(delay)
    controller = Controller(sink, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        notifier = EmailNotifier("127.0.0.1", controller.port, pool_size=pool, timeout=30)
        started = time.perf_counter()
        results = notifier.send(_messages(count, pdf))
        elapsed = time.perf_counter() - started
    finally:
        controller.stop()
    if sum(r.sent for r in results) != count or sink.accepted != count:
        raise RuntimeError(f"only {sink.accepted} of {count} messages arrived")
    return count / elapsed


def invoice_sized_pdf(size: int = REFERENCE_PDF_BYTES) -> bytes:
    """A valid one-page PDF of exactly `size` bytes (a comment after `%%EOF` fills it up)."""
    buffer = io.BytesIO()
    canvas = Canvas(buffer, invariant=1)
    canvas.drawString(72, 770, "Factura BENCH (benchmark attachment)")
    canvas.showPage()
    canvas.save()
    pdf = buffer.getvalue()
    if len(pdf) + 2 > size:
        raise ValueError(f"a PDF of {size} bytes is smaller than the {len(pdf)} bytes drawn")
    return pdf + b"%" + b"0" * (size - len(pdf) - 2) + b"\n"


def bench(count: int, pool: int) -> Table:
    pdf = invoice_sized_pdf()
    table = Table(
        title=f"E-mail with the {len(pdf) / 1000:.1f} KB invoice PDF attached, {count} messages"
    )
    for column in ("server reply delay", "connections", "messages/s", "vs one connection"):
        table.add_column(column, justify="right")
    for delay in (0.0, 0.02):
        single = rate(count, 1, delay, pdf)
        pooled = rate(count, pool, delay, pdf)
        label = f"{delay * 1000:.0f} ms"
        table.add_row(label, "1", f"{single:,.0f}", "(baseline)")
        table.add_row(label, str(pool), f"{pooled:,.0f}", f"{pooled / single:.2f}x")
    table.caption = f"os.cpu_count() = {os.cpu_count()}; the server runs in this process"
    return table


def outbox_table(count: int) -> Table:
    """The `.eml` outbox and the SMS file transport, per CPU second of this process, against
    plain writes of the same bytes measured in the same run."""
    import tempfile
    from pathlib import Path

    from notifiers.email import EmlFileNotifier
    from notifiers.email.message import render_message
    from notifiers.sms.file import FileTransport

    pdf = invoice_sized_pdf()
    mails = _messages(count, pdf)
    texts = [
        Outgoing(f"BENCH{i:08d}:sms", f"+4072{i:07d}", "",
                 f"Telecom Exemplu: factura BENCH{i:08d} de 123,45 lei, scadenta 21.11.2026. "
                 "Detalii in contul tau.")
        for i in range(count)
    ]  # fmt: skip

    def cpu(work) -> float:
        started = time.process_time()
        work()
        return count / max(time.process_time() - started, 1e-9)

    table = Table(title=f"Embedded outboxes on disk, {count} messages, one process")
    for column in ("outbox", "messages per CPU second", "floor", "vs floor", "goal"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        eml = cpu(lambda: EmlFileNotifier(root / "eml").send(mails))
        rendered = [render_message(m, "facturi@example.ro").data for m in mails]
        (root / "plain").mkdir()

        def plain_files() -> None:
            for i, data in enumerate(rendered):
                (root / "plain" / f"{i}.eml").write_bytes(data)

        eml_floor = cpu(plain_files)
        transport = FileTransport(root / "sms.jsonl")
        sms = cpu(lambda: [transport.send(m) for m in texts])
        lines = [json.dumps({"key": m.key, "recipient": m.recipient, "text": m.text}).encode() + b"\n"
                 for m in texts]  # fmt: skip

        def plain_lines() -> None:
            with (root / "plain.jsonl").open("ab") as out:
                for line in lines:
                    out.write(line)

        sms_floor = cpu(plain_lines)
    table.add_row(".eml files (PDF attached)", f"{eml:,.0f}", f"{eml_floor:,.0f}",
                  f"{eml / eml_floor:.2f}", ">= 1,500")  # fmt: skip
    table.add_row("SMS, JSON-lines file", f"{sms:,.0f}", f"{sms_floor:,.0f}",
                  f"{sms / sms_floor:.2f}", ">= 5,000")  # fmt: skip
    table.caption = "floor: the same bytes written with plain file writes, no lock, no sync"
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m notifiers.bench", description=__doc__)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--pool", type=int, default=4)
    parser.add_argument("--outbox-messages", type=int, default=5000)
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    console.print(bench(args.messages, args.pool))
    console.print(outbox_table(args.outbox_messages))


if __name__ == "__main__":
    main()
