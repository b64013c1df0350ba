"""The SMS channel: the notice text, SNS through moto's server, the file outbox, the pacing."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.config import Config

from billing.domain.errors import ConfigurationError
from billing.domain.gsm import segments
from billing.runtime import Runtime
from notifiers.base import DeliveryResult, Outgoing
from notifiers.sms import FileTransport, SmsNotifier, SnsTransport, mask_phone
from renderers.messages import render_sms
from tests.support.factory import customer, line, make_invoice

SUPPLIER = "Telecom Exemplu Ștefănești S.A."
ONE_SEGMENT = ("GSM-7", 1)


class FakeClock:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class RecordingTransport:
    """Accepts everything and notes when each message was handed over."""

    def __init__(self, clock=lambda: 0.0) -> None:
        self.clock = clock
        self.sent: list[Outgoing] = []
        self.times: list[float] = []

    def send(self, message: Outgoing) -> DeliveryResult:
        self.sent.append(message)
        self.times.append(self.clock())
        return DeliveryResult(message.key, "sent", provider_message_id=f"m{len(self.sent)}")


def sms(key: str = "OR00000001:sms", phone: str = "+40722000456", text: str = "") -> Outgoing:
    return Outgoing(key=key, recipient=phone, subject="", text=text or f"Factura {key}")


def unique_phones(count: int) -> list[str]:
    """Numbers no other test of the session publishes to (moto's server is shared)."""
    base = uuid.uuid4().int % 10**6
    return [f"+407{index:02d}{base:06d}" for index in range(count)]


def published_attributes(body: str | bytes) -> dict[str, str]:
    query = parse_qs(body.decode() if isinstance(body, bytes) else body)
    attributes = {}
    for index in range(1, 10):
        name = query.get(f"MessageAttributes.entry.{index}.Name")
        if name:
            value = query[f"MessageAttributes.entry.{index}.Value.StringValue"]
            attributes[name[0]] = value[0]
    return attributes


@pytest.fixture
def sns(aws_env):
    """A boto3 SNS client on moto's server and the MessageAttributes of every Publish it sends
    (moto keeps the number and text of an SMS, not its attributes)."""
    client = boto3.client("sns")
    published: list[dict[str, str]] = []

    def capture(request, **_):
        published.append(published_attributes(request.body))

    client.meta.events.register("before-send.sns.Publish", capture)
    return client, published


def moto_sms(endpoint: str, message_ids) -> dict[str, dict]:
    """What moto's server recorded for these message ids: {id: {phone_number, message}}."""
    with urllib.request.urlopen(f"{endpoint}/moto-api/data.json") as response:
        recorded = json.load(response)["sns"]["SMS"]
    return {item["message_id"]: item for item in recorded if item["message_id"] in message_ids}


@pytest.fixture
def sns_error():
    """A real HTTP endpoint answering every SNS call with the error set in `reply`."""
    reply = {"status": 500, "code": "InternalError", "message": "Internal failure"}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = (
                '<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error>'
                f"<Type>Sender</Type><Code>{reply['code']}</Code>"
                f"<Message>{reply['message']}</Message></Error>"
                "<RequestId>7a62c49f</RequestId></ErrorResponse>"
            ).encode()
            self.send_response(reply["status"])
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", reply
    server.shutdown()
    server.server_close()


def sns_client(endpoint: str):
    return boto3.client(
        "sns",
        endpoint_url=endpoint,
        region_name="eu-central-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )


# --- SNS through moto's server -------------------------------------------------------------


def test_one_transactional_single_segment_sms_per_sms_customer(sns, aws_env):
    client, published = sns
    phones = unique_phones(6)
    prefs = ["sms", "both", "email", "none", "sms", "both"]
    invoices = [
        make_invoice(
            [line("Abonament Mobil", price=f"{10 + index}.99")],
            number=f"OR{index + 1:08d}",
            customer=customer(
                customer_id=f"C{index:07d}",
                name=f"Ștefănescu Țurcanu {index}",
                phone=phone,
                notify=notify,
                language=("ro", "en")[index % 2],
            ),
        )
        for index, (phone, notify) in enumerate(zip(phones, prefs, strict=True))
    ]
    messages = [
        Outgoing(
            key=f"{invoice.number}:sms",
            recipient=invoice.customer.phone,
            subject="",
            text=render_sms(invoice, SUPPLIER),
        )
        for invoice in invoices
        if invoice.customer.notify in ("sms", "both")
    ]
    clock = FakeClock()
    notifier = SmsNotifier(SnsTransport(client), 10.0, clock=clock, sleep=clock.sleep)

    results = notifier.send(messages)

    assert [r.status for r in results] == ["sent"] * 4
    recorded = moto_sms(aws_env, {r.provider_message_id for r in results})
    assert len(recorded) == 4
    by_phone = {item["phone_number"]: item["message"] for item in recorded.values()}
    assert by_phone == {m.recipient: m.text for m in messages}
    assert set(by_phone) == {phones[0], phones[1], phones[4], phones[5]}
    assert all(segments(text) == ONE_SEGMENT for text in by_phone.values())
    assert published == [{"AWS.SNS.SMS.SMSType": "Transactional"}] * 4


def test_a_phone_number_sns_rejects_is_a_permanent_failure(sns):
    client, _ = sns

    result = SnsTransport(client).send(sms(phone="0722000456"))

    assert result.status == "failed-permanent"
    assert result.error.startswith("InvalidParameter")
    assert not result.provider_message_id


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        pytest.param(400, "Throttling", "failed-retryable", id="throttling"),
        pytest.param(500, "InternalError", "failed-retryable", id="internal-error"),
        pytest.param(503, "ServiceUnavailable", "failed-retryable", id="unavailable"),
        pytest.param(403, "AuthorizationError", "failed-retryable", id="not-the-message-fault"),
        pytest.param(400, "InvalidParameter", "failed-permanent", id="invalid-parameter"),
        pytest.param(400, "InvalidParameterValue", "failed-permanent", id="invalid-value"),
    ],
)
def test_sns_errors_are_retryable_unless_the_message_is_at_fault(sns_error, status, code, expected):
    endpoint, reply = sns_error
    phone = "+40722000456"
    reply.update(status=status, code=code, message=f"Reason: {phone} (40722000456) said no")

    result = SnsTransport(sns_client(endpoint)).send(sms(phone=phone))

    assert result.status == expected
    assert result.error == f"{code}: Reason: +40******456 (+40******456) said no"


