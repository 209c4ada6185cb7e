"""The package's modules form layers: no module imports one that imports it back, directly or through
others, not even inside a function or under TYPE_CHECKING (a lazy import only hides a cycle)."""
import ast
from pathlib import Path

import nas.spec

PACKAGE = Path(nas.spec.__file__).parent


def imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nas."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("nas."))
    return found & modules


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each module that can reach itself, with one path back to it.

    >>> cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})[0]
    ['a', 'b', 'c', 'a']
    >>> cycles({"a": {"b"}, "b": set()})
    []
    """
    out = []
    for start in sorted(graph):
        paths, seen = [[start]], set()
        while paths:
            path = paths.pop()
            for nxt in sorted(graph[path[-1]]):
                if nxt == start:
                    out.append(path + [start])
                    paths = []
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    paths.append(path + [nxt])
    return out


def test_no_module_imports_one_that_imports_it_back():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    graph = {m: imports(PACKAGE / f"{m}.py", modules) - {m} for m in modules}
    assert graph["report"] >= {"plots"} and graph["search"] >= {"schedule"}, "the import scan finds nothing"
    found = cycles(graph)
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


def test_no_module_takes_a_sibling_module_by_a_name_the_package_gives_a_function():
    """``nas.search``, ``nas.train``, ``nas.export`` ... are the public functions once ``nas`` is
    imported, so ``from . import train`` inside the package would get the function, not the module."""
    import nas

    public = set(nas.__all__)
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                clash = {a.name for a in node.names} & public
                assert not clash, f"{path.name}: `from . import {', '.join(clash)}`; import names from the module"
