"""Stage timings in the ledger: each part of a stage records when it ran and how much it did;
the run report reads them back as one span per stage (first start to last end)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from billing.domain.moments import as_utc
from storage.ledger import stage_timings


@dataclass(frozen=True)
class StageSpan:
    stage: str
    started_at: datetime
    finished_at: datetime
    items: int
    parts: int
    busy_seconds: float  # the parts' own durations added up (more than the span when parallel)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def record_timing(
    engine: Engine, run_id: str, stage: str, part: int,
    started_at: datetime, finished_at: datetime, items: int,
) -> None:  # fmt: skip
    """Record one part of a stage; a retried part replaces the row of its earlier attempt."""
    key = sa.and_(
        stage_timings.c.run_id == run_id,
        stage_timings.c.stage == stage,
        stage_timings.c.part == part,
    )
    with engine.begin() as conn:
        conn.execute(stage_timings.delete().where(key))
        conn.execute(
            stage_timings.insert().values(
                run_id=run_id, stage=stage, part=part, started_at=started_at,
                finished_at=finished_at, items=items,
            )
        )  # fmt: skip


def stage_spans(engine: Engine, run_id: str) -> list[StageSpan]:
    """Each stage of the run, in the order the stages started."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(stage_timings).where(stage_timings.c.run_id == run_id)).all()
    by_stage: dict[str, list] = {}
    for row in rows:
        by_stage.setdefault(row.stage, []).append(row)
    spans = []
    for stage, parts in by_stage.items():
        started = [as_utc(p.started_at) for p in parts]
        finished = [as_utc(p.finished_at) for p in parts]
        spans.append(
            StageSpan(
                stage, min(started), max(finished), sum(p.items for p in parts), len(parts),
                sum((f - s).total_seconds() for s, f in zip(started, finished, strict=True)),
            )
        )  # fmt: skip
    return sorted(spans, key=lambda span: span.started_at)
