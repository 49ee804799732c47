"""The app layering of docs/architecture.md, checked: every import in apps/ (module level and
inside functions; migrations and `if TYPE_CHECKING:` blocks aside) goes down the layer graph
the document's table declares, and no code imports an app inside a function to dodge a cycle.

The contract is read from the document itself, so the two cannot drift apart."""

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "apps"
DOC = ROOT / "docs" / "architecture.md"

# Function-local imports of our own modules that are tolerated, each with its reason. Nothing
# else may import inside a function (apps.py's AppConfig.ready, which registers receivers and
# schema extensions once the registry is loaded, is the Django way and always allowed).
LOCAL_IMPORTS_ALLOWED = {
    # pods/metering.py calls pod_stop from the services that import metering; its owner (the
    # scheduling work) is to move the stop behind a hook.
    ("apps/pods/metering.py", "apps.pods.services"),
    # proxy/routing.py reads the catalog's models lazily (the proxy's own work will hoist them;
    # the direction, proxy -> catalog, is legal).
    ("apps/proxy/routing.py", "apps.catalog.models"),
}


# Row locks outside an app's locks.py, each with its reason (docs/architecture.md, "Lock order").
LOCKS_ELSEWHERE_ALLOWED = {
    # The scheduler's and the meter's set-based batch claims: SKIP LOCKED over querysets built
    # per batch (pending pods, a batch's nodes in pk order, their free GPUs, due pods), part of
    # each batch's one statement per step, not a single row's lock.
    "apps/pods/scheduler.py",
    "apps/pods/claims.py",
    "apps/pods/metering.py",
    # The idempotency record is the shared request machinery's own, locked in one place.
    "apps/core/idempotency.py",
}


@dataclass(frozen=True)
class Import:
    path: str  # relative to the repository root
    line: int
    module: str  # e.g. "apps.pods.models"
    local: bool  # inside a function or method
    names: tuple[str, ...] = ()  # what `from module import ...` takes


def layer_contract() -> dict[str, set[str]]:
    """{app: apps it may import}, from the table under "## Layers" in docs/architecture.md."""
    text = DOC.read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    contract: dict[str, set[str]] = {}
    for row in re.findall(r"^\| `(\w+)` \|([^|]*)\|", section, re.M):
        app, allowed = row
        contract[app] = set(re.findall(r"`(\w+)`", allowed))
    return contract


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(node: ast.Import | ast.ImportFrom, module_of_file: str) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: resolve against the importing module's package
        package = module_of_file.split(".")[: -node.level]
        base = ".".join([*package, base] if base else package)
    if base == "apps":  # `from apps import pods`
        yield from (f"apps.{alias.name}" for alias in node.names)
    else:
        yield base


