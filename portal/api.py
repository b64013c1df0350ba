"""The phone channels' API: the 411 line, the *100# menu and the SMS short number change a
customer's invoice preferences, and a customer texting COD gets a one-time code, through the same
services as the page (billing.accounts). `docs/phone-api.md` is the guide for the teams calling it;
`/openapi.json` describes it.

    POST /api/v1/preferences    delivery and/or notices of the customers of a phone number
    POST /api/v1/sms/inbound    a text the short number received: COD, HARTIE, ELECTRONIC

Every call is signed (portal.signing) and carries a `request_id`: the first answer to a
caller's request id is kept (portal.idempotency) and given again to every retry. The router
reads its resources from the app: `app.state.runtime` (billing.runtime.Runtime) and
`app.state.clock` (a zero-argument callable giving an aware UTC datetime).

Logs name the caller, the request id and the outcome; never a phone number, a code, a
signature or the secret.
"""

from __future__ import annotations

import logging
import traceback
import unicodedata
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from billing.accounts.preferences import change_preference
from billing.domain.phones import normalize_ro_phone
from billing.domain.preferences import Preference
from billing.domain.validation import DELIVERIES, NOTIFY_CHOICES
from billing.runtime import Runtime
from portal.idempotency import Answer, answer_once, claim, replayed, request_digest
from portal.limits import allow_code_request, code_requests_per_phone, seconds_left
from portal.signing import (
    CALLER_HEADER,
    CALLERS,
    MAX_SKEW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Unsigned,
    remember,
    verify,
)
from storage.customers import customers_by_phone

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
REPLAYED_HEADER = "Idempotent-Replayed"

# The first word of an inbound text, folded (case, diacritics, punctuation), and what it asks.
KEYWORDS = {
    "cod": "code",
    "code": "code",
    "hartie": "paper",
    "paper": "paper",
    "electronic": "electronic",
    "efactura": "electronic",
}

# Request and answer bodies (the OpenAPI document is made from these).

RequestId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^[!-~]+$",
        description="The caller's id of this request (1-100 printable ASCII characters, no "
        "spaces). A retry with the same id and body gets the first answer again and changes "
        "nothing; the same id with another body is refused (409).",
        examples=["ivr-2026-12-02-000123"],
    ),
]


class PreferenceRequest(BaseModel):
    """Set how invoices reach the customers of a phone number."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"request_id": "ivr-7f3a9c", "phone": "0722 123 456", "delivery": "paper"}]
        },
    )

    request_id: RequestId
    phone: str = Field(
        max_length=32,
        description="The customer's Romanian number as the caller has it: 07.., +407.., "
        "0040.. (spaces, dots and dashes are ignored).",
        examples=["+40722123456"],
    )
    delivery: Literal[DELIVERIES] | None = Field(
        default=None,
        description="electronic or paper; omitted: unchanged. Paper goes to the mailing "
        "address on file (the paper address, else a Romanian billing address): without one "
        "the change is refused (no_mailing_address).",
    )
    notify: Literal[NOTIFY_CHOICES] | None = Field(
        default=None,
        description="How the customer hears of a new invoice; omitted: unchanged. e-mail or "
        "SMS needs a usable address or number on file (no_email, no_sms).",
    )


class InboundSms(BaseModel):
    """A text a customer sent to the short number, as the SMS gateway received it."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"request_id": "smsc-0001", "from": "+40722123456", "to": "1234", "text": "COD"}
            ]
        },
    )

    request_id: RequestId
    sender: str = Field(
        alias="from",
        max_length=32,
        description="The number that sent the text (E.164 or national form).",
        examples=["+40722123456"],
    )
    to: str = Field(
        max_length=20, description="The short number it was sent to.", examples=["1234"]
    )
    text: str = Field(
        max_length=1600,
        description="The text. Its first word, in any case and with or without diacritics, is "
        "the keyword: COD or CODE (send a one-time code for the page), HARTIE or PAPER (paper "
        "invoices), ELECTRONIC or EFACTURA (electronic invoices).",
        examples=["COD"],
    )


