"""The package layers: imports point down only, and no two top-level packages import each other.

Every import statement is read from the source (including imports inside functions), so a
cycle hidden in a function body fails here too.

    core (0) -> models (1) -> separation (2) -> export (3) -> entry points (4)
"""
from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO_ROOT

#: Layer of every top-level package or module of the kit.
LAYERS = {"core": 0, "models": 1, "separation": 2, "export": 3,
          "predict": 4, "evaluator": 4, "training": 4, "submission": 4}


def _kit_files() -> dict[str, list[Path]]:
    files: dict[str, list[Path]] = {}
    for name in LAYERS:
        package = REPO_ROOT / name
        files[name] = sorted(package.rglob("*.py")) if package.is_dir() else [REPO_ROOT / f"{name}.py"]
    return files


def _imported_packages(path: Path, own: str) -> set[tuple[str, int]]:
    """(top-level kit package, line) for every import in ``path``; relative imports stay in ``own``."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: inside the same package
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in LAYERS and top != own:
                found.add((top, node.lineno))
    return found


def _edges() -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for package, paths in _kit_files().items():
        for path in paths:
            for target, line in _imported_packages(path, package):
                edges.setdefault((package, target), []).append(f"{path.relative_to(REPO_ROOT)}:{line}")
    return edges


def test_every_layer_exists():
    files = _kit_files()
    assert all(paths and all(p.is_file() for p in paths) for paths in files.values()), files


def test_imports_point_down_only():
    upward = [f"{src} (layer {LAYERS[src]}) imports {dst} (layer {LAYERS[dst]}) at {', '.join(where)}"
              for (src, dst), where in _edges().items() if LAYERS[dst] > LAYERS[src]]
    assert not upward, "\n".join(upward)


def test_no_cycles_between_packages():
    graph: dict[str, set[str]] = {}
    for src, dst in _edges():
        graph.setdefault(src, set()).add(dst)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted({f"{a} <-> {b}" for a, b in _edges() if reaches(b, a, {b})})
    assert not cycles, cycles


def test_the_checker_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from evaluator import cli\n    import separation.engine\n")
    assert _imported_packages(module, "models") == {("evaluator", 2), ("separation", 3)}
