"""The package's levels, written once: a module imports only from its own level or the
levels below it, and no two files import each other, directly or round a circle. Read from
the source with ast (imports inside functions count too), so a new upward or circular
import fails here before anyone has to untangle it. docs/architecture.md explains them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mnist_sweep", "hydra_plugins")

# lowest first; a module belongs to the first prefix it starts with, longest prefix wins
LEVELS: list[tuple[str, list[str]]] = [
    ("base", ["mnist_sweep.record", "mnist_sweep.paths", "mnist_sweep.config",
              "mnist_sweep.resolvers", "mnist_sweep.locks", "mnist_sweep.__init__"]),
    ("job", ["mnist_sweep.job"]),
    ("report", ["mnist_sweep.report"]),
    ("sweep", ["mnist_sweep.sweep"]),
    ("cli", ["mnist_sweep.cli", "mnist_sweep.__main__", "mnist_sweep.watch", "hydra_plugins"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def level_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LEVELS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    assert best is not None, f"{module} belongs to no level: add it to LEVELS"
    return best


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules that `module` imports (a package's __init__ when a name is
    imported from the package itself)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        for candidate in (name, name + ".__init__"):
            if candidate in known:
                return candidate
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target != module:
                found.add(target)
    if module.endswith(".__init__"):
        found.discard(module)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def test_every_module_has_a_level() -> None:
    for module in modules():
        level_of(module)


def test_no_import_points_up_a_level() -> None:
    upward = [f"{module} ({LEVELS[level_of(module)][0]}) imports {target} "
              f"({LEVELS[level_of(target)][0]})"
              for module, targets in graph().items() for target in sorted(targets)
              if level_of(target) > level_of(module)]
    assert not upward, "imports that point up a level:\n" + "\n".join(upward)


def test_no_files_import_each_other_round_a_circle() -> None:
    edges = graph()
    # Tarjan's strongly connected components: any component of two or more files is a circle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    assert not circles, "files that import each other:\n" + "\n".join(
        " <-> ".join(c) for c in circles)
