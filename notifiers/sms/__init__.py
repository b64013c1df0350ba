"""The SMS channel: a paced notifier in front of a transport (AWS SNS or a local file).

    pacing.py   SmsNotifier: refuses what must never be sent, paces the rest (token bucket)
    sns.py      SnsTransport: AWS SNS `Publish`; CLIENT_CONFIG, the SNS client's botocore policy
    file.py     FileTransport: one JSON line per message in the outbox file
    base.py     the SmsTransport protocol; mask_phone for logs

The text itself is `renderers.messages.render_sms`; which transport a process uses is chosen in
one place, `billing.runtime.Runtime.sms`.
"""

from notifiers.sms.base import SmsTransport, mask_phone
from notifiers.sms.file import FileTransport
from notifiers.sms.pacing import DEFAULT_RATE, SmsNotifier
from notifiers.sms.sns import CLIENT_CONFIG, SMS_TYPES, SnsTransport

__all__ = [
    "CLIENT_CONFIG",
    "DEFAULT_RATE",
    "SMS_TYPES",
    "FileTransport",
    "SmsNotifier",
    "SmsTransport",
    "SnsTransport",
    "mask_phone",
]
