"""Validates the answers the server's integration tests received against the OpenAPI document.

    check_responses.py OPENAPI_JSON RECORD_DIR

RECORD_DIR holds the `*.jsonl` files that server/tests/support.rs writes when
B3O_RECORD_RESPONSES is set: one JSON object per answer with `method`, `path`, `route` (the
route template of access.rs it reached, null when none), `status`, `content_type`, `body_bytes`,
`body` (JSON bodies) and `body_error`. For each answer on a route, the document must declare a
response for its status (exactly, as `4XX`, or `default`) with its content type, and a JSON
body must validate against that response's schema (JSON Schema 2020-12, the dialect of
OpenAPI 3.1, `date-time` formats checked). An answer with a body where the document declares
none fails too. Answers that reached no route of access.rs (unknown paths, the web app,
CORS preflights) are counted and not checked.

Exits 1 listing the failures, grouped (route, status and the schema error, with one example
each); otherwise prints one summary line.
"""

import glob
import json
import os
import re
import sys

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

BASE = "urn:b3o:openapi"
MAX_GROUPS_SHOWN = 40
# support.rs records JSON bodies up to 4 MiB; larger ones without their body.
MAX_RECORDED = 4 << 20


def escape(segment: str) -> str:
    """A JSON Pointer reference token."""
    return segment.replace("~", "~0").replace("/", "~1")


def media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";")[0].strip().lower()


def is_json(mt: str | None) -> bool:
    return mt is not None and (mt == "application/json" or mt.endswith("+json"))


class Document:
    """The OpenAPI document, with a validator per response schema (built once, then reused)."""

    def __init__(self, doc: dict):
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(BASE, resource)
        self.format_checker = Draft202012Validator.FORMAT_CHECKER
        self.validators: dict[str, Draft202012Validator] = {}
        self.verdicts: dict[tuple[str, str], tuple[str, str] | None] = {}

    def at(self, pointer: str):
        node = self.doc
        for token in pointer.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            node = node[int(token)] if isinstance(node, list) else node[token]
        return node

    def follow(self, pointer: str) -> tuple[dict, str]:
        """The object at `pointer` and its own pointer, through local `$ref`s."""
        node = self.at(pointer)
        for _ in range(16):
            ref = node.get("$ref") if isinstance(node, dict) else None
            if not (isinstance(ref, str) and ref.startswith("#/")):
                return node, pointer
            pointer = ref[1:]
            node = self.at(pointer)
        raise ValueError(f"$ref loop at {pointer}")

    def validator(self, schema_pointer: str) -> Draft202012Validator:
        v = self.validators.get(schema_pointer)
        if v is None:
            v = Draft202012Validator(
                {"$ref": f"{BASE}#{schema_pointer}"},
                registry=self.registry,
                format_checker=self.format_checker,
            )
            self.validators[schema_pointer] = v
        return v

    def check(self, r: dict) -> tuple[str, str] | None:
        """None when the answer `r` follows the document, else (kind, message)."""
        route, method, status = r["route"], r["method"].lower(), r["status"]
        op_pointer = f"/paths/{escape(route)}/{method}"
        try:
            _, op_pointer = self.follow(op_pointer)
        except (KeyError, IndexError):
            return ("undocumented route", "the document has no such operation")
        responses = self.at(op_pointer).get("responses", {})
        key = next(
            (k for k in (str(status), f"{status // 100}XX", "default") if k in responses),
            None,
        )
        if key is None:
            declared = ", ".join(sorted(responses)) or "none"
            return ("undocumented status", f"declared statuses: {declared}")
        response, response_pointer = self.follow(f"{op_pointer}/responses/{escape(key)}")
        content = response.get("content") or {}
        mt = media_type(r.get("content_type"))
        body_bytes = r.get("body_bytes") or 0
        if not content:
            if body_bytes > 0:
                return (
                    "undocumented body",
                    f"a {mt or 'untyped'} body of {body_bytes} bytes; response {key} declares none",
                )
            return None
        declared = {media_type(k): k for k in content}
        match = next(
            (
                declared[c]
                for c in (mt, f"{(mt or '').split('/')[0]}/*", "*/*")
                if c in declared
            ),
            None,
        )
        if match is None:
            return (
                "undocumented content type",
                f"{mt or 'no content type'}; response {key} declares {', '.join(sorted(content))}",
            )
        if not is_json(mt):
            return None
        if r.get("body_error"):
            return ("invalid JSON", r["body_error"])
        media = content[match]
        if "schema" not in media or (r.get("body") is None and body_bytes > MAX_RECORDED):
            return None  # nothing to check against, or too large to be recorded
        schema_pointer = f"{response_pointer}/content/{escape(match)}/schema"
        # Many answers are alike (error bodies above all): each is validated once.
        key = (schema_pointer, json.dumps(r.get("body"), sort_keys=True))
        if key not in self.verdicts:
            error = best_match(self.validator(schema_pointer).iter_errors(r.get("body")))
            self.verdicts[key] = None if error is None else (
                "schema",
                f"at {error.json_path} ({'/'.join(str(p) for p in error.schema_path)}): "
                f"{short(error.message)}",
            )
        return self.verdicts[key]


def short(text: str) -> str:
    return text if len(text) <= 240 else text[:240] + "…"


def read_records(record_dir: str) -> tuple[list[dict], int]:
    records, unreadable = [], 0
    for path in sorted(glob.glob(os.path.join(record_dir, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    unreadable += 1  # a test process killed mid-line
    return records, unreadable


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        document = Document(json.load(f))
    records, unreadable = read_records(sys.argv[2])
    if not records:
        print(
            f"responses: none recorded in {sys.argv[2]} (the server tests write them when "
            "B3O_RECORD_RESPONSES is set)",
            file=sys.stderr,
        )
        return 1
    failures: dict[tuple, list] = {}
    unrouted = checked = 0
    operations_seen = set()
    for r in records:
        if r.get("route") is None:
            unrouted += 1
            continue
        checked += 1
        operations_seen.add((r["method"].upper(), r["route"]))
        problem = document.check(r)
        if problem is not None:
            kind, message = problem
            group = failures.setdefault(
                # One group per place in the schema, whatever the array index.
                (r["method"].upper(), r["route"], r["status"], kind,
                 re.sub(r"\[\d+\]", "[*]", message.split(": ")[0])),
                [0, message, r],
            )
            group[0] += 1
    documented = {
        (m.upper(), p)
        for p, item in document.doc.get("paths", {}).items()
        for m in item
        if m in ("get", "put", "post", "delete", "patch", "head", "options", "trace")
    }
    failed = sum(g[0] for g in failures.values())
    for i, ((method, route, status, kind, _), (count, message, example)) in enumerate(
        sorted(failures.items(), key=lambda kv: kv[0][:3])
    ):
        if i == MAX_GROUPS_SHOWN:
            print(f"… and {len(failures) - i} more kinds of failure", file=sys.stderr)
            break
        body = json.dumps(example.get("body"))
        print(
            f"responses: {method} {route} -> {status}: {kind}: {message}\n"
            f"    {count}x, e.g. {example['method']} {example['path']} in {example.get('test')}; "
            f"body {short(body)}",
            file=sys.stderr,
        )
    print(
        f"responses: {checked} checked against the document ({len(operations_seen)} of "
        f"{len(documented)} documented operations exercised), {failed} failed; {unrouted} on no "
        f"route of access.rs not checked"
        + (f"; {unreadable} unreadable lines skipped" if unreadable else ""),
        file=sys.stderr if failed else sys.stdout,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
