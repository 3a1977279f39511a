"""The reference page of the JSON contract (docs/json.md), written from the schema files:
each document's keys, their types and meanings, then the shared definitions once.
`python -m tcpteardown.schemas > docs/json.md`; a test keeps the page current."""

from __future__ import annotations

from . import CURRENT, DOCUMENTS, load, tag

DEFS = "defs-1.json#/$defs/"


def _type(node: dict) -> str:
    if "$ref" in node:
        ref = node["$ref"]
        name = ref.rsplit("/", 1)[-1]
        return f"[{name}](#{name.replace('_', '-')})" if ref.startswith(DEFS) else name
    if "allOf" in node:
        return _type(node["allOf"][0])
    if "anyOf" in node:
        kinds = [_type(n) for n in node["anyOf"]]
        return " or ".join(dict.fromkeys(k for k in kinds if k))
    if "const" in node:
        return f'`"{node["const"]}"`'
    if "enum" in node:
        return "one of " + ", ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "any")
    if kind == "array" and "items" in node:
        return f"array of {_type(node['items'])}"
    return kind


def _meaning(node: dict) -> str:
    for part in (node, *node.get("anyOf", ()), *node.get("allOf", ())):
        if part.get("description"):
            return part["description"]
        if part.get("$ref", "").startswith(DEFS):  # the shared definition's own words
            return load("defs")["$defs"][part["$ref"].rsplit("/", 1)[-1]].get("description", "")
    return ""


def _rows(node: dict, prefix: str, local: dict) -> list[str]:
    rows = []
    required = set(node.get("required", ()))
    for key, child in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        optional = "" if key in required else " (optional)"
        rows.append(f"| `{path}` | {_type(child)}{optional} | {_meaning(child)} |")
        target = child.get("items", child)
        if "$ref" in target and target["$ref"].startswith("#/$defs/"):
            target = local[target["$ref"].rsplit("/", 1)[-1]]
        if target.get("type") == "object" and "properties" in target:
            rows += _rows(target, path + ("[]." if "items" in child else "."), local)
    return rows


def _table(rows: list[str]) -> list[str]:
    return ["| key | type | meaning |", "| --- | --- | --- |", *rows, ""]


def reference() -> str:
    out = ["# The JSON contract", "",
           "Generated from `src/tcpteardown/schemas/*.json` by `python -m tcpteardown.schemas`; do not edit.",
           "Every `--json` document names its shape in `\"schema\"` (`tcpteardown/<document>/<N>`); "
           "`--json-schema N` prints an older shape while this release still has it. Times are float "
           "seconds since the epoch unless a key says otherwise; errno values are names, never numbers.", ""]
    for name in DOCUMENTS:
        schema = load(name, CURRENT[name])
        out += [f"## {tag(name)}", "", schema.get("description", ""), ""]
        out += _table(_rows(schema, "", schema.get("$defs", {})))
        for local_name, local in schema.get("$defs", {}).items():
            if local.get("type") == "object":
                out += [f"### {name}: {local_name}", "", *_table(_rows(local, "", {}))]
    out += ["## Shared definitions", ""]
    for name, node in load("defs")["$defs"].items():
        out += [f"### {name}", "", _meaning(node) or "", ""]
        inner = next((n for n in node.get("anyOf", ()) if n.get("type") == "object"), node)
        if inner.get("type") == "object" and "properties" in inner:
            out += _table(_rows(inner, "", load("defs")["$defs"]))
        else:
            out += [f"Type: {_type(node)}.", ""]
    return "\n".join(out).rstrip() + "\n"
