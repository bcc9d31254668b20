"""The structure the code keeps: imports run one way (import-linter's contracts in pyproject.toml, run by
.ci/run), nothing imports the package root, and only models/ asks which model class it holds."""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

import groklab

PACKAGE = Path(groklab.__file__).parent


def test_nothing_inside_the_package_imports_the_package_root() -> None:
    graph = grimp.build_graph("groklab", include_external_packages=False)
    importers = sorted(
        m for m in graph.find_descendants("groklab") if "groklab" in graph.find_modules_directly_imported_by(m)
    )
    assert importers == []


def test_only_models_ask_which_model_class_they_hold() -> None:
    """The engine, the measures and the rest go through the Model protocol: no isinstance(x, MLP | Transformer)."""
    model_classes = {"MLP", "Transformer", "ShortcutTransformer", "ReferenceMLP", "ReferenceTransformer"}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "models":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & model_classes:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
