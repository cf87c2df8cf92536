"""The import graph of harness/ and references/ has no cycle (data flows one way).

Walks every module's imports with the stdlib ``ast`` module (function-level lazy imports
included: a lazy import is still a dependency).  ``from pkg import sub`` is an edge to the
submodule ``pkg.sub``; ``from mod import name`` an edge to ``mod``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: source folder -> import name (pyproject.toml: wheel.force-include)
IMPORT_ROOT = {"harness": ("normconf",), "references": ("normconf", "references")}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in [*(ROOT / "harness").rglob("*.py"), *(ROOT / "references").rglob("*.py")]:
        parts = p.relative_to(ROOT).with_suffix("").parts
        parts = IMPORT_ROOT[parts[0]] + parts[1:]
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    mods = _modules()

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                o = owner(t)
                if o and o != m:
                    graph[m].add(o)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter
                counter += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(graph[w]))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40 and graph["normconf.results"]  # the walk found the modules and their imports
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_in_the_package_is_over_600_lines():
    """Issue 15's rule: one job per module; a module past 600 lines is doing several."""
    over = {}
    for root in (ROOT / "harness", ROOT / "references"):
        for f in root.rglob("*.py"):
            n = len(f.read_text(encoding="utf-8").splitlines())
            if n > 600:
                over[str(f.relative_to(ROOT))] = n
    assert over == {}
