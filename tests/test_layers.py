"""The package's import graph: each layer uses only the layers below it, and no modules import each other.

``python tests/test_layers.py`` prints the graph (every import, at the top of a module or inside a function).
"""

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "cifar_lightning"
# lowest first: the shared basics, the training core, run bookkeeping and the command line, the tools on top
LAYERS = {"errors": 0, "atomic": 0, "training": 1, "runs": 2, "tools": 3, "__main__": 4}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The package's modules that ``path`` imports, wherever the import statement is."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifar_lightning"):
            for alias in node.names:  # ``from cifar_lightning.runs import cli`` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if _exists(candidate) else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("cifar_lightning.")}
    return found


def _exists(name: str) -> bool:
    relative = Path(*name.split(".")[1:])
    return (PACKAGE / relative).with_suffix(".py").is_file() or (PACKAGE / relative / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in graph() if m != "cifar_lightning" and layer(m) is None]
    assert unplaced == [], f"add these to LAYERS (or move them into a layer's folder): {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    upward = [
        (m, t) for m, targets in graph().items() for t in targets if m != "cifar_lightning" and layer(t) > layer(m)
    ]
    assert upward == []


def test_no_modules_import_each_other():
    edges = graph()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for target in sorted(edges.get(module, ())):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif target in edges:
                visit(target, [*path, target])

    for module in edges:
        visit(module, [module])
    assert cycles == []


def test_the_check_sees_imports_inside_functions(tmp_path):
    source = tmp_path / "x.py"
    source.write_text(
        "def f():\n    from cifar_lightning.tools.study import run_one\n    from cifar_lightning.runs import cli\n"
    )
    assert imports(source) == {"cifar_lightning.tools.study", "cifar_lightning.runs.cli"}


if __name__ == "__main__":
    for name, targets in graph().items():
        print(f"{name} -> {', '.join(sorted(targets)) or '-'}", file=sys.stdout)
