"""The package's layers run one way (an AST walk over every import, lazy ones included).

Bottom to top: the shared plumbing (config, paths, progress, video, vlm), then one sub-package per
notebook: data (00), library (01), rewards (01, 05), viz (views over those: plots, widgets, inspector),
cot (02), train (03-05), eval (06), and the CLI / notebook runner on top. A module may import from its
own layer and the layers below it; the module graph has no cycle; no private name (``_x``) crosses a
module boundary; and an import of the package's own modules sits at the top of the module, never inside
a function (lazy imports are only for heavy third-party packages, never to dodge a cycle).
"""

import ast
import json
from pathlib import Path

import pytest

from reasonact.config import REPO_ROOT

LAYERS = ("shared", "data", "library", "rewards", "viz", "cot", "train", "eval", "top")
TOP = {"cli", "notebooks"}  # top-level modules above every sub-package


def layer_of(module: str, package: str = "reasonact") -> str:
    parts = module.split(".")[1:]
    if not parts:
        return "shared"
    if parts[0] in TOP:
        return "top"
    return parts[0] if parts[0] in LAYERS else "shared"


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, module: str, modules: set[str]):
    """Yield (line, imported module, names, nested) for every import of the package's own modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module.split(".")[0]
    nested = set()
    for fn in ast.walk(tree):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            for n in ast.walk(fn):
                if n is not fn and isinstance(n, ast.Import | ast.ImportFrom):
                    nested.add(id(n))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    yield node.lineno, alias.name, [], id(node) in nested
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(node, module, path.name == "__init__.py")
            if target.split(".")[0] != package:
                continue
            names = [a.name for a in node.names]
            sub = [f"{target}.{n}" for n in names if f"{target}.{n}" in modules]
            if sub:  # `from pkg import module`: an import of that module
                for s in sub:
                    yield node.lineno, s, [], id(node) in nested
                names = [n for n in names if f"{target}.{n}" not in modules]
            if names or not sub:
                yield node.lineno, target, names, id(node) in nested


def check(root: Path) -> list[str]:
    """Every violation of the rules above in the package at ``root``, one line each."""
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    modules = set(files)
    problems, graph = [], {m: set() for m in modules}
    for module, path in files.items():
        here = LAYERS.index(layer_of(module))
        for line, target, names, nested in imports(path, module, modules):
            if target not in modules or target == module:
                continue
            where = f"{path.relative_to(root.parent)}:{line}"
            if target != module.split(".")[0]:  # importing the package itself (its __init__) is free
                graph[module].add(target)
            if LAYERS.index(layer_of(target)) > here:
                problems.append(
                    f"{where}: {module} ({layer_of(module)}) imports {target} ({layer_of(target)}), a higher layer"
                )
            if nested:
                problems.append(
                    f"{where}: {module} imports {target} inside a function (import it at the top)"
                )
            for n in names:
                if n.startswith("_") and not n.startswith("__"):
                    problems.append(f"{where}: {module} imports the private name {n} from {target}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(_path_back(graph, min(comp), set(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _path_back(graph: dict[str, set[str]], start: str, comp: set[str]) -> list[str]:
    """The shortest import path from ``start`` back to itself inside one strongly connected component."""
    paths, seen = [[start]], set()
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & comp):
            if w == start:
                return [*path, start]
            if w not in seen:
                seen.add(w)
                paths.append([*path, w])
    return [start, start]


def test_the_package_has_one_way_layers():
    problems = check(REPO_ROOT / "reasonact")
    assert not problems, "\n".join(problems)


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "reasonact"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        ({"config.py": "", "data/__init__.py": "", "data/synthact.py": "from reasonact import config\n"}, []),
        (  # a cycle, even through a lazy import
            {"data/__init__.py": "", "data/a.py": "from reasonact.data import b\n",
             "data/b.py": "def f():\n    from reasonact.data import a\n"},
            ["inside a function", "import cycle: reasonact.data.a -> reasonact.data.b -> reasonact.data.a"],
        ),
        (  # a lower layer importing a higher one
            {"data/__init__.py": "", "train/__init__.py": "", "train/sft.py": "",
             "data/synthact.py": "from reasonact.train.sft import train\n"},
            ["reasonact.data.synthact (data) imports reasonact.train.sft (train), a higher layer"],
        ),
        (  # a private name across modules
            {"rewards/__init__.py": "", "rewards/a.py": "_x = 1\n", "rewards/b.py": "from reasonact.rewards.a import _x\n"},
            ["imports the private name _x from reasonact.rewards.a"],
        ),
    ],
)  # fmt: skip
def test_the_check_fails_on_a_cycle_an_upward_import_and_a_private_name(tmp_path, files, expected):
    problems = check(_package(tmp_path, files))
    assert len(problems) == len(expected) and all(e in p for e, p in zip(expected, problems)), problems


# Which stage sub-packages each notebook may import, besides the shared layer and viz (the views every
# notebook draws with). One per notebook; 01 shows the library and previews the rewards that read it.
NOTEBOOK_STAGES = {
    "00": {"data"},
    "01": {"library", "rewards"},
    "02": {"cot"},
    "03": {"train"},
    "04": {"train"},
    "05": {"train"},
    "06": {"eval"},
}


def notebook_problems(path: Path, allowed: set[str]) -> list[str]:
    """Imports of the package in a notebook's code cells from a stage sub-package it does not map to."""
    problems = []
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
        layers = set()
        for node in ast.walk(ast.parse(source)):
            targets = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
                if isinstance(node, ast.ImportFrom) and node.module
                else []
            )
            layers |= {layer_of(t) for t in targets if t.split(".")[0] == "reasonact"}
        for layer in sorted(layers - allowed - {"shared", "viz"}):
            problems.append(f"{path.name} cell {i}: imports from {layer}/ (allowed: {sorted(allowed)})")
    return problems