def test_an_unreachable_endpoint_is_retryable():
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]

    result = SnsTransport(sns_client(f"http://127.0.0.1:{port}")).send(sms())

    assert result.status == "failed-retryable"
    assert result.error.startswith("EndpointConnectionError")


def test_runtime_sns_takes_boto3_settings_sender_and_rate(settings_for, aws_env):
    notifier = Runtime(
        settings_for(sms_transport="sns", sms_sender_id="TelecomEx", sms_rate="2.5")
    ).sms
    published = []
    notifier.transport.client.meta.events.register(
        "before-send.sns.Publish", lambda request, **_: published.append(request.body)
    )
    phone = unique_phones(1)[0]

    [result] = notifier.send([sms(phone=phone, text="Telecom Exemplu: factura OR00000001")])

    assert result.status == "sent"
    assert notifier.rate_per_second == 2.5
    assert moto_sms(aws_env, {result.provider_message_id})[result.provider_message_id] == {
        "message_id": result.provider_message_id,
        "phone_number": phone,
        "message": "Telecom Exemplu: factura OR00000001",
    }
    assert published_attributes(published[0]) == {
        "AWS.SNS.SMS.SMSType": "Transactional",
        "AWS.SNS.SMS.SenderID": "TelecomEx",
    }


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"INVOICES_SMS_RATE": "fast"}, id="rate-not-a-number"),
        pytest.param({"INVOICES_SMS_RATE": "0"}, id="rate-zero"),
        pytest.param({"INVOICES_SMS_SENDER_ID": "Telecom Exemplu"}, id="sender-id-not-alnum"),
        pytest.param({"INVOICES_SMS_SENDER_ID": "TelecomExemplu"}, id="sender-id-over-11"),
    ],
)
def test_runtime_refuses_bad_sms_settings(settings_for, aws_env, env):
    overrides = {name.removeprefix("INVOICES_").lower(): value for name, value in env.items()}
    with pytest.raises(ConfigurationError, match="INVOICES_SMS_"):
        _ = Runtime(settings_for(sms_transport="sns", **overrides)).sms


# --- what the notifier refuses, and how fast it sends ----------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        pytest.param(sms(phone="0722000456"), "E.164", id="national-format"),
        pytest.param(sms(phone="+40 722 000 456"), "E.164", id="spaces"),
        pytest.param(sms(phone="+4072200"), "E.164", id="seven-digits"),
        pytest.param(sms(phone="+4072200045612345"), "E.164", id="sixteen-digits"),
        pytest.param(sms(phone="+0722000456"), "E.164", id="leading-zero"),
        pytest.param(sms(phone="+４０７２２０００４５６"), "E.164", id="fullwidth-digits"),
        pytest.param(sms(phone=""), "E.164", id="no-phone"),
        pytest.param(sms(text="Plătiți factura"), "UCS-2", id="diacritics"),
        pytest.param(sms(text="a" * 161), "2 segments", id="two-segments"),
        pytest.param(sms(text="€" * 81), "2 segments", id="extension-chars-count-double"),
        pytest.param(Outgoing("k", "+40722000456", "", ""), "empty", id="empty-text"),
    ],
)
def test_the_notifier_refuses_without_sending(message, reason):
    transport = RecordingTransport()

    [result] = SmsNotifier(transport).send([message])

    assert result.status == "failed-permanent"
    assert reason in result.error
    assert transport.sent == []


