"""Regenerate the committed sample cycles: ``python -m sample_data.make_samples [FOLDER]``.

``2026-10`` is a clean cycle; ``2026-11`` (the newest) has the same customers, new charges and
the deliberately bad rows of ``sample_data.bad_rows``. Both are CSV, 300 customers, seed 7.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from sample_data.bad_rows import inject_bad_rows
from sample_data.generator import write_cycle

CYCLES_DIR = Path(__file__).resolve().parent / "cycles"
CUSTOMERS = 300
SEED = 7
SAMPLES = (("2026-10", False), ("2026-11", True))  # (cycle id, with bad rows)


def make_samples(root: Path = CYCLES_DIR) -> list[Path]:
    """Write the sample cycles under ``root``, replacing any previous ones; return their folders."""
    folders = []
    for cycle_id, with_bad_rows in SAMPLES:
        shutil.rmtree(Path(root) / cycle_id, ignore_errors=True)
        folder = write_cycle(Path(root), cycle_id, CUSTOMERS, seed=SEED)
        if with_bad_rows:
            inject_bad_rows(folder)
        folders.append(folder)
    return folders


def main(argv: list[str] | None = None) -> None:
    """Command line entry: regenerate the samples in the folder given, or the committed ones."""
    args = sys.argv[1:] if argv is None else argv
    for folder in make_samples(Path(args[0]) if args else CYCLES_DIR):
        print(folder)


if __name__ == "__main__":
    main()