def imports_in(path: Path) -> Iterator[Import]:
    rel = path.relative_to(ROOT).as_posix()
    module_of_file = rel.removesuffix(".py").replace("/", ".")
    tree = ast.parse(path.read_text(), filename=rel)

    def visit(node: ast.AST, local: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    yield from visit(other, local)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                names = tuple(a.name for a in child.names)
                for target in _targets(child, module_of_file):
                    if target == "apps" or target.startswith("apps."):
                        yield Import(rel, child.lineno, target, local, names)
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from visit(child, inner)

    yield from visit(tree, False)


def app_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "apps" else None


def all_imports() -> list[Import]:
    return [
        imp
        for path in sorted(APPS.rglob("*.py"))
        if "migrations" not in path.parts
        for imp in imports_in(path)
    ]


def test_the_contract_names_every_app_and_is_a_layering():
    contract = layer_contract()
    apps = {p.name for p in APPS.iterdir() if (p / "__init__.py").exists()}
    assert set(contract) == apps, "docs/architecture.md's layer table must list every app"
    for app, allowed in contract.items():
        assert allowed <= apps, f"{app} may import unknown apps {allowed - apps}"
    # A layering has no cycle: an app never reaches itself through what it may import.
    for app in contract:
        seen, stack = set(), list(contract[app])
        while stack:
            other = stack.pop()
            assert other != app, f"the contract lets {app} import itself through {other}"
            if other not in seen:
                seen.add(other)
                stack += contract[other]


def test_every_import_goes_down_the_layers():
    contract = layer_contract()
    wrong = [
        f"{imp.path}:{imp.line} imports {imp.module} ({imp.path.split('/')[1]} may import: "
        f"{', '.join(sorted(contract[imp.path.split('/')[1]])) or 'nothing'})"
        for imp in all_imports()
        if (target := app_of(imp.module)) is not None
        and target != imp.path.split("/")[1]
        and target not in contract[imp.path.split("/")[1]]
    ]
    assert not wrong, "imports against docs/architecture.md's layers:\n" + "\n".join(wrong)


def test_no_function_local_imports_dodge_a_cycle():
    dodges = [
        f"{imp.path}:{imp.line} imports {imp.module} inside a function"
        for imp in all_imports()
        if imp.local
        and not imp.path.endswith("/apps.py")
        and (imp.path, imp.module) not in LOCAL_IMPORTS_ALLOWED
    ]
    assert not dodges, (
        "import at module level; if that makes a cycle, invert the dependency with a signal or "
        "a settings hook (docs/architecture.md):\n" + "\n".join(dodges)
    )


def test_no_app_moves_another_apps_state_machine():
    # Cross-app state changes go through the owning app's public services
    # (docs/architecture.md, "State changes go through the owner").
    wrong = [
        f"{imp.path}:{imp.line} imports {name} from {imp.module}"
        for imp in all_imports()
        if app_of(imp.module) != imp.path.split("/")[1]
        for name in imp.names
        if name.endswith("_transition")
    ]
    assert not wrong, "call the owning app's service instead:\n" + "\n".join(wrong)


def test_rows_are_locked_only_in_locks_modules():
    stray = [
        f"{path.relative_to(ROOT).as_posix()}:{node.lineno}"
        for path in sorted(APPS.rglob("*.py"))
        if "migrations" not in path.parts
        and path.name != "locks.py"
        and path.relative_to(ROOT).as_posix() not in LOCKS_ELSEWHERE_ALLOWED
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "select_for_update"
    ]
    assert not stray, "take row locks through the app's locks.py:\n" + "\n".join(stray)


def test_the_walker_sees_local_relative_and_type_checking_imports(tmp_path):
    # given a file with each kind of import
    source = tmp_path / "apps" / "demo" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from apps.core import money\n"
        "from . import sibling\n"
        "if TYPE_CHECKING:\n"
        "    from apps.pods.models import Pod\n"
        "def f():\n"
        "    from apps.billing.models import Entry\n"
        "class C:\n"
        "    def m(self):\n"
        "        import apps.nodes.models\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        # when it is walked
        found = {(i.module, i.local) for i in imports_in(source)}
    finally:
        ROOT = saved
    # then module-level, relative and local imports are seen, TYPE_CHECKING ones are not
    assert found == {
        ("apps.core", False),
        ("apps.demo", False),
        ("apps.billing.models", True),
        ("apps.nodes.models", True),
    }


MAX_LINES = 450


def test_a_module_over_450_lines_says_why_at_its_top():
    """Modules are split by job; one that stays long says why on its first line."""
    long_without_reason = [
        f"{path.relative_to(ROOT)} ({n} lines)"
        for path in sorted(APPS.rglob("*.py"))
        if "migrations" not in path.parts
        and (n := len(lines := path.read_text().splitlines())) > MAX_LINES
        and not lines[0].startswith(f"# Over {MAX_LINES} lines:")
    ]
    assert not long_without_reason, (
        f"split these by job, or start them with '# Over {MAX_LINES} lines: <why>': "
        f"{long_without_reason}"
    )
