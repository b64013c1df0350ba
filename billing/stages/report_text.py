"""The run report (contract 4) as plain text that ops can read in a task log or a terminal.

`format_report(report)` makes fixed-width tables, plain ASCII rules, no colours: the Airflow
finalize task logs it and `invoices report` prints it. It reads every key with `.get`, so a
report written before a key existed still formats.

Personal data never reaches the text: the report holds no recipient and no quarantine detail,
and `mask_contacts` (also used when the report is made) hides anything that still looks like an
e-mail address or a phone number in a failure reason or a malformed customer id.

Only the standard library: the DAG imports this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

# Any token holding an '@' (also broken ones such as "ana@@x"): no address survives.
_EMAIL = re.compile(r"[^\s<>()\[\]{},;:\"'`]*@[^\s<>()\[\]{},;:\"'`]*")
# +E.164, or 8+ digits, possibly grouped by single spaces or dashes ("0722 123 456").
_PHONE = re.compile(r"(?<![\w+])\+?\d(?:[ -]?\d){7,}(?!\w)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_VALID_ID = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
)  # billing.domain.validation's customer id
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")

EXAMPLES_SHOWN = 10
REASON_WIDTH = 60


def mask_contacts(text: str) -> str:
    """`text` with e-mail addresses replaced by <email> and phone numbers by <phone>."""
    text = _EMAIL.sub("<email>", text)
    return _PHONE.sub(lambda m: m[0] if _ISO_DATE.fullmatch(m[0]) else "<phone>", text)


def safe_customer_id(value: str) -> str:
    """A customer id as the report shows it: a valid id as is; anything else came from a broken
    row and may be a misplaced name, address or contact, so it is not shown (the file and row
    find it)."""
    if not value:
        return ""
    return value if _VALID_ID.fullmatch(value) else "<invalid id>"


def pick_examples(items: Iterable[Mapping], key: str, limit: int) -> list:
    """At most `limit` of `items`, spread over the values of `item[key]` (each value's first
    item, then each value's second, ...), returned in their original order."""
    firsts: dict[object, list[tuple[int, Mapping]]] = {}
    for index, item in enumerate(items):
        kept = firsts.setdefault(item.get(key), [])
        if len(kept) < limit:
            kept.append((index, item))
    chosen: list[tuple[int, Mapping]] = []
    depth = 0
    while len(chosen) < limit and any(len(kept) > depth for kept in firsts.values()):
        for kept in firsts.values():
            if len(kept) > depth and len(chosen) < limit:
                chosen.append(kept[depth])
        depth += 1
    return [item for _, item in sorted(chosen, key=lambda pair: pair[0])]


# ---------------------------------------------------------------------------- the text


def format_report(report: dict) -> str:
    """The run report as fixed-width plain text (sections: warnings when there are any, run,
    stages, timings, notices, totals, quarantine, failures, invalid e-Factura XMLs)."""
    sections = [
        _warnings_section(report),
        _run_section(report),
        _stages_section(report),
        _timings_section(report),
        _notices_section(report),
        _totals_section(report),
        _quarantine_section(report),
        _failures_section(report),
        _efactura_section(report),
    ]
    return "\n\n".join(s for s in sections if s)


def _warnings_section(report: dict) -> str:
    warnings = report.get("warnings") or []
    return _section("WARNING", [f"! {_cell(w)}" for w in warnings]) if warnings else ""


def _run_section(report: dict) -> str:
    rows = [
        ("cycle", report.get("cycle_id", "?")),
        ("run id", report.get("run_id", "?")),
    ]
    period = report.get("period") or {}
    if period:
        rows.append(("billed period", f"{period.get('start', '?')} to {period.get('end', '?')}"))
    if report.get("issue_date"):
        rows.append(("issue date", report["issue_date"]))
    started, finished = report.get("started_at"), report.get("finished_at")
    if started:
        rows.append(("started", _when(started)))
    if finished:
        took = _duration(started, finished)
        rows.append(("finished", _when(finished) + (f" (took {took})" if took else "")))
    return _section("run", _pairs(rows))


STAGE_ROWS = (
    ("customers", "customers"),
    ("quarantined_customers", "quarantined customers"),
    ("quarantined_rows", "quarantined rows"),
    ("flagged_customers", "flagged customers"),
    ("invoices_issued", "invoices issued"),
    ("invoices_existing", "already issued"),
    ("pdfs_archived", "PDFs archived"),
    ("pdfs_existing", "already archived"),
    ("pdfs_recovered", "  of which recovered"),
    ("efactura_xmls", "e-Factura XMLs"),
    ("efactura_valid", "  valid"),
    ("efactura_invalid", "  invalid (not uploaded)"),
    ("efactura_unvalidated", "  not validated yet"),
    ("efactura_missing", "  invoices without one"),
    ("paper_queued", "paper queued"),
    ("fallbacks", "fallbacks"),
    ("chunks", "chunks"),
)


def _stages_section(report: dict) -> str:
    rows = [(label, report[key]) for key, label in STAGE_ROWS if key in report]
    return _section("stages", _table(("stage", "count"), rows, "<>")) if rows else ""


def _timings_section(report: dict) -> str:
    """Each stage's wall time, items and rate, then the run's end-to-end rate: the figures ops
    and `make bench` read."""
    timings = report.get("timings") or {}
    if not timings:
        return ""
    throughput = report.get("throughput") or {}
    rows = []
    for stage, seconds in timings.items():
        if stage == "total":
            continue
        figures = throughput.get(stage) or {}
        rate = figures.get("per_second")
        rows.append((
            stage, f"{seconds:.1f}", figures.get("items", ""), figures.get("parts", ""),
            f"{rate:.0f}" if rate is not None else "",
        ))  # fmt: skip
    rate = report.get("rate")
    rows.append((
        "end to end", f"{timings.get('total', 0):.1f}",
        report.get("invoices_issued", 0) + report.get("invoices_existing", 0), "",
        f"{rate:.1f}" if rate is not None else "",
    ))  # fmt: skip
    headers = ("stage", "seconds", "items", "parts", "per second")
    return _section("timings", _table(headers, rows, "<>>>>"))


def _notices_section(report: dict) -> str:
    notices = report.get("notices") or {}
    if not notices:
        return ""
    rows = [
        (channel, counts.get("sent", 0), counts.get("failed", 0), counts.get("pending", 0))
        for channel, counts in notices.items()
    ]
    return _section("notices", _table(("channel", "sent", "failed", "pending"), rows, "<>>>"))


def _totals_section(report: dict) -> str:
    totals = report.get("totals") or {}
    if not totals:
        return ""
    labels = {"net": "net", "vat": "VAT", "gross": "gross"}
    rows = [(labels.get(key, key), amount) for key, amount in totals.items()]
    return _section("totals (RON)", _table(("total", "amount"), rows, "<>"))


def _quarantine_section(report: dict) -> str:
    quarantine = report.get("quarantine")
    where = report.get("quarantine_report")
    if not quarantine:
        return _section("quarantine", [f"  full list: {where}"]) if where else ""
    by_reason = quarantine.get("by_reason") or {}
    flagged = quarantine.get("flagged") or {}
    entries = quarantine.get("entries", sum(by_reason.values()))
    title = f"quarantine ({entries} entries)"
    if not by_reason:
        return _section(title, ["  nothing quarantined or flagged"])
    rows = [
        (reason, count, _action(count, flagged.get(reason, 0)))
        for reason, count in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    ]
    lines = _table(("reason", "entries", "action"), rows, "<><")
    examples = pick_examples(quarantine.get("examples") or [], "reason", EXAMPLES_SHOWN)
    if examples:
        lines += ["", f"  examples ({len(examples)} of {entries}):"]
        lines += _table(
            ("file", "row", "customer", "column", "reason"),
            [
                (
                    e.get("file", ""),
                    e.get("row", ""),
                    safe_customer_id(str(e.get("customer_id", ""))),
                    e.get("column", ""),
                    e.get("reason", ""),
                )
                for e in examples
            ],
            "<><<<",
        )
    if where:
        lines += ["", f"  full list: {where}"]
    return _section(title, lines)


def _efactura_section(report: dict) -> str:
    """The first invalid e-Factura XMLs, each with the rules it breaks (ANAF's ids)."""
    invalid = report.get("efactura_invalid_examples") or []
    if not invalid:
        return ""
    count = report.get("efactura_invalid", len(invalid))
    rows = [(i.get("number", ""), _reason("; ".join(i.get("rules") or []))) for i in invalid]
    lines = _table(("invoice", "rules broken"), rows, "<<")
    return _section(f"invalid e-Factura XMLs ({len(invalid)} of {count}, not uploaded)", lines)


def _failures_section(report: dict) -> str:
    failures = report.get("failures")
    if not failures:
        return ""
    count = failures.get("count", 0)
    if not count:
        return _section("failed notices (0)", ["  none"])
    by_status = failures.get("by_status") or {}
    retryable = by_status.get("failed-retryable", 0)
    title = f"failed notices ({count}" + (f", {retryable} to be retried)" if retryable else ")")
    reasons = sorted((failures.get("by_reason") or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    lines = _table(("reason", "notices"), [(_reason(r), n) for r, n in reasons], "<>")
    examples = pick_examples(failures.get("examples") or [], "reason", EXAMPLES_SHOWN)
    if examples:
        lines += ["", f"  examples ({len(examples)} of {count}):"]
        lines += _table(
            ("invoice", "customer", "channel", "status", "attempts", "reason"),
            [
                (
                    e.get("number", ""),
                    safe_customer_id(str(e.get("customer_id", ""))),
                    e.get("channel", ""),
                    e.get("status", ""),
                    e.get("attempts", ""),
                    _reason(str(e.get("reason", ""))),
                )
                for e in examples
            ],
            "<<<<><",
        )
    return _section(title, lines)


# ---------------------------------------------------------------------------- helpers


def _action(entries: int, flagged: int) -> str:
    if not flagged:
        return "quarantined"
    return "flagged" if flagged == entries else f"{flagged} flagged"


def _reason(text: str) -> str:
    text = mask_contacts(text) or "(no reason recorded)"
    return text if len(text) <= REASON_WIDTH else text[: REASON_WIDTH - 3] + "..."


def _cell(value: object) -> str:
    """One line, no control characters (a log line must not be forged by a value)."""
    return _CONTROL.sub(" ", str(value)).strip()


def _section(title: str, lines: list[str]) -> str:
    return "\n".join([title, "=" * len(title), *lines])


def _pairs(rows: list[tuple[str, object]]) -> list[str]:
    width = max(len(label) for label, _ in rows)
    return [f"  {label.ljust(width)}  {_cell(value)}" for label, value in rows]


def _table(headers: tuple[str, ...], rows: list[tuple], align: str) -> list[str]:
    """A fixed-width table: `align` holds '<' or '>' per column."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values) -> str:
        parts = [
            v.rjust(w) if a == ">" else v.ljust(w)
            for v, w, a in zip(values, widths, align, strict=True)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), "  " + "  ".join("-" * w for w in widths), *map(line, cells)]


def _when(value: str) -> str:
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return _cell(value)
    offset = moment.utcoffset()
    zone = "UTC" if offset is not None and not offset else moment.strftime("%z")
    return f"{moment:%Y-%m-%d %H:%M:%S} {zone}".rstrip()


def _duration(started: str | None, finished: str | None) -> str:
    try:
        seconds = (
            datetime.fromisoformat(finished) - datetime.fromisoformat(started)
        ).total_seconds()
    except (TypeError, ValueError):
        return ""
    if seconds < 0:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