class MailingAddress(BaseModel):
    street: str
    city: str
    county: str
    postal_code: str


class CustomerPreference(BaseModel):
    customer_id: str = Field(examples=["C0000007"])
    changed: bool = Field(description="False when the preference asked for was already in force.")
    delivery: str = Field(examples=["paper"])
    notify: str = Field(examples=["sms"])
    paper_address: MailingAddress | None = Field(
        description="Where paper invoices go; null: the billing address."
    )


class PreferenceAnswer(BaseModel):
    """The preference now in force for each customer of the number, from the next cycle on."""

    request_id: str
    customers: list[CustomerPreference]


class SmsAnswer(BaseModel):
    """What the text asked for. `code`: the same answer whether or not the number is a
    customer's (only a customer's mobile number gets the SMS). `paper` and `electronic` answer
    as POST /api/v1/preferences would. The API sends no other reply: the gateway may answer
    the customer from `action`."""

    request_id: str
    action: Literal["code", "paper", "electronic", "unknown_keyword"]
    customers: list[CustomerPreference] = Field(
        default=[], description="For paper and electronic: as in POST /api/v1/preferences."
    )


class Refusal(BaseModel):
    field: str = Field(examples=["delivery"])
    reason: str = Field(
        description="A stable code: invalid_phone, nothing_to_change, no_mailing_address, "
        "no_email, no_sms, invalid_choice, missing, invalid_value, unknown_field, invalid_json.",
        examples=["no_mailing_address"],
    )
    detail: str = Field(default="", examples=["no mailing address on file"])
    customer_id: str | None = Field(
        default=None, description="The customer refused, when the number has several."
    )


class ErrorAnswer(BaseModel):
    error: str = Field(
        description="A stable code: unauthorized, api_closed, unknown_phone, "
        "request_id_reused, refused, invalid_request, rate_limited, too_large, internal_error.",
        examples=["unauthorized"],
    )
    refusals: list[Refusal] = Field(default=[], description="For refused and invalid_request.")


# Signing: every route of the router checks the call before FastAPI reads the body.


