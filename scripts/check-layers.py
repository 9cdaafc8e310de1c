#!/usr/bin/env python3
"""Fail when the library's top-level modules import each other in a cycle.

Reads every `crate::<module>` path under src/ (in `use` lines and inline
paths alike, tests included), builds the graph of top-level modules, and
prints every strongly connected component larger than one module. With
`--graph` it prints the edges, one `from -> to` per line, for a reader or
for `dot`.

Run from anywhere: python3 scripts/check-layers.py [--graph]
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}` names several modules at once.
GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def top_module(file: pathlib.Path) -> str | None:
    rel = file.relative_to(SRC)
    if rel.parts[0] in ("lib.rs", "main.rs"):
        return None
    return rel.parts[0].removesuffix(".rs")


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for file in sorted(SRC.rglob("*.rs")):
        module = top_module(file)
        if module is None:
            continue
        text = file.read_text()
        # Comments may name modules without depending on them.
        text = re.sub(r"//[^\n]*", "", text)
        names = set(PATH.findall(text))
        for group in GROUP.findall(text):
            for item in group.split(","):
                head = item.strip().split("::")[0].strip()
                if head:
                    names.add(head)
        graph.setdefault(module, set()).update(n for n in names if n != module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, those of two or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    graph = edges()
    if "--graph" in sys.argv:
        for module in sorted(graph):
            for dep in sorted(graph[module]):
                print(f"{module} -> {dep}")
    found = cycles(graph)
    for component in found:
        members = set(component)
        links = [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, ())) if b in members]
        print(f"import cycle among {', '.join(component)}: {'; '.join(links)}", file=sys.stderr)
    if found:
        return 1
    print(f"check-layers: {len(graph)} modules, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
