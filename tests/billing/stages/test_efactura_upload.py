"""A whole cycle uploaded to the ANAF simulator (real HTTP on 127.0.0.1) through rate limits, an
upload whose reply is lost after ANAF recorded it, a `nok` with errors and expired tokens:
afterwards every valid invoice is accepted exactly once, the rejected one is reported with
ANAF's errors, and nothing was uploaded twice."""

from __future__ import annotations

import collections
import json
import zipfile
from datetime import datetime
from io import BytesIO

import sqlalchemy as sa

from billing import pipeline
from billing.runtime import Runtime
from billing.stages.audit import verify_cycle
from storage.archive import open_archive, sha256_hex
from storage.ledger import efactura_documents, load_efactura_tokens, open_ledger
from tests.support.anaf_simulator import Running


def states(settings, cycle_id: str) -> dict[str, sa.Row]:
    with open_ledger(settings.ledger_url).connect() as conn:
        return {
            r.number: r
            for r in conn.execute(
                sa.select(efactura_documents).where(efactura_documents.c.cycle_id == cycle_id)
            )
        }


def test_a_cycle_reaches_anaf_exactly_once_through_its_faults(issued_copy):
    settings, _ = issued_copy
    with Running() as anaf:
        sim = anaf.sim
        settings = type(settings)(**{
            **vars(settings), "efactura_url": anaf.api_url, "efactura_token_url": anaf.token_url,
            "efactura_access_token": sim.issue_access_token(ttl=3600),
            "efactura_refresh_token": sim.issue_refresh_token(), "efactura_timeout_seconds": 0.5,
        })  # fmt: skip
        runtime = Runtime(settings)
        assert pipeline.validate_efactura(runtime, "2026-11").invalid == 0
        numbers = sorted(states(settings, "2026-11"))
        rejected = numbers[7]
        sim.faults.reject = {rejected: ["E: [BR-RO-999] eroare simulata a facturii"]}
        sim.faults.rate_limit_every = 41  # HTTP 204 now and then
        sim.faults.limit_message_every = 97  # ANAF's limit message now and then
        sim.faults.timeout_after_accept, sim.faults.hold_seconds = 2, 1.5
        sim.faults.processing_polls = 1  # one "in prelucrare" before the answer
        sim.page_size = 10  # the message list comes in pages, and lists invoices received too
        sim.received = [
            {"data_creare": datetime.now().strftime("%Y%m%d%H%M"), "cif": "18547290",
             "id_solicitare": f"49000000{n}", "tip": "FACTURA PRIMITA", "id": f"39000000{n}",
             "detalii": f"Factura cu id_incarcare=49000000{n} emisa de cif_emitent=1234567{n}"}
            for n in range(3)
        ]  # fmt: skip

        rounds = reconciled = 0
        while rounds < 60:
            rounds += 1
            submitted = pipeline.submit_efactura(runtime, "2026-11")
            if rounds == 2:
                sim.expire_tokens()  # every token issued so far stops working
            synced = pipeline.sync_efactura(runtime)
            reconciled += synced.reconciled
            left = [r for r in states(settings, "2026-11").values()
                    if r.state in ("pending", "uploaded")]  # fmt: skip
            if not left and not submitted.rate_limited and not synced.rate_limited:
                break
        uploads = list(sim.uploads.values())

    final = states(settings, "2026-11")
    assert collections.Counter(u.number for u in uploads) == collections.Counter(
        numbers
    )  # once each
    assert {n: r.state for n, r in final.items()} == {
        n: "rejected" if n == rejected else "accepted" for n in numbers
    }
    errors = [f["message"] for f in json.loads(final[rejected].findings)]
    assert errors == ["E: [BR-RO-999] eroare simulata a facturii"]
    # the faults were met and got through: limits, both lost replies found in the message list
    assert sim.limited_calls > 3 and reconciled == 2 and rounds > 1
    # the list was read page by page (a round's 40 or so uploads, 10 a page), and the invoices
    # received, listed last, were left alone: no download of theirs exists, and trying one
    # would have failed the sync
    assert sim.pages_listed >= 3
    archive = open_archive(settings.archive_url)
    for number, row in final.items():
        assert row.upload_index and row.response_key.endswith(f"/{number}.anaf.zip")
        data = archive.get(row.response_key)
        assert sha256_hex(data) == row.response_sha256
        names = zipfile.ZipFile(BytesIO(data)).namelist()
        assert names == [f"{row.upload_index}.xml", f"semnatura_{row.upload_index}.xml"]
    # the refreshed tokens were kept for the next process, and the archive still verifies
    kept = load_efactura_tokens(open_ledger(settings.ledger_url))
    assert kept is not None and kept[1] in sim.refresh_tokens
    assert verify_cycle(open_ledger(settings.ledger_url), archive, "2026-11") == []
