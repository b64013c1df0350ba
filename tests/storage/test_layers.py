"""storage/ sits just above billing.domain: it imports nothing else of the product's and never
reads the environment (configuration flows inward from the edge)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STORAGE = Path(__file__).resolve().parents[2] / "storage"
MODULES = sorted(p for p in STORAGE.rglob("*.py") if "migrations" not in p.parts)
ALLOWED = ("storage", "billing.domain")
PRODUCT = ("billing", "notifiers", "renderers", "storage", "dags", "airflow_runtime")


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(STORAGE)))
def test_storage_imports_only_itself_and_the_domain_and_reads_no_environment(path):
    ours = {n for n in imported(path) if n.split(".")[0] in PRODUCT}
    assert {n for n in ours if not n.startswith(ALLOWED)} == set()
    assert "os.environ" not in path.read_text() and "getenv" not in path.read_text()


def test_the_two_archive_backends_do_not_import_each_other():
    assert not any("storage.archive.s3" in n for n in imported(STORAGE / "archive/local.py"))
    assert not any("storage.archive.local" in n for n in imported(STORAGE / "archive/s3.py"))
