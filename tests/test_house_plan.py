"""The house plan's rules that import-linter (`make lint`) cannot see: the environment is read
only at the edge, and DAG files import only the pipeline, the domain and their runtime helper."""

from __future__ import annotations

import ast

import pytest

from tests.support.paths import DAGS, REPO

# The edge reads the environment: the CLI, the settings, the benchmarks, the embedded Airflow
# database helper. Everything else gets what it needs passed in.
EDGE = {
    "billing/cli.py",
    "billing/config.py",
    "billing/bench.py",
    "billing/airflow_db.py",
    "billing/cluster.py",
    "billing/bench_e2e.py",
}
BELOW_THE_EDGE = sorted(
    str(path.relative_to(REPO))
    for package in ("billing", "renderers", "notifiers", "storage")
    for path in (REPO / package).rglob("*.py")
    if str(path.relative_to(REPO)) not in EDGE
    and not path.name == "bench.py"
    and "migrations" not in path.parts
)
DAG_IMPORTS = ("billing.pipeline", "billing.domain.", "airflow_runtime", "billing import pipeline")


def environment_reads(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv"):
            if isinstance(node.value, ast.Name) and node.value.id == "os":
                found.append(f"line {node.lineno}: os.{node.attr}")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ("environ", "getenv"):
                    found.append(f"line {node.lineno}: from os import {alias.name}")
    return found


@pytest.mark.parametrize("module", BELOW_THE_EDGE)
def test_no_module_below_the_edge_reads_the_environment(module):
    assert environment_reads(ast.parse((REPO / module).read_text())) == []


def test_the_check_sees_an_environment_read():
    assert environment_reads(ast.parse("import os\nx = os.environ.get('A')")) == [
        "line 2: os.environ"
    ]


def product_imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in ("billing", "storage", "notifiers", "renderers"):
                if node.module == "billing":
                    names += [f"billing import {alias.name}" for alias in node.names]
                else:
                    names.append(node.module)
            elif node.module.startswith("airflow_runtime"):
                names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [
                alias.name
                for alias in node.names
                if alias.name.split(".")[0] in ("billing", "storage", "notifiers", "renderers")
            ]
    return names


@pytest.mark.parametrize("dag_file", sorted(p.name for p in DAGS.glob("*.py")))
def test_dag_files_import_only_the_pipeline_and_the_domain(dag_file):
    imports = product_imports(ast.parse((DAGS / dag_file).read_text()))
    assert imports, "a DAG file calls the pipeline"
    wrong = [
        name for name in imports if not name.startswith(DAG_IMPORTS) and name != "billing.domain"
    ]
    assert wrong == []
