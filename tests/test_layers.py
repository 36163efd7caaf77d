"""The package's layers, read from its source: declarations at the bottom, no import cycle,
nothing below `commands/` reaching up into the CLI.

The graph counts every `import` of an llmkit module wherever it stands (module level,
inside a function, under `if TYPE_CHECKING:`), so that a cycle cannot hide in a function-level
import.
"""

import ast
import subprocess
import sys
from pathlib import Path

from llmkit.tasks import KINDS

PACKAGE = Path(__file__).resolve().parents[1] / "llmkit"

# What the recipe schema may stand on: itself, the errors, the schema base, the task kinds'
# declarations (their keys and registry entries) and the known-data names they list.
DECLARATIONS = {
    "llmkit",
    "llmkit.errors",
    "llmkit.schema",
    "llmkit.recipe",
    "llmkit.data",
    "llmkit.data.known",
    "llmkit.tasks",
    "llmkit.tasks.kind",
    # each kind's folder package (tasks/<kind>/__init__.py): its keys and registry entry
    *(f"llmkit.tasks.{kind}" for kind in KINDS),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each llmkit module → the llmkit modules it imports (a name imported from a package is
    the submodule when one has that name)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    targets.add(submodule if submodule in modules else base)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    """The check above could pass by finding nothing at all: a made-up circle is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_recipe_schema_stands_on_declarations_only():
    """Importing the schema (what every command and `--help` reads) loads no module that
    loads a model, reads data or trains: in a fresh interpreter, and in the source graph."""
    listing = "import sys, llmkit.recipe; print(*(m for m in sys.modules if 'llmkit' in m))"
    loaded = subprocess.run(
        [sys.executable, "-c", listing],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "llmkit.recipe" in loaded
    assert set(loaded) <= DECLARATIONS, set(loaded) - DECLARATIONS
    graph = import_graph()
    for declaration in DECLARATIONS:
        assert graph[declaration] <= DECLARATIONS, (declaration, graph[declaration] - DECLARATIONS)


def test_nothing_below_the_commands_imports_them():
    """Data flows down: the domain modules never import a command or the CLI."""
    top = ("llmkit.commands", "llmkit.cli", "llmkit.__main__")
    for module, targets in import_graph().items():
        if module.startswith(top):
            continue
        upward = {t for t in targets if t.startswith(top)}
        assert not upward, f"{module} imports {upward}"
