"""Hold the tree's layering: every `hypr` import points downward, and no modules form a circle.

Layers, top to bottom; packages that share a layer are independent and never import each
other. Imports under `if TYPE_CHECKING:` count too: a circle in the types is still a circle.
`hypr.sandbox` is the test and benchmark harness: it may use anything, and nothing imports it.
Run by scripts/test.sh; prints one line per offending import and exits 1 if there is any.
"""

from __future__ import annotations

import ast
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

LAYERS: list[tuple[str, ...]] = [
    ("cli", "hyprd"),  # the two entry points: hyprd wires the API onto the daemon
    ("api",),
    ("daemon",),
    ("compose", "build"),
    ("network", "vmm", "guest", "images", "volumes"),
    ("state",),
    ("checks", "config", "faults", "process", "splice", "units"),
    ("errors",),
]
# The CLI talks HTTP to the API; besides the base it may only read compose files and pack
# build contexts itself.
CLI_MAY_IMPORT = {"build", "checks", "cli", "compose", "config", "errors", "units"}
HARNESS = "sandbox"
ROOT = Path(__file__).resolve().parent.parent / "src" / "hypr"


def package_of(module: str) -> str | None:
    """`hypr.network.dns` -> `network`; None for `hypr` itself (the version string)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "hypr" else None


def layer_of(package: str) -> int:
    for index, members in enumerate(LAYERS):
        if package in members:
            return index
    raise SystemExit(f"check_layers: package hypr.{package} is in no layer: add it to LAYERS")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from hypr import x` names a submodule when x is one.
            if node.module == "hypr":
                found += [(node.lineno, f"hypr.{alias.name}") for alias in node.names]
    return found


def violations() -> list[str]:
    problems: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        source = relative.parts[0].removesuffix(".py")
        if source in ("__init__", HARNESS):
            continue
        for lineno, module in imported_modules(path):
            target = package_of(module)
            if target is None or target == source or not (ROOT / target).exists() and not (
                ROOT / f"{target}.py"
            ).exists():
                continue
            where = f"src/hypr/{relative}:{lineno}"
            if target == HARNESS:
                problems.append(f"{where}: imports the test harness {module}")
            elif source == "cli" and target not in CLI_MAY_IMPORT:
                problems.append(f"{where}: the CLI imports {module}; it talks HTTP to the API")
            elif layer_of(target) <= layer_of(source):
                how = "a sibling" if layer_of(target) == layer_of(source) else "an upper layer"
                problems.append(f"{where}: hypr.{source} imports {module}, {how}")
    return problems


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def circles() -> list[str]:
    """Module-level circles, also inside one package (graphlib names one of them)."""
    modules = {module_name(path): path for path in ROOT.rglob("*.py")}
    graph = {
        name: {module for _, module in imported_modules(path) if module in modules}
        - {name, "hypr"}
        for name, path in modules.items()
    }
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return [f"import circle: {' imports '.join(reversed(exc.args[1]))}"]
    return []


def main() -> int:
    problems = violations() + circles()
    for line in problems:
        print(line)
    if problems:
        print(f"check_layers: {len(problems)} import(s) against the layering", file=sys.stderr)
        return 1
    print("layers: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
