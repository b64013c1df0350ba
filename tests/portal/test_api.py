"""The phone channels' API (portal.api) as the 411 line, the *100# menu and the SMS gateway call
it: signed, replay-proof, idempotent calls that change preferences and send one-time codes, over
a ledger holding a small issued cycle; and once served by uvicorn in a process of its own."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

import portal.api
from billing import pipeline
from billing.accounts.codes import Check
from billing.accounts.keys import Keys
from billing.config import Settings
from billing.runtime import Runtime
from portal.signing import caller_key, forget_old_signatures, remember, sign
from storage import ledger
from storage.customers import standing
from storage.ledger import api_signatures, preference_changes
from tests.support.paths import REPO

SECRET = "phone-api-test-secret-0123456789abcdef"
CYCLE = "2026-11"
PREFERENCES = "/api/v1/preferences"
SMS = "/api/v1/sms/inbound"

ANA = "+40722000001"  # C1: a Romanian billing address, so paper can go there
MARCO = "+40722000002"  # C2: billed in Italy, no paper address: paper is refused
FAMILY = "+40722000003"  # C3 and C4 share it; C4 has no e-mail address
LANDLINE = "+40212000005"  # C5: a fixed line, which no SMS reaches

CUSTOMERS = [
    # customer_id, name, street, city, county, postal_code, country, phone, email, notify
    ("C1", "Ana Popescu", "Str. Lungă nr. 3", "Iași", "Iași", "700259", "RO", ANA, "ana@example.ro", "email"),
    ("C2", "Marco Rossi", "Via Roma 40", "Roma", "", "00136", "IT", MARCO, "marco@example.it", "email"),
    ("C3", "Ion Ionescu", "Str. Mare nr. 1", "Cluj-Napoca", "Cluj", "400001", "RO", FAMILY, "ion@example.ro", "email"),
    ("C4", "Ioana Ionescu", "Str. Mare nr. 1", "Cluj-Napoca", "Cluj", "400001", "RO", FAMILY, "", "sms"),
    ("C5", "Dan Radu", "Str. Mică nr. 2", "Brașov", "Brașov", "500001", "RO", LANDLINE, "dan@example.ro", "email"),
]  # fmt: skip
START = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


class Clock:
    """The API's clock, moved by the tests."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def issued_home(tmp_path_factory):
    """A small cycle of the customers above, issued once for the module (no notices sent, so
    the SMS outbox starts empty): (home, source folder)."""
    root = tmp_path_factory.mktemp("phone-api")
    folder = root / "source" / CYCLE
    folder.mkdir(parents=True)
    (folder / "cycle.json").write_text(
        json.dumps(
            {
                "cycle_id": CYCLE, "series": "PH", "period_start": "2026-10-01",
                "period_end": "2026-10-31", "issue_date": "2026-11-01",
                "due_date": "2026-11-21", "currency": "RON",
            }
        )
    )  # fmt: skip
    header = (
        "customer_id,name,tax_id,street,city,county,postal_code,country,phone,email,language,"
        "delivery,notify,paper_street,paper_city,paper_county,paper_postal_code"
    )
    rows = [
        f'{c},{name},,"{street}",{city},{county},{postal},{country},{phone},{email},ro,'
        f"electronic,{notify},,,,"
        for c, name, street, city, county, postal, country, phone, email, notify in CUSTOMERS
    ]
    (folder / "customers.csv").write_text("\n".join([header, *rows]) + "\n")
    charges = ["customer_id,description,quantity,unit_price,vat_rate,service_start,service_end"]
    charges += [f"{c[0]},Abonament Mobil,1,40.00,21,2026-10-01,2026-10-31" for c in CUSTOMERS]
    (folder / "charges.csv").write_text("\n".join(charges) + "\n")
    home = root / "home"
    settings = _settings(home, root / "source")
    report = pipeline.run_cycle(Runtime(settings), CYCLE, send_notices=False)
    assert report["invoices_issued"] == len(CUSTOMERS), report
    ledger._engines.pop(settings.ledger_url).dispose()  # checkpoints SQLite's log into the file
    return home, root / "source"


def _settings(home, source, **env) -> Settings:
    values = {
        "INVOICES_HOME": str(home),
        "INVOICES_SOURCE_URL": str(source),
        "INVOICES_PORTAL_API_SECRET": SECRET,
    }
    values.update({f"INVOICES_{k.upper()}": str(v) for k, v in env.items()})
    return Settings.from_env(values)


