"""Validates the server's OpenAPI document with an independent validator, and checks that it
documents exactly the routes of server/src/access.rs (the server's table of every route).

    validate_spec.py OPENAPI_JSON ACCESS_RS

Exits 1 naming each problem; on success prints one line: the version and the route count.
"""

import itertools
import json
import re
import sys

from openapi_spec_validator.validation import OpenAPIV31SpecValidator

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# `rule("GET", "/api/groups/{id}", GroupMember)`, also split over several lines by rustfmt.
RULE = re.compile(r'\brule\(\s*"([A-Z]+)",\s*"([^"]+)"')


def access_routes(access_rs: str) -> set[tuple[str, str]]:
    """The (METHOD, path) pairs of `ROUTES` in access.rs."""
    text = open(access_rs, encoding="utf-8").read()
    start = text.index("pub const ROUTES")
    table = text[start : text.index("];", start)]
    return {(m, p) for m, p in RULE.findall(table)}


def documented_routes(doc: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc.get("paths", {}).items()
        for method in METHODS
        if method in item
    }


def short(e: object) -> str:
    text = str(e).splitlines()[0] if str(e) else repr(e)
    return text if len(text) <= 300 else text[:300] + "…"


def problems(doc: dict, routes: set[tuple[str, str]]) -> list[str]:
    found = []
    version = str(doc.get("openapi", ""))
    if not version.startswith("3.1."):
        found.append(f"the document says openapi {version!r}, not 3.1.x")
    try:
        for e in itertools.islice(OpenAPIV31SpecValidator(doc).iter_errors(), 20):
            where = "/".join(str(p) for p in getattr(e, "path", []))
            found.append(f"not valid OpenAPI 3.1 at /{where}: {short(getattr(e, 'message', e))}")
    except Exception as e:  # e.g. a $ref to nowhere stops the validator
        found.append(f"not valid OpenAPI 3.1: {type(e).__name__}: {short(e)}")
    documented = documented_routes(doc)
    for method, path in sorted(routes - documented):
        found.append(f"{method} {path} is in access.rs but not in the document")
    for method, path in sorted(documented - routes):
        found.append(f"{method} {path} is documented but not a route of access.rs")
    return found


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        doc = json.load(f)
    routes = access_routes(sys.argv[2])
    if not routes:
        print(f"no routes found in {sys.argv[2]}", file=sys.stderr)
        return 1
    found = problems(doc, routes)
    for p in found:
        print(f"openapi: {p}", file=sys.stderr)
    if found:
        return 1
    print(
        f"OpenAPI {doc['openapi']} document valid; documents all {len(routes)} routes of access.rs"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
