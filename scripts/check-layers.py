#!/usr/bin/env python3
"""Fail when the library's top-level modules import against the layer order,
or in a cycle.

Reads every `crate::<module>` path under src/ (in `use` lines and inline
paths alike, tests included) and builds the graph of top-level modules.
Each module has a layer (LAYERS, top first); a module may import only from
layers below its own. A module missing from LAYERS is an error too, so a new
one is placed on purpose. Cycles are reported on their own (Tarjan), which
names the modules involved even where the layers would only name one edge.
With `--graph` it prints the edges, one `from -> to` per line, for a reader
or for `dot`.

Run from anywhere: python3 scripts/check-layers.py [--graph]
"""
import pathlib
import re
import sys

# Top first. Imports run downwards only: the CLI starts the app; the app
# assembles the HTTP surfaces and opens a database engine; the surfaces call
# the download and upload services; those use the shared services over the
# domain (entitlement, events, quota, catalog); the engines in `db` implement
# the traits the domain owns; plain infrastructure and data are at the bottom.
LAYERS = [
    ["cli"],
    ["app"],
    ["http", "db"],
    ["downloads", "uploads", "portal"],
    ["services"],
    ["entitlement", "events", "cuts"],
    ["quota"],
    ["catalog"],
    # The OpenID Connect client: over the outgoing HTTP client.
    ["oidc"],
    ["storage", "ratelimit", "metrics", "http_client", "server", "telemetry", "admin_tokens", "cdn", "mail"],
    ["config"],
    ["quota_limits", "clock", "signing"],
    ["errors", "table"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}

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
    wrong = []
    for module in sorted(graph):
        if module not in RANK:
            wrong.append(f"{module} has no layer: add it to LAYERS in scripts/check-layers.py")
            continue
        for dep in sorted(graph[module]):
            if dep in RANK and RANK[dep] <= RANK[module]:
                wrong.append(f"{module} (layer {RANK[module]}) imports {dep} (layer {RANK[dep]}): imports run downwards")
    for line in wrong:
        print(line, file=sys.stderr)
    found = cycles(graph)
    for component in found:
        members = set(component)
        links = [f"{a} -> {b}" for a in component for b in sorted(graph.get(a, ())) if b in members]
        print(f"import cycle among {', '.join(component)}: {'; '.join(links)}", file=sys.stderr)
    if found or wrong:
        return 1
    print(f"check-layers: {len(graph)} modules in {len(LAYERS)} layers, imports run downwards, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