@pytest.fixture
def make_runtime(issued_home, tmp_path):
    """Runtimes over private copies of the issued home, with settings overridden."""
    made = []

    def make(**env) -> Runtime:
        home = tmp_path / f"home-{len(made)}"
        shutil.copytree(issued_home[0], home)
        runtime = Runtime(_settings(home, issued_home[1], **env))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        engine = ledger._engines.pop(runtime.settings.ledger_url, None)
        if engine is not None:
            engine.dispose()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def api(make_runtime, clock):
    return Api(make_runtime(), clock)


class Api:
    """A test client of the router in an app of its own, signing as a back end would."""

    def __init__(self, runtime: Runtime, clock: Clock) -> None:
        app = FastAPI()
        app.state.runtime = runtime
        app.state.clock = clock
        app.include_router(portal.api.router)
        self.runtime = runtime
        self.clock = clock
        self.client = TestClient(app)
        self.signatures: list[str] = []

    def signed(self, path: str, payload: dict, caller: str = "ivr", **changes):
        """(body, headers) of a call signed now; `changes` spoil it: timestamp=, key=,
        body= (sent instead of what was signed), headers= (merged)."""
        body = json.dumps(payload).encode()
        timestamp = str(changes.get("timestamp", int(self.clock().timestamp())))
        key = changes.get("key", caller_key(Keys(SECRET.encode()), caller))
        signature = sign(key, timestamp, "POST", path, body)
        self.signatures.append(signature)
        headers = {
            "Content-Type": "application/json",
            "X-Invoices-Caller": caller,
            "X-Invoices-Timestamp": timestamp,
            "X-Invoices-Signature": signature,
            **changes.get("headers", {}),
        }
        return changes.get("body", body), headers

    def post(self, path: str, payload: dict, caller: str = "ivr", **changes) -> httpx.Response:
        body, headers = self.signed(path, payload, caller, **changes)
        return self.client.post(path, content=body, headers=headers)

    def changes(self) -> list[dict]:
        with self.runtime.ledger.connect() as conn:
            rows = conn.execute(sa.select(preference_changes).order_by(preference_changes.c.id))
            return [dict(row._mapping) for row in rows]

    def standing(self, customer_id: str):
        with self.runtime.ledger.connect() as conn:
            return standing(conn, customer_id)

    def outbox(self) -> list[dict]:
        path = self.runtime.settings.home / "outbox" / "sms.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


# Preferences by phone number.


def test_a_signed_call_changes_the_preference_for_the_next_cycle(api):
    answer = api.post(PREFERENCES, {"request_id": "r-1", "phone": "0722 000 001", "notify": "sms"})

    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "request_id": "r-1",
        "customers": [
            {"customer_id": "C1", "changed": True, "delivery": "electronic", "notify": "sms",
             "paper_address": None}
        ],
    }  # fmt: skip
    assert "Idempotent-Replayed" not in answer.headers
    now = api.standing("C1")
    assert (now.preference.notify, now.pending_change) == ("sms", True)
    assert [(c["customer_id"], c["source"], c["notify"]) for c in api.changes()] == [
        ("C1", "ivr", "sms")
    ]


def test_a_retry_with_the_same_request_id_gets_the_kept_answer_and_changes_nothing(api):
    payload = {"request_id": "ussd-42", "phone": ANA, "delivery": "paper"}
    first = api.post(PREFERENCES, payload, caller="ussd")
    api.clock.advance(5)
    retry = api.post(PREFERENCES, dict(reversed(payload.items())), caller="ussd")  # re-signed

    assert first.status_code == retry.status_code == 200
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert first.json()["customers"][0]["paper_address"] == {
        "street": "Str. Lungă nr. 3", "city": "Iași", "county": "Iași", "postal_code": "700259",
    }  # fmt: skip
    assert len(api.changes()) == 1
    assert api.standing("C1").preference.delivery == "paper"


def test_the_same_request_id_for_another_change_is_refused(api):
    assert api.post(PREFERENCES, {"request_id": "x", "phone": ANA, "notify": "sms"}).is_success
    api.clock.advance(1)
    answer = api.post(PREFERENCES, {"request_id": "x", "phone": ANA, "notify": "both"})

    assert (answer.status_code, answer.json()) == (409, {"error": "request_id_reused"})
    assert [c["notify"] for c in api.changes()] == ["sms"]


