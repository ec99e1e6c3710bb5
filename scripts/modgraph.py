#!/usr/bin/env python3
"""The module graph of the workspace's crates: for each crate, its top-level modules (the files
and folders under src/, tests left out) in layers, each with the modules it imports
(`crate::x`), and any import circle. Exit 1 when a crate has a circle.

Usage: scripts/modgraph.py [CRATE_DIR...]   (default: every workspace member)
"""
import os
import re
import sys


def top(src, path):
    first = os.path.relpath(path, src).replace(os.sep, "/").split("/")[0]
    return first[:-3] if first.endswith(".rs") else first


def graph(crate):
    src = os.path.join(crate, "src")
    mods = {top(src, os.path.join(src, f)) for f in os.listdir(src)} - {"main", "lib"}
    edges = {m: set() for m in mods}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            me = top(src, path)
            if me not in mods:
                continue
            text = open(path, encoding="utf-8", errors="replace").read()
            text = re.split(r"#\[cfg\(test\)\]\s*mod\s+tests", text)[0]
            text = re.sub(r"//[^\n]*", "", text)  # doc links and comments are not imports
            for m in re.findall(r"crate::([a-z_][a-z0-9_]*)", text):
                if m in mods and m != me:
                    edges[me].add(m)
    return mods, edges


def circles(mods, edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(mods):
        if v not in index:
            visit(v)
    return found


def layers(mods, edges):
    """Longest path to a leaf: leaves are layer 0, a module sits one above its highest import."""
    depth = {}

    def d(v, seen=()):
        if v in depth:
            return depth[v]
        if v in seen:
            return 0
        depth[v] = 1 + max((d(w, seen + (v,)) for w in edges[v]), default=-1)
        return depth[v]

    for v in mods:
        d(v)
    return depth


def members(root):
    text = open(os.path.join(root, "Cargo.toml"), encoding="utf-8").read()
    m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    return [os.path.join(root, x) for x in re.findall(r'"([^"]+)"', m.group(1))] if m else []


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    crates = sys.argv[1:] or members(root)
    bad = 0
    for crate in crates:
        if not os.path.isdir(os.path.join(crate, "src")):
            continue
        mods, edges = graph(crate)
        name = os.path.basename(os.path.normpath(crate))
        found = circles(mods, edges)
        depth = layers(mods, edges)
        print(f"{name}: {len(mods)} top-level modules, top layer first")
        for v in sorted(mods, key=lambda v: (-depth[v], v)):
            uses = ", ".join(sorted(edges[v])) or "-"
            print(f"  {depth[v]:>2}  {v:<14} uses {uses}")
        for c in found:
            bad += 1
            print(f"  CIRCLE: {' <-> '.join(c)}")
        if not found:
            print("  no circle: every import points down")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