def test_each_notebook_imports_one_stage_sub_package_plus_the_shared_layer():
    books = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert {b.name[:2] for b in books} == set(NOTEBOOK_STAGES)
    problems = [p for b in books for p in notebook_problems(b, NOTEBOOK_STAGES[b.name[:2]])]
    assert not problems, "\n".join(problems)


def test_the_notebook_check_fails_on_an_import_from_another_stage(tmp_path):
    source = ["from reasonact.config import load_config\n", "from reasonact.train.base import ensure_model\n"]
    cell = {"cell_type": "code", "source": source}
    book = tmp_path / "00_data.ipynb"
    book.write_text(json.dumps({"cells": [cell]}))
    assert notebook_problems(book, {"data"}) == [
        "00_data.ipynb cell 0: imports from train/ (allowed: ['data'])"
    ]


MAX_MODULE_LINES = 500  # one concept per module, readable in a sitting


def module_problems(root: Path) -> list[str]:
    """Modules over MAX_MODULE_LINES lines, or whose first line is not a docstring saying what they are."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        lines = path.read_text().splitlines()
        name = path.relative_to(root.parent)
        if len(lines) > MAX_MODULE_LINES:
            problems.append(f"{name}: {len(lines)} lines (at most {MAX_MODULE_LINES})")
        if path.name != "__init__.py" or lines:
            if not lines or not lines[0].startswith('"""') or len(lines[0].strip('" ')) < 10:
                problems.append(f"{name}: the first line must be a docstring saying what the module is")
    return problems


def test_every_module_is_short_and_says_what_it_is():
    problems = module_problems(REPO_ROOT / "reasonact")
    assert not problems, "\n".join(problems)


def test_the_module_check_fails_on_a_long_module_and_a_missing_docstring(tmp_path):
    root = _package(
        tmp_path, {"a.py": '"""A module that is far too long."""\n' + "x = 1\n" * 500, "b.py": "x = 1\n"}
    )
    assert module_problems(root) == [
        "reasonact/a.py: 501 lines (at most 500)",
        "reasonact/b.py: the first line must be a docstring saying what the module is",
    ]