def test_request_ids_are_kept_per_caller(api):
    payload = {"request_id": "same", "phone": ANA, "notify": "sms"}
    assert api.post(PREFERENCES, payload, caller="ivr").status_code == 200
    answer = api.post(PREFERENCES, {**payload, "notify": "both"}, caller="ussd")

    assert answer.status_code == 200
    assert "Idempotent-Replayed" not in answer.headers
    assert [(c["source"], c["notify"]) for c in api.changes()] == [("ivr", "sms"), ("ussd", "both")]


def test_paper_without_a_mailing_address_on_file_is_refused(api):
    answer = api.post(PREFERENCES, {"request_id": "p-1", "phone": MARCO, "delivery": "paper"})

    assert answer.status_code == 422
    assert answer.json() == {
        "error": "refused",
        "refusals": [
            {"field": "delivery", "reason": "no_mailing_address",
             "detail": "no mailing address on file", "customer_id": "C2"}
        ],
    }  # fmt: skip
    assert api.changes() == []
    assert api.standing("C2").preference.delivery == "electronic"


def test_a_shared_number_changes_every_customer_of_it(api):
    answer = api.post(PREFERENCES, {"request_id": "f-1", "phone": FAMILY, "delivery": "paper"})

    assert answer.status_code == 200, answer.text
    assert [(c["customer_id"], c["changed"]) for c in answer.json()["customers"]] == [
        ("C3", True),
        ("C4", True),
    ]
    assert {c["customer_id"] for c in api.changes()} == {"C3", "C4"}


def test_a_shared_number_changes_no_one_when_one_customer_is_refused(api):
    answer = api.post(PREFERENCES, {"request_id": "f-2", "phone": FAMILY, "notify": "email"})

    assert answer.status_code == 422
    assert [(r["customer_id"], r["reason"]) for r in answer.json()["refusals"]] == [
        ("C4", "no_email")
    ]
    assert api.changes() == []  # C3 could have had it: nothing is half done
    api.clock.advance(1)
    retry = api.post(PREFERENCES, {"request_id": "f-2", "phone": FAMILY, "notify": "email"})
    assert (retry.status_code, retry.json()) == (422, answer.json())
    assert retry.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize(
    ("payload", "status", "body"),
    [
        pytest.param(
            {"phone": "+40799999999", "notify": "sms"}, 404, {"error": "unknown_phone"},
            id="unknown-number",
        ),
        pytest.param(
            {"phone": "12345", "notify": "sms"}, 422,
            {"error": "refused", "refusals": [{"field": "phone", "reason": "invalid_phone",
             "detail": "a Romanian number: 07.., +407.. or 0040..", "customer_id": None}]},
            id="not-a-romanian-number",
        ),
        pytest.param(
            {"phone": ANA}, 422,
            {"error": "refused", "refusals": [{"field": "delivery", "reason": "nothing_to_change",
             "detail": "give delivery, notify or both", "customer_id": None}]},
            id="nothing-asked",
        ),
    ],
)  # fmt: skip
def test_a_call_that_changes_nothing_says_why(api, payload, status, body):
    answer = api.post(PREFERENCES, {"request_id": "n-1", **payload})

    assert (answer.status_code, answer.json()) == (status, body)
    assert api.changes() == []


@pytest.mark.parametrize(
    ("payload", "field", "reason"),
    [
        pytest.param({"delivery": "fax"}, "delivery", "invalid_value", id="unknown-choice"),
        pytest.param({"notify": "sms", "mood": "x"}, "mood", "unknown_field", id="unknown-field"),
        pytest.param({"notify": "sms", "request_id": ""}, "request_id", "invalid_value", id="empty-id"),
    ],
)  # fmt: skip
def test_a_body_off_the_schema_is_refused_without_echoing_it(api, payload, field, reason):
    answer = api.post(PREFERENCES, {"request_id": "s-1", "phone": ANA, **payload})

    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_request"
    assert (field, reason) in [(r["field"], r["reason"]) for r in answer.json()["refusals"]]
    assert ANA not in answer.text
    assert api.changes() == []