def test_one_result_per_key_in_order():
    transport = RecordingTransport()
    messages = [sms("a"), sms("b", phone="0722"), sms("a"), sms("c")]

    results = SmsNotifier(transport, float("inf")).send(messages)

    assert [(r.key, r.status) for r in results] == [
        ("a", "sent"),
        ("b", "failed-permanent"),
        ("c", "sent"),
    ]
    assert [m.key for m in transport.sent] == ["a", "c"]


@pytest.mark.parametrize("batches", [[20], [10, 10], [7, 6, 7]], ids=lambda b: f"batches-{b}")
def test_twenty_messages_at_ten_per_second_take_at_least_1_9_seconds(batches):
    clock = FakeClock()
    transport = RecordingTransport(clock)
    notifier = SmsNotifier(transport, 10.0, clock=clock, sleep=clock.sleep)
    keys = iter(range(20))

    for size in batches:
        notifier.send([sms(f"k{next(keys)}") for _ in range(size)])

    assert len(transport.times) == 20
    assert transport.times[-1] - transport.times[0] >= 1.9 - 1e-9
    gaps = [b - a for a, b in zip(transport.times, transport.times[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9


def test_a_pause_saves_up_no_burst():
    clock = FakeClock()
    transport = RecordingTransport(clock)
    notifier = SmsNotifier(transport, 10.0, clock=clock, sleep=clock.sleep)

    notifier.send([sms("a")])
    clock.sleep(60)
    notifier.send([sms(f"b{i}") for i in range(3)])

    assert transport.times == pytest.approx([100.0, 160.0, 160.1, 160.2])


# --- the file outbox ------------------------------------------------------------------------


def test_file_transport_writes_each_key_once_across_runs(settings_for):
    settings = settings_for()
    first = [sms(f"OR0000000{i}:sms", phone=f"+4072200045{i}") for i in range(1, 4)]
    second = [*first, sms("OR00000004:sms", phone="+40722000454")]

    results_1 = Runtime(settings).sms.send(first)
    results_2 = Runtime(settings).sms.send(second)

    assert [r.status for r in results_1 + results_2] == ["sent"] * 7
    assert [r.provider_message_id for r in results_2[:3]] == [
        r.provider_message_id for r in results_1
    ]
    lines = (settings.home / "outbox" / "sms.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "key": m.key,
            "recipient": m.recipient,
            "text": m.text,
            "encoding": "GSM-7",
            "segments": 1,
        }
        for m in second
    ]


def test_file_transport_ends_a_line_cut_short(tmp_path):
    path = tmp_path / "sms.jsonl"
    path.write_text('{"key": "a", "recipient": "+40722000456", "te', encoding="utf-8")

    result = FileTransport(path).send(sms("b"))

    assert result.status == "sent"
    records = path.read_text(encoding="utf-8").splitlines()
    assert len(records) == 2
    assert json.loads(records[1])["key"] == "b"


def test_file_transport_notices_a_cleared_outbox(tmp_path):
    path = tmp_path / "outbox" / "sms.jsonl"
    transport = FileTransport(path)
    transport.send(sms("a"))

    path.unlink()
    transport.send(sms("a"))

    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a"]


# --- privacy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "masked"),
    [
        pytest.param("+40722000456", "+40******456", id="romanian-mobile"),
        pytest.param("+4930123456", "+49*****456", id="german"),
        pytest.param("0722", "****", id="too-short"),
        pytest.param("call me", "*******", id="not-a-number"),
    ],
)
def test_mask_phone(number, masked):
    assert mask_phone(number) == masked


def test_logs_never_show_phone_numbers_or_texts(sns, sns_error, caplog):
    client, _ = sns
    endpoint, reply = sns_error
    reply.update(status=400, code="InvalidParameter", message="+40722000999 is not valid")
    phone = unique_phones(1)[0]
    secret = "Telecom Exemplu: factura OR00000777 de 12,10 lei"
    caplog.set_level(logging.DEBUG, logger="notifiers")

    SmsNotifier(SnsTransport(client)).send([sms("ok", phone=phone, text=secret)])
    SmsNotifier(SnsTransport(sns_client(endpoint))).send(
        [sms("bad", phone="+40722000999", text=secret), sms("refused", phone="0722000456")]
    )

    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("notifiers"))
    assert f"+{phone[1:3]}******{phone[-3:]}" in logged
    assert "+40******999" in logged
    for private in (phone, phone[1:], "40722000999", "0722000456", secret, "OR00000777"):
        assert private not in logged
