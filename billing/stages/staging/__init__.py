"""Staging a cycle export: read, validate, quarantine, and partition into chunks.

export.py   reading cycle.json, customers.* and charges.* (CSV or Parquet), row by row
spill.py    the bucketed spill files of the first passes, and the quarantine report
chunks.py   the staged cycle's format: staged.json and each chunk's Parquet files
stage.py    the stage itself (`stage_cycle`), streaming in bounded memory
"""

from billing.stages.staging.chunks import (
    StagedCycle,
    load_staged,
    read_chunk,
    read_chunk_customer_ids,
)
from billing.stages.staging.stage import quarantine_counts, stage_cycle

__all__ = [
    "StagedCycle",
    "load_staged",
    "quarantine_counts",
    "read_chunk",
    "read_chunk_customer_ids",
    "stage_cycle",
]