@pytest.mark.postgres
def test_two_racing_calls_with_one_request_id_change_once_on_postgresql(
    issued_home, pg_url, tmp_path, clock, monkeypatch
):
    runtime = Runtime(_settings(tmp_path / "home", issued_home[1], ledger_url=pg_url))
    pipeline.run_cycle(runtime, CYCLE, send_notices=False)
    api = Api(runtime, clock)
    # Both calls find the request id new before either records its answer.
    both_looked = threading.Barrier(2, timeout=20)
    owners = portal.api.customers_by_phone

    def looked_up(conn, phone):
        found = owners(conn, phone)
        both_looked.wait()
        return found

    monkeypatch.setattr(portal.api, "customers_by_phone", looked_up)
    payload = {"request_id": "race", "phone": ANA, "delivery": "paper"}
    calls = [
        api.signed(PREFERENCES, payload, timestamp=int(clock().timestamp()) - n) for n in (0, 1)
    ]
    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda call: api.client.post(PREFERENCES, content=call[0], headers=call[1]), calls
            )
        )

    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert sorted(a.headers.get("Idempotent-Replayed", "") for a in answers) == ["", "true"]
    assert len(api.changes()) == 1


# Signing: what is refused, and with what answer.


def _replayed(api, path, payload):
    body, headers = api.signed(path, payload)
    assert api.client.post(path, content=body, headers=headers).status_code == 200
    return body, headers


REFUSED_CALLS = [
    pytest.param(_replayed, id="replay-of-the-exact-request"),
    pytest.param(lambda api, path, p: api.signed(path, p, key=b"k" * 32), id="bad-signature"),
    pytest.param(
        lambda api, path, p: api.signed(path, p, caller="ivr", headers={"X-Invoices-Caller": "ussd"}),
        id="signed-by-another-caller",
    ),
    pytest.param(
        lambda api, path, p: api.signed(path, p, timestamp=int(api.clock().timestamp()) - 301),
        id="old-timestamp",
    ),
    pytest.param(
        lambda api, path, p: api.signed(path, p, timestamp=int(api.clock().timestamp()) + 301),
        id="future-timestamp",
    ),
    pytest.param(
        lambda api, path, p: api.signed(path, p, body=json.dumps({**p, "notify": "none"}).encode()),
        id="body-tampered-after-signing",
    ),
    pytest.param(
        lambda api, path, p: api.signed(path, p, headers={"X-Invoices-Signature": ""}),
        id="no-signature",
    ),
    pytest.param(
        lambda api, path, p: api.signed(path, p, headers={"X-Invoices-Caller": "web"}),
        id="unknown-caller",
    ),
    pytest.param(
        lambda api, path, p: api.signed("/api/v1/other", p), id="signed-for-another-path"
    ),
]  # fmt: skip


@pytest.mark.parametrize("spoil", REFUSED_CALLS)
def test_a_call_not_signed_as_required_is_refused_with_one_answer(api, spoil):
    payload = {"request_id": "sig-1", "phone": ANA, "notify": "sms"}
    body, headers = spoil(api, PREFERENCES, payload)
    changes_before = api.changes()

    answer = api.client.post(PREFERENCES, content=body, headers=headers)

    assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"})
    assert api.changes() == changes_before


def test_a_timestamp_within_five_minutes_either_way_is_accepted(api):
    now = int(api.clock().timestamp())
    for number, timestamp in enumerate((now - 300, now + 300)):
        payload = {"request_id": f"t-{number}", "phone": ANA, "notify": "sms"}
        assert api.post(PREFERENCES, payload, timestamp=timestamp).status_code == 200


def test_the_api_is_closed_without_a_secret(make_runtime, clock):
    api = Api(make_runtime(portal_api_secret=""), clock)

    answer = api.post(PREFERENCES, {"request_id": "c-1", "phone": ANA, "notify": "sms"})

    assert (answer.status_code, answer.json()) == (503, {"error": "api_closed"})


def test_a_body_too_large_is_refused_unread(api):
    payload = {"request_id": "big", "phone": ANA, "notify": "sms", "pad": "x" * 20000}

    answer = api.post(PREFERENCES, payload)

    assert (answer.status_code, answer.json()) == (413, {"error": "too_large"})


