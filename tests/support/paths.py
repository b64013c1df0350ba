"""Where the checkout, its DAGs and the committed sample cycles are."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_data" / "cycles"
DAGS = REPO / "dags"
