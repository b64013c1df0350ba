"""Settings (contract 3): every malformed variable is refused once, at the edge, by name."""

from __future__ import annotations

import pytest

from billing.config import Settings
from billing.domain.errors import ConfigurationError


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("INVOICES_SMTP_TLS", "tls1.3", id="smtp-tls"),
        pytest.param("INVOICES_SMS_TRANSPORT", "pigeon", id="sms-transport"),
        pytest.param("INVOICES_SMS_RATE", "fast", id="sms-rate"),
        pytest.param("INVOICES_ARCHIVE_LOCK_MODE", "forever", id="lock-mode"),
        pytest.param("INVOICES_ARCHIVE_RETENTION_YEARS", "0", id="retention"),
        pytest.param("INVOICES_PRINT_BATCH_SIZE", "0", id="print-batch-size"),
        pytest.param("INVOICES_BILL_CYCLE_DAYS", "1,31", id="bill-day"),
        pytest.param("INVOICES_MAIL_LINK_URL", "javascript:alert(1)", id="link-not-http"),
        pytest.param("INVOICES_MAIL_LINK_URL", "facturi.example.ro", id="link-no-scheme"),
    ],
)
def test_a_malformed_setting_is_refused_by_name(variable, value, tmp_path):
    with pytest.raises(ConfigurationError, match=variable):
        Settings.from_env({"INVOICES_HOME": str(tmp_path), variable: value})


def test_the_values_backends_used_to_read_themselves_come_from_the_settings(tmp_path):
    settings = Settings.from_env({
        "INVOICES_HOME": str(tmp_path),
        "INVOICES_SMS_SENDER_ID": "TelecomEx",
        "INVOICES_SMS_RATE": "2.5",
        "INVOICES_ARCHIVE_LOCK_MODE": "governance",
        "INVOICES_BILL_CYCLE_DAYS": "15, 1",
        "INVOICES_MAIL_LINK_URL": "https://cont.example.ro/facturi",
    })  # fmt: skip
    assert (settings.sms_sender_id, settings.sms_rate) == ("TelecomEx", 2.5)
    assert settings.archive_lock_mode == "GOVERNANCE"
    assert settings.bill_cycle_days == (1, 15)
    assert settings.mail_link_url == "https://cont.example.ro/facturi"
