"""Airflow's own database on the embedded setup (SQLite under `$AIRFLOW_HOME`), made fit for
the several processes of `make airflow`.

The scheduler, DAG processor, triggerer, API server and the CLI all write to one SQLite file.
With SQLite's defaults (a rollback journal, a 5 s busy timeout) a CLI write such as
`airflow backfill create --reprocess-behavior completed`, which clears a finished run, fails
with "database is locked" whenever the scheduler holds the write lock a little longer on a busy
machine. So:

- `CONNECT_ARGS` gives every connection a 60 s busy timeout; the Makefile points Airflow's
  `[database] sql_alchemy_connect_args` (and `_async`) here when its database is SQLite;
- `python -m billing.airflow_db` (run by `make airflow-db` after `airflow db migrate`)
  switches the file to write-ahead logging, so readers no longer block the writer. The mode is
  kept in the file.

Production runs Airflow on PostgreSQL, where none of this applies.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

CONNECT_ARGS = {"timeout": 60}


def database_file(env: dict[str, str] | None = None) -> Path | None:
    """The SQLite file of Airflow's database, or None when Airflow uses another database."""
    env = dict(os.environ) if env is None else env
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "").strip()
    if not url:
        home = env.get("AIRFLOW_HOME", "").strip() or str(Path.home() / "airflow")
        return Path(home) / "airflow.db"
    if url.startswith("sqlite:///") and url != "sqlite:///":
        return Path(url.removeprefix("sqlite:///").split("?", 1)[0])
    return None


def use_write_ahead_log(path: Path) -> str:
    """Switch the SQLite file at `path` to WAL; returns the journal mode it now has."""
    with sqlite3.connect(path, timeout=CONNECT_ARGS["timeout"]) as conn:
        return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]


def main() -> int:
    path = database_file()
    if path is None or not path.exists():
        return 0
    mode = use_write_ahead_log(path)
    if mode.lower() != "wal":
        print(f"{path}: journal mode stays {mode!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
