"""The Sartiq generation-models spec (Markdown) as the OpenAPI document it was rendered from.

../shared/specs/sartiq-generation-models.md is a page rendered from the FastAPI app's OpenAPI
document: per operation a method and path, a parameters table, and the request and response
bodies as JSON examples each followed by its JSON Schema ("Schema of the request body",
"Schema of the response body"); then a "Schemas" section of component tables. This script
rebuilds an OpenAPI 3.1 document from that text, for schemathesis (scripts/schemathesis.sh):

* paths, methods, summaries, query and path parameters (`{id}` is a path parameter);
* request and response bodies from the embedded JSON Schemas, verbatim. The page gives no
  status codes: a response schema titled `HTTPValidationError` is FastAPI's 422, the other
  one the operation's success, 200 (FastAPI's default; the page names no other);
* components: a body schema whose `title` names a component is that component (exact);
  the others come from their tables (names and the types given; untyped fields are any
  value, as the page shows nothing more), `Type: string` ones are strings;
* security: the page's `OAuth2PasswordBearer` header, as a bearer scheme on the operations
  that list it.

Nothing is added that the page does not say; where Easel answers otherwise (statuses the page
leaves out), scripts/schemathesis_hooks.py amends the document as for the other dialects.

    python3 scripts/sartiq_openapi.py SPEC.md > sartiq.openapi.json
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

TITLE = "Sartiq Backend Server - Generation Models"
OPERATION = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) (/\S+)$")
DECODER = json.JSONDecoder()


def json_after(lines: list[str], i: int) -> tuple[Any, int]:
    """The JSON value starting at the first line from `i` that opens one, and the line
    after it."""
    while i < len(lines) and not lines[i].lstrip().startswith(("{", "[")):
        i += 1
    text = "\n".join(lines[i:])
    value, end = DECODER.raw_decode(text.lstrip())
    consumed = text[: len(text) - len(text.lstrip()) + end]
    return value, i + consumed.count("\n") + 1


def param_type(t: str) -> dict[str, Any]:
    return {"integer": {"type": "integer"}, "boolean": {"type": "boolean"}}.get(
        t, {"type": "string"}
    )


def parse_operations(lines: list[str], end: int) -> tuple[dict[str, Any], set[str]]:
    paths: dict[str, Any] = {}
    bodies: dict[str, Any] = {}  # component name -> exact schema from a body
    i = 0
    start = next(n for n, l in enumerate(lines) if l.strip() == "API Reference")
    i = start
    while i < end:
        m = OPERATION.match(lines[i].strip())
        if not m:
            i += 1
            continue
        method, path = m.group(1).lower(), m.group(2)
        j = i + 1
        nxt = next(
            (k for k in range(j, end) if OPERATION.match(lines[k].strip())), end
        )
        block = lines[j:nxt]
        op: dict[str, Any] = {"responses": {}}
        summary = next((l.strip() for l in block if l.strip()), "")
        op["summary"] = summary
        op["operationId"] = re.sub(r"\W+", "_", summary.lower()).strip("_")
        params = []
        for name in re.findall(r"\{(\w+)\}", path):
            params.append({"name": name, "in": "path", "required": True, "schema": {"type": "string"}})
        k = 0
        while k < len(block):
            line = block[k].strip()
            if line == "Input parameters":
                k += 2  # the table's header
                while k < len(block) and block[k].strip():
                    cells = block[k].split()
                    name, where, typ = cells[0], cells[1], cells[2]
                    if where == "header" and name == "OAuth2PasswordBearer":
                        op["security"] = [{"OAuth2PasswordBearer": []}]
                    elif where in ("query", "path"):
                        schema = param_type(typ)
                        default = cells[3] if len(cells) > 3 else "N/A"
                        if default != "N/A":
                            schema["default"] = int(default) if typ == "integer" else default
                        if not any(p["name"] == name for p in params):
                            params.append({"name": name, "in": where, "required": where == "path", "schema": schema})
                    k += 1
                continue
            if line == "Schema of the request body":
                schema, used = json_after(block, k + 1)
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
                bodies.setdefault(schema.get("title", ""), schema)
                k = used
                continue
            if line == "Schema of the response body":
                schema, used = json_after(block, k + 1)
                status = "422" if schema.get("title") == "HTTPValidationError" else "200"
                op["responses"][status] = {
                    "description": "Validation Error" if status == "422" else "Successful Response",
                    "content": {"application/json": {"schema": schema}},
                }
                bodies.setdefault(schema.get("title", ""), schema)
                k = used
                continue
            k += 1
        if params:
            op["parameters"] = params
        paths.setdefault(path, {})[method] = op
        i = nxt
    return paths, bodies


def table_type(t: str, names: set[str]) -> dict[str, Any]:
    if t in ("string", "integer", "boolean"):
        return {"type": t}
    m = re.fullmatch(r"string\((\w+)\)", t)
    if m:
        return {"type": "string", "format": m.group(1)}
    m = re.fullmatch(r"Array<(\w*)>", t)
    if m:
        item = m.group(1)
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"} if item in names else {}}
    if t in names:
        return {"$ref": f"#/components/schemas/{t}"}
    return {}


def parse_components(lines: list[str], start: int, bodies: dict[str, Any]) -> dict[str, Any]:
    end = next((n for n in range(start, len(lines)) if lines[n].strip() == "Security schemes"), len(lines))
    block = [l.rstrip() for l in lines[start + 1 : end]]
    # A component is a name line followed by a blank and either "Type: …" or a table header.
    starts = [
        n
        for n in range(len(block) - 2)
        if block[n].strip()
        and " " not in block[n].strip()
        and not block[n + 1].strip()
        and (block[n + 2].startswith("Type:") or block[n + 2].startswith("Name Type Description"))
    ]
    names = {block[n].strip() for n in starts}
    components: dict[str, Any] = {}
    for idx, n in enumerate(starts):
        name = block[n].strip()
        stop = starts[idx + 1] if idx + 1 < len(starts) else len(block)
        rows = [l for l in block[n + 2 : stop] if l.strip()]
        if name in bodies:
            components[name] = bodies[name]
        elif rows[0].startswith("Type:"):
            components[name] = {"type": rows[0].split(":", 1)[1].strip(), "title": name}
        else:
            props = {}
            for row in rows[1:]:
                cells = row.split(" ", 2)
                field = cells[0]
                typ = cells[1] if len(cells) > 1 else ""
                schema = table_type(typ, names)
                if not schema and len(cells) > 1:
                    # "name Description…": no type, the rest is the description.
                    schema = {}
                props[field] = schema
            components[name] = {"type": "object", "title": name, "properties": props}
    return components


def convert(text: str) -> dict[str, Any]:
    lines = text.splitlines()
    schemas_at = next(n for n, l in enumerate(lines) if l.strip() == "Schemas")
    paths, bodies = parse_operations(lines, schemas_at)
    version = re.search(re.escape(TITLE) + r" (\S+)", text)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": version.group(1) if version else "0"},
        "paths": paths,
        "components": {
            "schemas": parse_components(lines, schemas_at, bodies),
            "securitySchemes": {"OAuth2PasswordBearer": {"type": "http", "scheme": "bearer"}},
        },
    }


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        json.dump(convert(f.read()), sys.stdout, indent=1)
        sys.stdout.write("\n")
