"""The e-mail channel: invoice notices over SMTP, or as `.eml` files in the embedded setup.

    message.py    the MIME message (build_message, message_id, address and header checks)
    smtp.py       EmailNotifier: a pool of SMTP connections, retries, error classification
    eml_file.py   EmlFileNotifier: one `.eml` file per notice

Which one a process uses is chosen in one place, `billing.runtime.Runtime.email`.
"""

from notifiers.email.eml_file import EmlFileNotifier
from notifiers.email.message import build_message, message_id
from notifiers.email.smtp import TLS_MODES, EmailNotifier

__all__ = ["TLS_MODES", "EmailNotifier", "EmlFileNotifier", "build_message", "message_id"]
