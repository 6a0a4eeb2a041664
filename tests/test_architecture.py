"""The shape of the code that docs/architecture.md describes, held by tests (the import layers
themselves are import-linter's contracts in pyproject.toml, run by `make lint`)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("procedures", "runs", "reviews", "rapidfolio", "rapidfolio_verify")
OURS = (*PRODUCT, "bench", "tests")
MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 400

# Where a function-level import of our own code is needed, and why.
LOCAL_IMPORTS_ALLOWED = {
    # Django imports apps.py before any model exists: AppConfig.ready and the signal
    # receivers it connects import what they use when they run.
    ("runs/apps.py", "ready"),
    ("runs/apps.py", "_reinstall_triggers"),
    ("reviews/apps.py", "ready"),
    ("reviews/apps.py", "_ensure_roles"),
    # Dramatiq actors import what they run inside their body (runs/tasks.py says why).
    ("runs/tasks.py", "execute_run"),
    ("runs/tasks.py", "resume_run"),
    ("runs/tasks.py", "reap_stuck_runs"),
    ("runs/tasks.py", "deliver_webhook"),
    # The broker's middleware is built from settings, before the apps are loaded.
    ("rapidfolio/broker.py", "before_worker_boot"),
    # The integrations' SDKs are imported only by a process that needs the tool registry.
    ("procedures/tools/__init__.py", "_load_builtin_tools"),
}


def product_modules():
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path.relative_to(ROOT).as_posix(), path


def functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


@pytest.mark.parametrize(("name", "path"), list(product_modules()), ids=lambda v: str(v))
def test_no_product_module_is_over_400_lines(name, path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES, name


def test_no_product_function_is_over_60_lines():
    long = [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name, path in product_modules()
        for node in functions(ast.parse(path.read_text()))
        if node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_our_modules_are_imported_at_module_level_except_where_a_library_needs_otherwise():
    hidden = []
    for name, path in product_modules():
        for function in functions(ast.parse(path.read_text())):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules = [node.module or ""]
                else:
                    continue
                ours = any(module.split(".")[0] in OURS for module in modules)
                if ours and (name, function.name) not in LOCAL_IMPORTS_ALLOWED:
                    hidden.append(f"{name}:{node.lineno} in {function.name}: {modules}")
    assert hidden == []


def test_the_product_never_imports_bench_or_tests():
    offenders = []
    for name, path in product_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            if any(module.split(".")[0] in ("bench", "tests") for module in modules):
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


RECORD_MODELS = {"Step", "RunEvent"}


def _record_writes(tree):
    """Calls that build or write Step/RunEvent rows, or run the hand-written write SQL."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in RECORD_MODELS:
            yield node.lineno, f"{func.id}(...)"
        if isinstance(func, ast.Attribute):
            owner = ast.unparse(func.value)
            if func.attr in ("create", "bulk_create", "update", "get_or_create") and any(
                owner == f"{model}.objects" for model in RECORD_MODELS
            ):
                yield node.lineno, f"{owner}.{func.attr}(...)"
            if owner == "sql" and func.attr in ("insert", "update", "write"):
                yield node.lineno, f"sql.{func.attr}(...)"


def test_only_the_write_path_writes_steps_and_run_events():
    """The run record has one write path (runs.writer, through runs.sql): nothing else, in
    runs or in another app, builds or writes its rows."""
    write_path = {"runs/writer.py", "runs/sql.py", "runs/sql_rows.py"}
    offenders = [
        f"{name}:{line} {what}"
        for name, path in product_modules()
        if name not in write_path
        for line, what in _record_writes(ast.parse(path.read_text()))
    ]
    assert offenders == []