def test_signatures_are_remembered_long_enough_then_forgotten(api):
    engine, signature = api.runtime.ledger, "ab" * 32

    assert remember(engine, signature, START)
    assert not remember(engine, signature, START + timedelta(seconds=599))
    assert forget_old_signatures(engine, START + timedelta(seconds=600)) == 0
    assert forget_old_signatures(engine, START + timedelta(seconds=661)) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(api_signatures)).scalar() == 0


# Inbound SMS.


def _code_in(outbox_line: dict) -> str:
    (code,) = re.findall(r"\b\d{6}\b", outbox_line["text"])
    return code


def test_cod_by_sms_sends_one_code_that_opens_the_page(api):
    payload = {"request_id": "smsc-1", "from": ANA, "to": "1234", "text": "cod"}
    answer = api.post(SMS, payload, caller="sms")
    api.clock.advance(2)
    retry = api.post(SMS, payload, caller="sms")  # the gateway did not hear the first answer

    assert answer.status_code == 200
    assert answer.json() == {"request_id": "smsc-1", "action": "code", "customers": []}
    assert retry.json() == answer.json() and retry.headers["Idempotent-Replayed"] == "true"
    (line,) = api.outbox()
    assert line["recipient"] == ANA
    verdict = api.runtime.codes.verify_by_phone(ANA, _code_in(line), api.clock())
    assert verdict.check == Check.OK and verdict.phone == ANA


@pytest.mark.parametrize("sender", ["+40799999999", LANDLINE], ids=["no-customer", "landline"])
def test_cod_from_a_number_no_sms_can_serve_answers_the_same_and_sends_nothing(api, sender):
    answer = api.post(SMS, {"request_id": "q", "from": sender, "to": "1234", "text": "COD"}, "sms")

    assert (answer.status_code, answer.json()) == (
        200,
        {"request_id": "q", "action": "code", "customers": []},
    )
    assert api.outbox() == []


def test_cod_is_limited_per_number_like_the_page(make_runtime, clock):
    api = Api(make_runtime(codes_per_phone=2), clock)

    answers = [
        api.post(SMS, {"request_id": f"l-{n}", "from": ANA, "to": "1234", "text": "COD"}, "sms")
        for n in range(3)
    ]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json() == {"error": "rate_limited"}
    assert 0 < int(answers[2].headers["Retry-After"]) <= 3600
    assert len(api.outbox()) == 2


@pytest.mark.parametrize(
    ("text", "action", "delivery"),
    [
        pytest.param("Hârtie", "paper", "paper", id="hartie"),
        pytest.param("paper please", "paper", "paper", id="paper"),
        pytest.param("e-Factura", "electronic", "electronic", id="efactura"),
    ],
)
def test_a_keyword_by_sms_changes_delivery_with_source_sms(api, text, action, delivery):
    if delivery == "electronic":  # start from paper, so electronic is a change
        api.post(PREFERENCES, {"request_id": "pre", "phone": ANA, "delivery": "paper"})

    answer = api.post(SMS, {"request_id": "k-1", "from": ANA, "to": "1234", "text": text}, "sms")

    assert answer.status_code == 200, answer.text
    assert answer.json()["action"] == action
    assert answer.json()["customers"][0]["changed"] is True
    assert (api.changes()[-1]["source"], api.changes()[-1]["delivery"]) == ("sms", delivery)


def test_hartie_by_sms_without_a_mailing_address_is_refused(api):
    answer = api.post(
        SMS, {"request_id": "k-2", "from": MARCO, "to": "1234", "text": "HARTIE"}, "sms"
    )

    assert answer.status_code == 422
    assert answer.json()["refusals"][0]["reason"] == "no_mailing_address"
    assert api.changes() == []


def test_any_other_text_is_an_unknown_keyword_and_does_nothing(api):
    answer = api.post(SMS, {"request_id": "u", "from": ANA, "to": "1234", "text": "salut"}, "sms")

    assert (answer.status_code, answer.json()) == (
        200,
        {"request_id": "u", "action": "unknown_keyword", "customers": []},
    )
    assert api.changes() == [] and api.outbox() == []


@pytest.mark.parametrize(
    ("text", "keyword"),
    [("COD", "cod"), (" code\n", "code"), ("Hârtie!", "hartie"), ("HÂRTIE", "hartie"),
     ("e-Factura", "efactura"), ("ELECTRONIC acum", "electronic"), ("", ""), ("🙂", "")],
)  # fmt: skip
def test_the_keyword_is_the_first_word_folded(text, keyword):
    assert portal.api.keyword_of(text) == keyword


