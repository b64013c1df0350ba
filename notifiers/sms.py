"""The SMS channel: the notice text, the transports (AWS SNS or a local file) and a paced sender.

`render_sms` writes the one-segment notice (invoice number, amount, due date) in the customer's
language, transliterated to GSM-7. `SmsNotifier` refuses what it must never send (a recipient
that is not E.164, a text that is not one GSM-7 segment), paces the rest with a token bucket and
hands each message to its transport:

    SnsTransport    AWS SNS `Publish` to a phone number (`INVOICES_SMS_TRANSPORT=sns`)
    FileTransport   one JSON line per message in `$INVOICES_HOME/outbox/sms.jsonl` (the default)

A transport never raises for a message it could not deliver: throttling, 5xx answers and lost
connections are "failed-retryable"; a parameter SNS rejects (a phone number it cannot use) is
"failed-permanent". Phone numbers and texts never reach the log: numbers appear masked
("+40******456"), texts not at all.

SNS uses `settings.sns_client` when set (inside Airflow, `airflow_runtime.connections` builds it from
the AWS connection `INVOICES_AWS_CONN_ID` names), else boto3's own settings (`AWS_ENDPOINT_URL`,
`AWS_DEFAULT_REGION`, credentials). A `client` passed to `SmsNotifier.from_settings` wins over both.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from billing.config import Settings
from billing.domain.errors import ConfigurationError
from billing.domain.gsm import GSM7, SINGLE_GSM7, segments, septets, transliterate
from billing.domain.model import IssuedInvoice
from notifiers.delivery import (
    FAILED_PERMANENT,
    FAILED_RETRYABLE,
    SENT,
    DeliveryResult,
    Outgoing,
)
from renderers.formats import format_amount, format_date

log = logging.getLogger(__name__)

SENDER_ID_VARIABLE = "INVOICES_SMS_SENDER_ID"
RATE_VARIABLE = "INVOICES_SMS_RATE"
DEFAULT_SNS_RATE = 10.0
SMS_TYPES = ("Transactional", "Promotional")

# botocore retries throttling and 5xx a few times itself; what is left becomes failed-retryable.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=15
)

_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_SENDER_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}")
# Errors that blame the message itself (for a phone number: one SNS cannot deliver to).
_INVALID_MESSAGE = frozenset(
    {"InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "ValidationError"}
)

_TEMPLATES = {
    "ro": "{supplier}: factura {number} de {amount} lei, scadenta {due}. Detalii in contul tau.",
    "en": "{supplier}: invoice {number} of {amount} lei, due {due}. Details in your account.",
}


def render_sms(invoice: IssuedInvoice, supplier_name: str) -> str:
    """The notice of `invoice` in its customer's language (ro or en), e.g.
    "Telecom Exemplu: factura OR00000001 de 239,95 lei, scadenta 21.11.2026. Detalii in contul
    tau."

    The text is GSM-7 and fits one segment: a supplier name too long for it is shortened (at a
    word boundary when it can be); the invoice number, amount and due date are always whole.
    Raises ValueError for an unsupported language or currency, an empty supplier name, or when
    not even one character of the supplier name fits.
    """
    template = _TEMPLATES.get(invoice.customer.language)
    if template is None:
        raise ValueError(
            f"invoice {invoice.number}: customer language {invoice.customer.language!r} "
            "is not ro or en"
        )
    if invoice.currency != "RON":
        raise ValueError(
            f"invoice {invoice.number}: currency {invoice.currency!r} is not supported "
            "(amounts are written in lei)"
        )
    supplier = " ".join(transliterate(supplier_name).split())
    if not supplier:
        raise ValueError("the supplier name is empty")
    fields = {
        "number": transliterate(invoice.number),
        "amount": format_amount(invoice.total),
        "due": format_date(invoice.due_date),
    }
    room = SINGLE_GSM7 - septets(transliterate(template.format(supplier="", **fields)))
    supplier = _shorten(supplier, room)
    if not supplier:
        raise ValueError(
            f"invoice {invoice.number}: number, amount and due date leave no room for the "
            "supplier name in one SMS segment"
        )
    return transliterate(template.format(supplier=supplier, **fields))


def _shorten(name: str, room: int) -> str:
    if septets(name) <= room:
        return name
    used = end = 0
    while end < len(name) and used + septets(name[end]) <= room:
        used += septets(name[end])
        end += 1
    cut = name[:end]
    if name[end] != " " and " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-")


def mask_phone(number: str) -> str:
    """`number` as it may appear in a log: "+40722000456" -> "+40******456"; anything shorter
    than 8 digits (or not a phone number) is masked entirely."""
    digits = number.removeprefix("+")
    if not (digits.isascii() and digits.isdigit()) or len(digits) < 8:
        return "*" * len(number)
    return f"+{digits[:2]}{'*' * (len(digits) - 5)}{digits[-3:]}"


class SmsTransport(Protocol):
    """Hands one SMS to a provider; reports failures as results, never as exceptions."""

    def send(self, message: Outgoing) -> DeliveryResult: ...


class SnsTransport:
    """Sends through AWS SNS `Publish` to `message.recipient` (E.164).

    `client` is a ready boto3 SNS client (thread-safe). `sender_id` (1-11 letters and digits)
    is the alphanumeric sender shown where the destination country supports it; `sms_type` is
    "Transactional" (delivery optimised for reliability) or "Promotional".
    """

    def __init__(self, client: Any, sender_id: str = "", sms_type: str = "Transactional") -> None:
        if sms_type not in SMS_TYPES:
            raise ConfigurationError(f"the SMS type must be one of {SMS_TYPES}, not {sms_type!r}")
        if sender_id and not _SENDER_ID.fullmatch(sender_id):
            raise ConfigurationError(
                f"the SMS sender id ({SENDER_ID_VARIABLE}) must be 1-11 letters and digits "
                f"with at least one letter, not {sender_id!r}"
            )
        self.client = client
        self.attributes = {
            "AWS.SNS.SMS.SMSType": {"DataType": "String", "StringValue": sms_type},
        }
        if sender_id:
            self.attributes["AWS.SNS.SMS.SenderID"] = {
                "DataType": "String",
                "StringValue": sender_id,
            }

    def send(self, message: Outgoing) -> DeliveryResult:
        """Publish `message.text` to `message.recipient`; the result carries SNS's MessageId."""
        try:
            response = self.client.publish(
                PhoneNumber=message.recipient,
                Message=message.text,
                MessageAttributes=self.attributes,
            )
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "")) or "ClientError"
            status = FAILED_PERMANENT if code in _INVALID_MESSAGE else FAILED_RETRYABLE
            reason = _hide(f"{code}: {error.get('Message', '')}", message.recipient)
            return DeliveryResult(message.key, status, error=reason)
        except ParamValidationError as exc:
            reason = _hide(f"ParamValidationError: {exc}", message.recipient)
            return DeliveryResult(message.key, FAILED_PERMANENT, error=reason)
        except BotoCoreError as exc:
            # Connection refused or lost, timeouts, missing credentials: nothing says the
            # message itself is at fault.
            reason = _hide(f"{type(exc).__name__}: {exc}", message.recipient)
            return DeliveryResult(message.key, FAILED_RETRYABLE, error=reason)
        return DeliveryResult(message.key, SENT, provider_message_id=response["MessageId"])


