"""`SnsTransport`: an SMS through AWS SNS `Publish` to a phone number (`INVOICES_SMS_TRANSPORT=sns`).

`CLIENT_CONFIG` is the one botocore policy of the SNS client (`billing.runtime` and the Airflow
connection both build the client with it). botocore's errors are mapped to results here.
"""

from __future__ import annotations

import re
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from billing.domain.errors import ConfigurationError
from billing.domain.notices import NoticeStatus
from notifiers.base import DeliveryResult, Outgoing
from notifiers.sms.base import mask_phone

SENDER_ID_VARIABLE = "INVOICES_SMS_SENDER_ID"  # named in the error for a bad sender id
SMS_TYPES = ("Transactional", "Promotional")

# botocore retries throttling and 5xx a few times itself; what is left becomes failed-retryable.
CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=15
)

_SENDER_ID = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9]{1,11}")
# Errors that blame the message itself (for a phone number: one SNS cannot deliver to).
_INVALID_MESSAGE = frozenset(
    {"InvalidParameter", "InvalidParameterValue", "InvalidParameterException", "ValidationError"}
)


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
            status = (
                NoticeStatus.FAILED_PERMANENT
                if code in _INVALID_MESSAGE
                else NoticeStatus.FAILED_RETRYABLE
            )
            reason = _hide(f"{code}: {error.get('Message', '')}", message.recipient)
            return DeliveryResult(message.key, status, error=reason)
        except ParamValidationError as exc:
            reason = _hide(f"ParamValidationError: {exc}", message.recipient)
            return DeliveryResult(message.key, NoticeStatus.FAILED_PERMANENT, error=reason)
        except BotoCoreError as exc:
            # Connection refused or lost, timeouts, missing credentials: nothing says the
            # message itself is at fault.
            reason = _hide(f"{type(exc).__name__}: {exc}", message.recipient)
            return DeliveryResult(message.key, NoticeStatus.FAILED_RETRYABLE, error=reason)
        return DeliveryResult(
            message.key, NoticeStatus.SENT, provider_message_id=response["MessageId"]
        )


def _hide(text: str, recipient: str) -> str:
    """`text` with the recipient's number (with or without its '+') masked."""
    for form in (recipient, recipient.removeprefix("+")):
        if len(form) >= 6:  # shorter is no phone number, and would mask unrelated digits
            text = text.replace(form, mask_phone(recipient))
    return text
