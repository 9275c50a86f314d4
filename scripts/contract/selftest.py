"""The contract checks catch what they are for: run on the hand-written sample document
(sample/openapi.json), known-good answers pass and each kind of bad answer or document fails.
Run by scripts/contract.sh before the real checks (a second or so).
"""

import copy
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import check_responses  # noqa: E402
import validate_spec  # noqa: E402

SAMPLE = json.load(open(os.path.join(HERE, "sample", "openapi.json"), encoding="utf-8"))
ERROR = {"error": {"code": "not_found", "message": "group 9 does not exist"}}
ROUND = {
    "round": 1, "state": "open", "base_version_id": 3, "result_version_id": None,
    "config": {"local_epochs": 1}, "opened_at": 1764680000, "deadline_at": 1764680600,
    "closed_at": None, "failure": None, "metrics": None, "selected": 2, "reported": 0,
}


def record(method, path, route, status, body=None, content_type="application/json", **extra):
    r = {
        "test": "selftest", "method": method, "path": path, "route": route, "status": status,
        "content_type": content_type,
        "body_bytes": len(json.dumps(body)) if body is not None else 0,
        "body": body, "body_error": None,
    }
    r.update(extra)
    return r


GOOD = [
    record("GET", "/healthz", "/healthz", 200, {
        "status": "ok", "version": "0.1.0", "database": "ok",
        "instance_created_at": "2026-12-02T15:00:00.123Z"}),
    record("POST", "/api/groups/join", "/api/groups/join", 201,
           {"group_id": 1, "member_id": 2, "name": "org 0", "extra": "lenient"}),
    record("GET", "/api/groups/9", "/api/groups/{id}", 404, ERROR),
    record("GET", "/api/groups/1/rounds/1", "/api/groups/{id}/rounds/{number}", 200, ROUND),
    record("GET", "/api/groups/1/rounds", "/api/groups/{id}/rounds", 200, {"rounds": [ROUND]}),
    record("GET", "/api/groups/1/rounds/current", "/api/groups/{id}/rounds/current", 200,
           ROUND, content_type="application/json; charset=utf-8"),
    # Not on a route of access.rs: counted, not checked.
    record("GET", "/nowhere", None, 404, content_type="text/html", body_bytes=10),
]

# (answer, kind of failure expected)
BAD = [
    (record("GET", "/api/groups/1", "/api/groups/{id}", 409, ERROR), "undocumented status"),
    (record("GET", "/api/groups/1/rounds/1", "/api/groups/{id}/rounds/{number}", 200,
            dict(ROUND, state="paused")), "schema"),
    (record("GET", "/api/groups/1/rounds/1", "/api/groups/{id}/rounds/{number}", 200,
            {k: v for k, v in ROUND.items() if k != "base_version_id"}), "schema"),
    (record("GET", "/healthz", "/healthz", 200, {
        "status": "ok", "version": "0.1.0", "database": "ok",
        "instance_created_at": "yesterday"}), "schema"),
    (record("GET", "/api/groups/1/rounds", "/api/groups/{id}/rounds", 200,
            {"rounds": [dict(ROUND, opened_at="1764680000")]}), "schema"),
    (record("GET", "/api/groups/9", "/api/groups/{id}", 404, {"error": "gone"}), "schema"),
    (record("GET", "/api/groups/9", "/api/groups/{id}", 404, None, content_type="text/plain",
            body_bytes=9), "undocumented content type"),
    (record("GET", "/api/groups/9", "/api/groups/{id}", 404, None,
            body_error="not JSON: expected value at line 1 column 1", body_bytes=3),
     "invalid JSON"),
    (record("DELETE", "/api/groups/9", "/api/groups/{id}", 200, ERROR), "undocumented route"),
]


def check_answers():
    doc = check_responses.Document(SAMPLE)
    for r in GOOD:
        if r["route"] is not None:
            assert doc.check(r) is None, (r, doc.check(r))
    for r, kind in BAD:
        problem = doc.check(r)
        assert problem is not None and problem[0] == kind, (r["status"], r["body"], kind, problem)
    # A declared response without content, answered with a body.
    no_content = copy.deepcopy(SAMPLE)
    no_content["paths"]["/api/groups/{id}"]["get"]["responses"]["404"].pop("content")
    problem = check_responses.Document(no_content).check(
        record("GET", "/api/groups/9", "/api/groups/{id}", 404, ERROR))
    assert problem and problem[0] == "undocumented body", problem


def check_command_line():
    """The script's exit status and output: 0 on good answers, 1 naming route and status."""
    script = os.path.join(HERE, "check_responses.py")
    sample = os.path.join(HERE, "sample", "openapi.json")
    with tempfile.TemporaryDirectory() as d:
        run = lambda: subprocess.run(  # noqa: E731
            [sys.executable, script, sample, d], capture_output=True, text=True)
        assert run().returncode == 1, "no recorded answers must fail"
        with open(os.path.join(d, "1.jsonl"), "w") as f:
            for r in GOOD:
                f.write(json.dumps(r) + "\n")
        ok = run()
        assert ok.returncode == 0 and "6 checked" in ok.stdout, ok
        with open(os.path.join(d, "2.jsonl"), "w") as f:
            f.write(json.dumps(BAD[0][0]) + "\n")
        bad = run()
        assert bad.returncode == 1, bad
        assert "GET /api/groups/{id} -> 409: undocumented status" in bad.stderr, bad.stderr


def check_documents():
    routes = validate_spec.documented_routes(SAMPLE)
    assert validate_spec.problems(SAMPLE, routes) == []
    broken = copy.deepcopy(SAMPLE)
    broken["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"] = {"type": "strng"}
    del broken["info"]["version"]
    found = validate_spec.problems(broken, routes | {("GET", "/api/missing")})
    assert any("/type" in p for p in found), found
    assert any("'version' is a required property" in p for p in found), found
    assert "GET /api/missing is in access.rs but not in the document" in found, found
    old = dict(SAMPLE, openapi="3.0.3")
    assert any("not 3.1.x" in p for p in validate_spec.problems(old, routes))
    access_rs = os.path.join(HERE, "..", "..", "server", "src", "access.rs")
    rules = validate_spec.access_routes(access_rs)
    assert ("GET", "/api/groups/{id}/rounds/{number}") in rules and len(rules) > 40, rules


if __name__ == "__main__":
    check_answers()
    check_command_line()
    check_documents()
    print("contract self-test: the checks pass the sample's good answers and catch "
          f"{len(BAD) + 1} kinds of bad ones")