def _hide(text: str, recipient: str) -> str:
    """`text` with the recipient's number (with or without its '+') masked."""
    for form in (recipient, recipient.removeprefix("+")):
        if len(form) >= 6:  # shorter is no phone number, and would mask unrelated digits
            text = text.replace(form, mask_phone(recipient))
    return text


class FileTransport:
    """Appends one JSON line per message to `path`: {"key", "recipient", "text", "encoding",
    "segments"}. A key already in the file counts as sent and is not written again, so re-runs
    (and several processes sharing the file) write each key once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._lines: dict[str, int] = {}  # key -> its line number in the file
        self._read_to = 0  # bytes of the file already read into _lines
        self._line_count = 0

    def send(self, message: Outgoing) -> DeliveryResult:
        """Write `message` unless its key is in the file; "failed-retryable" if the file cannot
        be written."""
        encoding, count = segments(message.text)
        record = {
            "key": message.key,
            "recipient": message.recipient,
            "text": message.text,
            "encoding": encoding,
            "segments": count,
        }
        try:
            with self._lock, self._locked() as file:
                self._read_new_lines(file)
                if message.key not in self._lines:
                    file.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
                    file.flush()
                    self._read_new_lines(file)
                line = self._lines[message.key]
        except OSError as exc:
            return DeliveryResult(message.key, FAILED_RETRYABLE, error=f"{self.path}: {exc}")
        return DeliveryResult(message.key, SENT, provider_message_id=f"{self.path.name}:{line}")

    @contextmanager
    def _locked(self) -> Iterator[IO[bytes]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as file:
            # Another process (a parallel Airflow task) may append to the same file.
            fcntl.flock(file, fcntl.LOCK_EX)
            try:
                yield file
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)

    def _read_new_lines(self, file: IO[bytes]) -> None:
        if os.fstat(file.fileno()).st_size < self._read_to:
            # The file was replaced or emptied (an outbox cleared by hand): forget what it held.
            self._lines.clear()
            self._read_to = self._line_count = 0
        file.seek(self._read_to)
        data = file.read()
        if data and not data.endswith(b"\n"):
            # A line cut short by a crash: end it so the next record starts on its own line.
            file.write(b"\n")
            file.flush()
            data += b"\n"
        for raw in data.split(b"\n")[:-1]:
            self._line_count += 1
            try:
                key = json.loads(raw)["key"]
            except (ValueError, KeyError, TypeError):
                log.warning("%s: line %d is not an SMS record", self.path, self._line_count)
                continue
            self._lines.setdefault(key, self._line_count)
        self._read_to += len(data)


class _TokenBucket:
    """`rate` tokens per second, at most `burst` saved up; `acquire` waits for one."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float], sleep: Callable[[float], None]
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.sleep = sleep
        self._tokens = float(burst)
        self._updated = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            # Take the token now, even on credit, so concurrent callers queue up in order.
            self._tokens -= 1
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)


