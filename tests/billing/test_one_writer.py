"""Money has one writer: nothing outside billing's ledger module writes ledger rows, and billing
itself imports no feature app (it sits below them)."""

import ast
import re
from pathlib import Path

APPS = Path(__file__).resolve().parents[2] / "apps"
LEDGER = APPS / "billing" / "services" / "ledger.py"
FEATURE_APPS = ("pods", "catalog", "providers", "sourcing", "nodes", "proxy")

# Ways to write a ledger row: the model constructors, the ORM's writers, the bulk helpers, SQL.
WRITES = re.compile(
    r"\b(Entry|Transaction|LedgerAccount)\(\s*(transaction|account|kind|amount)\s*="
    r"|\b(Entry|Transaction)\.objects\.(create|bulk_create|get_or_create|update_or_create)\b"
    r"|\bmodel=(Entry|Transaction|LedgerAccount)\b"
    r"|(INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY)\s+billing_(entry|transaction|ledgeraccount)\b",
    re.IGNORECASE,
)


def _sources():
    for path in sorted(APPS.rglob("*.py")):
        if "migrations" in path.parts or path == LEDGER:
            continue
        yield path, path.read_text()


def test_no_ledger_rows_are_written_outside_the_ledger_module():
    found = [
        f"{path.relative_to(APPS)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for path, text in _sources()
        for m in WRITES.finditer(text)
    ]
    assert found == []


def test_billing_imports_no_feature_app():
    found = []
    for path in sorted((APPS / "billing").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                parts = name.split(".")
                if len(parts) > 1 and parts[0] == "apps" and parts[1] in FEATURE_APPS:
                    found.append(f"{path.relative_to(APPS)}: {name}")
    assert found == []