class SignedRoute(APIRoute):
    """A route that answers only signed, fresh, first-seen calls (portal.signing), checked on
    the raw body before anything parses it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def signed(request: Request) -> Response:
            runtime: Runtime = request.app.state.runtime
            keys = runtime.api_keys
            if keys is None:
                return _error(503, "api_closed")
            body = await _read_body(request)
            if body is None:
                return _error(413, "too_large")
            now = request.app.state.clock()
            headers = request.headers
            caller = headers.get(CALLER_HEADER)
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            try:
                call = verify(
                    keys, caller, headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER),
                    request.method, path, body, now,
                )  # fmt: skip
                if not await run_in_threadpool(remember, runtime.ledger, call.signature, now):
                    raise Unsigned("signature seen before (a replay)")
            except Unsigned as exc:
                shown = caller if caller in CALLERS else "?"
                log.warning("phone api %s refused: caller=%s %s", request.url.path, shown, exc)
                return _error(401, "unauthorized")
            request = Request(request.scope, _replaying(body, request.receive))
            request.state.caller = call.caller
            request.state.now = now
            try:
                return await handle(request)
            except RequestValidationError as exc:
                log.info("phone api %s: caller=%s invalid request", request.url.path, call.caller)
                return _invalid(exc)
            except HTTPException:
                raise
            except Exception as exc:
                # Logged without its message: a database error's text holds the statement's
                # parameters, a phone number among them. The frames say where it failed.
                log.error(
                    "phone api %s: caller=%s failed with %s\n%s",
                    request.url.path, call.caller, type(exc).__name__,
                    "".join(traceback.format_tb(exc.__traceback__)),
                )  # fmt: skip
                return _error(500, "internal_error")

        return signed


_SIGNING = (
    "HMAC-SHA256 (lowercase hex) over `timestamp \\n METHOD \\n path \\n sha256hex(body)`, keyed "
    "with the caller's key: HMAC-SHA256(INVOICES_PORTAL_API_SECRET, "
    '"invoices-portal:api-request:" + caller). See docs/phone-api.md.'
)
signature_scheme = APIKeyHeader(
    name=SIGNATURE_HEADER,
    scheme_name="PhoneChannelSignature",
    description=f"Every call is signed: {_SIGNING} Refused (401) when the timestamp is more "
    f"than {MAX_SKEW_SECONDS} s from the server's clock or the signature was seen before.",
    auto_error=False,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["phone channels"],
    route_class=SignedRoute,
    dependencies=[Depends(signature_scheme)],
)


def signed_caller(
    request: Request,
    caller: Annotated[
        Literal["ivr", "ussd", "sms"],
        Header(
            alias=CALLER_HEADER,
            description="The back end calling: ivr (the 411 line), ussd (the *100# menu) or "
            "sms (the short number's gateway). Recorded as the source of a change.",
        ),
    ],
    timestamp: Annotated[
        int,
        Header(
            alias=TIMESTAMP_HEADER,
            description=f"When the call was signed, in Unix seconds; at most "
            f"{MAX_SKEW_SECONDS} s from the server's clock.",
            examples=[1796227200],
        ),
    ],
    signature: Annotated[
        str, Header(alias=SIGNATURE_HEADER, description=_SIGNING, min_length=64, max_length=64)
    ],
) -> str:
    """The verified caller (SignedRoute checked the headers declared here for the docs)."""
    return request.state.caller


Caller = Annotated[str, Depends(signed_caller)]

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            REPLAYED_HEADER: {
                "description": "`true` when this is the kept answer to an earlier call with "
                "the same request id (nothing was done again).",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    },
    401: {"model": ErrorAnswer, "description": "Not signed, stale timestamp, or a replay."},
    409: {"model": ErrorAnswer, "description": "The request id was used for another body."},
    413: {"model": ErrorAnswer, "description": f"The body exceeds {MAX_BODY_BYTES} bytes."},
    422: {"model": ErrorAnswer, "description": "Refused (with the reasons) or malformed."},
    500: {"model": ErrorAnswer, "description": "Failed: retry with the same request id."},
    503: {"model": ErrorAnswer, "description": "The API is closed (no secret configured)."},
}


@router.post(
    "/preferences",
    response_model=PreferenceAnswer,
    summary="Set a customer's invoice delivery or notices by phone number",
    responses={**_ANSWERS, 404: {"model": ErrorAnswer, "description": "No customer has it."}},
)
def set_preference(body: PreferenceRequest, request: Request, caller: Caller) -> Response:
    """Every customer whose newest invoice carries the number gets the change, or none does:
    when one of them is refused, nothing changes and the answer lists the refusals. The change
    applies from the next cycle run."""
    runtime: Runtime = request.app.state.runtime
    now = request.state.now
    digest = request_digest("POST /api/v1/preferences", body.model_dump(mode="json"))

    def work(conn: Connection) -> Answer:
        phone = normalize_ro_phone(body.phone)
        if phone is None:
            return _refused(Refusal(field="phone", reason="invalid_phone", detail=_RO_PHONE))
        if body.delivery is None and body.notify is None:
            return _refused(Refusal(field="delivery", reason="nothing_to_change", detail=_NOTHING))
        found = _change(conn, runtime, phone, caller, now, body.delivery, body.notify)
        if isinstance(found, Answer):
            return found
        answer = PreferenceAnswer(request_id=body.request_id, customers=found)
        return Answer(200, answer.model_dump(mode="json"), outcome=_changes(found))

    answer = answer_once(runtime.ledger, caller, body.request_id, digest, now, work)
    return _respond("preferences", caller, body.request_id, answer)


@router.post(
    "/sms/inbound",
    response_model=SmsAnswer,
    summary="Act on a text a customer sent to the short number",
    responses={**_ANSWERS, 404: {"model": ErrorAnswer, "description": "HARTIE/ELECTRONIC "
                                 "from a number no customer has."},
               429: {"model": ErrorAnswer, "description": "COD: too many codes for this "
                     "number this hour (Retry-After: seconds). Not kept: retry later."}},
)  # fmt: skip
def receive_sms(body: InboundSms, request: Request, caller: Caller) -> Response:
    """COD sends the sender a one-time code by SMS, as the page does (the customer then types
    number and code on the page); HARTIE and ELECTRONIC change delivery with source `sms`;
    any other text answers `unknown_keyword` and does nothing."""
    runtime: Runtime = request.app.state.runtime
    now = request.state.now
    digest = request_digest("POST /api/v1/sms/inbound", body.model_dump(mode="json", by_alias=True))
    action = KEYWORDS.get(keyword_of(body.text), "unknown_keyword")
    phone = normalize_ro_phone(body.sender)
    ledger = runtime.ledger

    def simple(conn: Connection) -> Answer:
        if phone is None and action != "unknown_keyword":
            return _refused(Refusal(field="from", reason="invalid_phone", detail=_RO_PHONE))
        reply = SmsAnswer(request_id=body.request_id, action=action)
        return Answer(200, reply.model_dump(mode="json"), outcome=action)

    if action in ("paper", "electronic") and phone is not None:

        def work(conn: Connection) -> Answer:
            found = _change(conn, runtime, phone, "sms", now, delivery=action)
            if isinstance(found, Answer):
                return found
            reply = SmsAnswer(request_id=body.request_id, action=action, customers=found)
            return Answer(200, reply.model_dump(mode="json"), outcome=_changes(found))

        answer = answer_once(ledger, caller, body.request_id, digest, now, work)
    elif action == "code" and phone is not None:
        answer = _send_code(runtime, caller, body.request_id, digest, phone, now)
    else:
        answer = answer_once(ledger, caller, body.request_id, digest, now, simple)
    return _respond("sms/inbound", caller, body.request_id, answer)


def keyword_of(text: str) -> str:
    """The first word of `text`, case and diacritics folded, letters and digits only:
    "Hârtie!" -> "hartie", "e-Factura" -> "efactura"."""
    words = text.split()
    if not words:
        return ""
    folded = unicodedata.normalize("NFKD", words[0].casefold())
    return "".join(c for c in folded if c.isascii() and c.isalnum())


# The work behind the endpoints.

_RO_PHONE = "a Romanian number: 07.., +407.. or 0040.."
_NOTHING = "give delivery, notify or both"


def _change(
    conn: Connection,
    runtime: Runtime,
    phone: str,
    source: str,
    now: datetime,
    delivery: str | None = None,
    notify: str | None = None,
) -> list[CustomerPreference] | Answer:
    """Change every customer of `phone` in `conn`'s transaction, or none: a refusal of any one
    rolls back the others (the answer is then 422 with every refusal)."""
    customer_ids = customers_by_phone(conn, phone)
    if not customer_ids:
        return Answer(404, {"error": "unknown_phone"}, outcome="unknown_phone")
    savepoint = conn.begin_nested()
    done, refusals = [], []
    for customer_id in customer_ids:
        outcome = change_preference(
            runtime.ledger, customer_id, source, now, delivery, notify, conn=conn
        )
        if not outcome.ok:
            refusals += [
                Refusal(field=r.field, reason=r.reason, detail=r.detail, customer_id=customer_id)
                for r in outcome.refusals
            ]
        elif not refusals:
            done.append(_shown(customer_id, outcome.changed, outcome.preference))
    if refusals:
        savepoint.rollback()
        return _refused(*refusals)
    savepoint.commit()
    return done


def _send_code(
    runtime: Runtime, caller: str, request_id: str, digest: str, phone: str, now: datetime
) -> Answer:
    """COD: a code drawn and sent as the page would, at most once per request id (the request
    id is claimed first: a crash after the claim sends nothing, and the customer texts again)."""
    ledger = runtime.ledger
    kept = replayed(ledger, caller, request_id, digest)
    if kept is not None:
        return kept
    if not allow_code_request(runtime, phone, now):
        wait = seconds_left(code_requests_per_phone(runtime), now)
        return Answer(
            429,
            {"error": "rate_limited"},
            outcome="rate_limited",
            headers={"Retry-After": str(wait)},
        )
    reply = SmsAnswer(request_id=request_id, action="code").model_dump(mode="json")
    answer = Answer(200, reply, outcome="code")
    kept = claim(ledger, caller, request_id, digest, answer, now)
    if kept is not None:
        return kept
    code = runtime.codes.request(phone, "sms", now)
    if code.message is None:  # no customer's mobile number: the same answer, no SMS
        return Answer(200, reply, outcome="code, no sms")
    (result,) = runtime.sms.send([code.message])
    if not result.sent:
        log.warning("phone api: the code sms %s was not sent (%s)", code.message.key, result.status)
        return Answer(200, reply, outcome=f"code, sms {result.status}")
    return Answer(200, reply, outcome="code, sms sent")


def _shown(customer_id: str, changed: bool, preference: Preference) -> CustomerPreference:
    paper = preference.paper_address
    return CustomerPreference(
        customer_id=customer_id,
        changed=changed,
        delivery=preference.delivery,
        notify=preference.notify,
        paper_address=MailingAddress(
            street=paper.street, city=paper.city, county=paper.county,
            postal_code=paper.postal_code,
        ) if paper else None,
    )  # fmt: skip


def _changes(customers: list[CustomerPreference]) -> str:
    changed = sum(c.changed for c in customers)
    return f"{changed} of {len(customers)} customers changed"


def _refused(*refusals: Refusal) -> Answer:
    body = ErrorAnswer(error="refused", refusals=list(refusals)).model_dump(mode="json")
    return Answer(422, body, outcome="refused: " + ", ".join(r.reason for r in refusals))


# Answers.

_REASONS = {
    "missing": "missing",
    "json_invalid": "invalid_json",
    "extra_forbidden": "unknown_field",
}


def _invalid(exc: RequestValidationError) -> JSONResponse:
    """A body that does not match the schema, in the API's own shape; the values given are
    not echoed (they may hold a phone number)."""
    refusals = [
        Refusal(
            field=".".join(str(part) for part in error.get("loc", ())[1:]) or "body",
            reason=_REASONS.get(error.get("type", ""), "invalid_value"),
            detail=str(error.get("msg", "")),
        )
        for error in exc.errors()
    ]
    body = ErrorAnswer(error="invalid_request", refusals=refusals)
    return JSONResponse(body.model_dump(mode="json"), status_code=422)


def _error(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def _respond(endpoint: str, caller: str, request_id: str, answer: Answer) -> JSONResponse:
    log.info(
        "phone api %s: caller=%s request_id=%s status=%d %s%s",
        endpoint, caller, request_id, answer.status, answer.outcome,
        " (kept answer)" if answer.replayed else "",
    )  # fmt: skip
    headers = dict(answer.headers)
    if answer.replayed:
        headers[REPLAYED_HEADER] = "true"
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


async def _read_body(request: Request) -> bytes | None:
    """The raw body, or None when it exceeds MAX_BODY_BYTES (read no further than that)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _replaying(body: bytes, receive):
    """An ASGI receive that hands the route the body already read, then the connection's own
    messages (a disconnect)."""
    delivered = False

    async def replay():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
