"""The two archive backends stand alone. (That storage imports only itself and the domain is
import-linter's layers contract in `make lint`; that it reads no environment is
tests/test_house_plan.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.paths import REPO

STORAGE = REPO / "storage"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_two_archive_backends_do_not_import_each_other():
    assert not any("storage.archive.s3" in n for n in imported(STORAGE / "archive/local.py"))
    assert not any("storage.archive.local" in n for n in imported(STORAGE / "archive/s3.py"))
