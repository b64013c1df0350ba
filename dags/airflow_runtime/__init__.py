"""What the DAG files share at run time, imported inside tasks only (never while parsing).

`task_runtime()` builds the task's `Runtime` once: settings from the environment (contract 3)
with S3/SNS and SMTP from the Airflow connections that INVOICES_AWS_CONN_ID and
INVOICES_SMTP_CONN_ID name. `fail_fast()` turns every error that retrying cannot mend (bad input,
bad configuration, a conflict with what is recorded, an invoice that cannot be rendered) into
Airflow's fail-now exception, so a task does not retry three times with backoff for nothing.

This folder is listed in `dags/.airflowignore`: the DAG processor never parses it, and Airflow
puts the DAG folder on `sys.path`, so the DAG files import it as `airflow_runtime`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

from billing.runtime import Runtime


@cache
def task_runtime() -> Runtime:
    """The resources of this task's process, built once."""
    from airflow_runtime.connections import settings_with_connections
    from billing.config import Settings

    return Runtime(settings_with_connections(Settings.from_env()))


@contextmanager
def fail_fast() -> Iterator[None]:
    """Fail the task at once, without retries, on a product error that is not retryable."""
    from airflow.sdk.exceptions import AirflowFailException

    from billing.domain.errors import InvoicePipelineError

    try:
        yield
    except InvoicePipelineError as exc:
        if exc.retryable:
            raise
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