# What the logs hold.


def test_logs_hold_no_number_code_signature_or_secret(api, caplog):
    caplog.set_level(logging.DEBUG)
    api.post(SMS, {"request_id": "log-1", "from": "0722000001", "to": "1234", "text": "COD"}, "sms")
    (line,) = api.outbox()
    code = _code_in(line)
    assert api.runtime.codes.verify_by_phone(ANA, code, api.clock()).check == Check.OK
    api.post(PREFERENCES, {"request_id": "log-2", "phone": ANA, "delivery": "paper"})
    api.post(PREFERENCES, {"request_id": "log-3", "phone": MARCO, "delivery": "paper"})
    api.post(PREFERENCES, {"request_id": "log-4", "phone": ANA, "notify": "sms"}, key=b"k" * 32)

    logged = caplog.text
    assert "log-1" in logged and "log-3" in logged  # the outcomes are logged
    keys = Keys(SECRET.encode())
    secrets_ = [SECRET, *(caller_key(keys, c).hex() for c in ("ivr", "ussd", "sms"))]
    for number in (ANA, MARCO):
        secrets_ += [number, number[1:], "0" + number[3:], number[3:]]
    for leaked in [code, *api.signatures, *secrets_]:
        assert leaked not in logged


# The OpenAPI document.


def test_the_openapi_document_describes_both_paths_and_the_signing_headers(api):
    schema = api.client.get("/openapi.json").json()

    for path in (PREFERENCES, SMS):
        operation = schema["paths"][path]["post"]
        headers = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
        assert {"X-Invoices-Caller", "X-Invoices-Timestamp", "X-Invoices-Signature"} <= set(headers)
        assert all(h["required"] and h["description"] for h in headers.values())
        assert operation["security"] == [{"PhoneChannelSignature": []}]
        assert "Idempotent-Replayed" in operation["responses"]["200"]["headers"]
        assert {"401", "409", "422"} <= set(operation["responses"])
    scheme = schema["components"]["securitySchemes"]["PhoneChannelSignature"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == (
        "apiKey",
        "header",
        "X-Invoices-Signature",
    )
    assert "HMAC-SHA256" in scheme["description"]
    request = schema["components"]["schemas"]["PreferenceRequest"]
    assert request["properties"]["phone"]["description"] and request["examples"]
    assert "from" in schema["components"]["schemas"]["InboundSms"]["properties"]


# Served for real.


@pytest.mark.slow
def test_served_by_uvicorn_a_signed_call_changes_the_preference(make_runtime):
    runtime = make_runtime()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "dags")]),
        "INVOICES_HOME": str(runtime.settings.home),
        "INVOICES_SOURCE_URL": runtime.settings.source_url,
        "INVOICES_PORTAL_API_SECRET": SECRET,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.portal.api_app:create_app",
         "--fd", str(listener.fileno()), "--log-level", "warning"],
        cwd=REPO, env=env, pass_fds=(listener.fileno(),),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    listener.close()
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_served(base, server)
        body = json.dumps({"request_id": "served-1", "phone": ANA, "notify": "sms"}).encode()
        timestamp = str(int(time.time()))
        signature = sign(
            caller_key(Keys(SECRET.encode()), "ivr"), timestamp, "POST", PREFERENCES, body
        )
        headers = {
            "Content-Type": "application/json",
            "X-Invoices-Caller": "ivr",
            "X-Invoices-Timestamp": timestamp,
            "X-Invoices-Signature": signature,
        }

        answer = httpx.post(base + PREFERENCES, content=body, headers=headers, timeout=10)
        replay = httpx.post(base + PREFERENCES, content=body, headers=headers, timeout=10)
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()

    assert answer.status_code == 200, output
    assert answer.json()["customers"][0]["notify"] == "sms"
    assert replay.status_code == 401
    with runtime.ledger.connect() as conn:
        assert standing(conn, "C1").preference.notify == "sms"


def _wait_until_served(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"uvicorn exited: {server.communicate()[0].decode()}")
        try:
            if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    pytest.fail("uvicorn did not answer within 30 s")