class SmsNotifier:
    """Sends SMS notices through `transport`, at most `rate_per_second` (math.inf: no limit).

    The rate holds across calls and threads sharing the notifier; `burst` is how many messages
    may go at once after a pause (1: evenly spaced). `clock` (monotonic seconds) and `sleep` are
    injectable for tests.
    """

    def __init__(
        self,
        transport: SmsTransport,
        rate_per_second: float = DEFAULT_SNS_RATE,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate_per_second > 0:
            raise ConfigurationError(f"the SMS rate must be positive, not {rate_per_second!r}")
        if burst < 1:
            raise ConfigurationError(f"the SMS burst must be at least 1, not {burst!r}")
        self.transport = transport
        self.rate_per_second = rate_per_second
        self._bucket = (
            None
            if math.isinf(rate_per_second)
            else _TokenBucket(rate_per_second, burst, clock, sleep)
        )

    @classmethod
    def from_settings(cls, settings: Settings, client: Any = None) -> SmsNotifier:
        """The notifier `settings.sms_transport` selects.

        "sns": an `SnsTransport` on `client` (default: `settings.sns_client`, else a client built
        from boto3's own settings), with `settings.sms_sender_id` and `settings.sms_rate`
        (default 10 per second). "file": a `FileTransport` on `settings.home/outbox/sms.jsonl`,
        unpaced unless `settings.sms_rate` is set.
        """
        rate = settings.sms_rate
        if settings.sms_transport == "file":
            transport = FileTransport(settings.home / "outbox" / "sms.jsonl")
            return cls(transport, rate if rate is not None else math.inf)
        if settings.sms_transport == "sns":
            if client is None:
                client = settings.sns_client
            if client is None:
                import boto3

                client = boto3.session.Session().client("sns", config=CLIENT_CONFIG)
            transport = SnsTransport(client, sender_id=settings.sms_sender_id)
            return cls(transport, rate if rate is not None else DEFAULT_SNS_RATE)
        raise ConfigurationError(
            f"INVOICES_SMS_TRANSPORT must be file or sns, not {settings.sms_transport!r}"
        )

    def send(self, messages: Sequence[Outgoing]) -> list[DeliveryResult]:
        """One result per distinct key, in the order of `messages` (a repeated key is sent once).

        A recipient that is not E.164 (`+` and 8-15 digits) or a text that is not one GSM-7
        segment is refused without sending: "failed-permanent".
        """
        results: list[DeliveryResult] = []
        seen: set[str] = set()
        for message in messages:
            if message.key in seen:
                continue
            seen.add(message.key)
            problem = _refusal(message)
            if problem:
                result = DeliveryResult(message.key, FAILED_PERMANENT, error=problem)
            else:
                if self._bucket is not None:
                    self._bucket.acquire()
                result = self.transport.send(message)
            _log_result(message, result)
            results.append(result)
        return results


def _refusal(message: Outgoing) -> str:
    if not _E164.fullmatch(message.recipient):
        return "the recipient is not an E.164 phone number (+ and 8-15 digits)"
    if not message.text:
        return "the text is empty"
    encoding, count = segments(message.text)
    if (encoding, count) != (GSM7, 1):
        return f"the text is not one GSM-7 segment ({encoding}, {count} segments)"
    return ""


def _log_result(message: Outgoing, result: DeliveryResult) -> None:
    phone = mask_phone(message.recipient)
    if result.sent:
        log.debug("sms %s to %s sent (%s)", message.key, phone, result.provider_message_id)
    else:
        log.warning("sms %s to %s %s: %s", message.key, phone, result.status, result.error)


def _parse_rate(text: str) -> float:
    try:
        rate = float(text)
    except ValueError:
        raise ConfigurationError(
            f"{RATE_VARIABLE} must be a number of messages per second, not {text!r}"
        ) from None
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigurationError(f"{RATE_VARIABLE} must be positive, not {text!r}")
    return rate
