"""A short federated run driven by a client generated from the server's OpenAPI document.

    federated_run.py BASE_URL PACKAGE_DIR

PACKAGE_DIR is the package openapi-python-client generated from BASE_URL/api/openapi.json
(scripts/contract.sh generates it and starts the server; this script starts nothing). Two
accounts sign up, the first creates a tabular group, the second joins it with the code, both
get ready and upload their column statistics, the owner starts training, and both read the
rounds; each step checks what the server says (phase, members, roles, rounds), not only the
status. Every request goes through the generated endpoint functions, every body through the
generated models (`from_dict`/`to_dict`), and every answer is parsed by them.

Endpoints are looked up by method and path (as in server/src/access.rs), not by the names the
generator derives from operation ids and tags, so renaming a handler does not break this run.
"""

import enum
import importlib
import inspect
import os
import re
import sys
import time
import types
import typing
from http.cookies import SimpleCookie

PASSWORD = "correct horse battery"


class RunFailed(Exception):
    pass


def expect(condition: bool, what: str, got: object = None) -> None:
    if not condition:
        raise RunFailed(what + ("" if got is None else f" (got {got!r})"))


def attr(model: object, name: str) -> object:
    """A field of a generated model: the generator appends `_` to names Python has a builtin
    for (`round` is `round_`)."""
    return getattr(model, name) if hasattr(model, name) else getattr(model, name + "_")


def plain(value: object) -> object:
    """An enum member's wire value; anything else as it is."""
    return value.value if isinstance(value, enum.Enum) else value


class Api:
    """The generated package's endpoint modules, by (METHOD, path)."""

    METHOD = re.compile(r'"method":\s*"(\w+)"')
    URL = re.compile(r'"url":\s*"([^"]+)"')

    def __init__(self, package_dir: str):
        package_dir = os.path.abspath(package_dir)
        sys.path.insert(0, os.path.dirname(package_dir))
        self.name = os.path.basename(package_dir)
        self.package = importlib.import_module(self.name)
        self.modules: dict[tuple[str, str], str] = {}
        api_dir = os.path.join(package_dir, "api")
        for folder, _, files in os.walk(api_dir):
            for file in files:
                if not file.endswith(".py") or file == "__init__.py":
                    continue
                source = open(os.path.join(folder, file), encoding="utf-8").read()
                method, url = self.METHOD.search(source), self.URL.search(source)
                if method and url:
                    rel = os.path.relpath(os.path.join(folder, file[:-3]), package_dir)
                    key = (method.group(1).upper(), url.group(1))
                    self.modules[key] = f"{self.name}." + rel.replace(os.sep, ".")

    def module(self, method: str, path: str) -> types.ModuleType:
        name = self.modules.get((method, path))
        expect(
            name is not None,
            f"the generated client has no {method} {path} (did the generator skip it? see its "
            "warnings above)",
        )
        return importlib.import_module(name)

    def client(self, base_url: str, **kwargs):
        return self.package.Client(base_url=base_url, raise_on_unexpected_status=True, **kwargs)

    def authenticated(self, base_url: str, token: str):
        return self.package.AuthenticatedClient(
            base_url=base_url, token=token, raise_on_unexpected_status=True
        )

    def call(self, client, method: str, path: str, status: int, body: dict | None = None, **params):
        """`method path` through its generated function; the parsed answer, which must have
        status `status` (any other documented one fails the run, naming the server's error)."""
        module = self.module(method, path)
        kwargs = dict(params)
        if body is not None:
            kwargs["body"] = body_model(module).from_dict(body)
        try:
            response = module.sync_detailed(client=client, **kwargs)
        except Exception as e:  # an undocumented status, or a body the models cannot parse
            raise RunFailed(f"{method} {path}: {type(e).__name__}: {e}") from e
        got = int(response.status_code)
        expect(
            got == status,
            f"{method} {path} answered {got}, expected {status}: "
            f"{response.content[:500].decode(errors='replace')}",
        )
        expect(response.parsed is not None, f"{method} {path} -> {got}: the client parsed no body")
        return response


def body_model(module: types.ModuleType):
    """The generated model class of an endpoint's JSON body."""
    annotation = inspect.signature(module.sync_detailed).parameters["body"].annotation
    candidates = typing.get_args(annotation) or (annotation,)
    for c in candidates:
        if hasattr(c, "from_dict"):
            return c
    raise RunFailed(f"{module.__name__}: no model for its body ({annotation!r})")


def session_cookie(response) -> dict[str, str]:
    cookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        cookie.load(header)
    expect(len(cookie) > 0, "sign-up set no session cookie")
    return {name: morsel.value for name, morsel in cookie.items()}


def sign_up(api: Api, base: str, who: str):
    """A new account and an API token for it: (email, authenticated client)."""
    email = f"{who}-{os.getpid()}-{time.monotonic_ns()}@example.org"
    anonymous = api.client(base)
    r = api.call(
        anonymous, "POST", "/api/auth/register", 201,
        body={"email": email, "display_name": who, "organisation": f"{who} Ltd",
              "password": PASSWORD},
    )
    me = r.parsed
    expect(me.user.email == email, "sign-up answers with the new account", me.user.email)
    csrf = me.csrf_token
    expect(isinstance(csrf, str) and csrf, "sign-up gives a CSRF token", csrf)
    browser = api.client(base, cookies=session_cookie(r), headers={"X-CSRF-Token": csrf})
    created = api.call(browser, "POST", "/api/auth/tokens", 201, body={"name": "contract"}).parsed
    expect(created.token.startswith("b3o_"), "an API token starts with b3o_", created.token[:4])
    return email, api.authenticated(base, created.token)


# The two organisations' local tables: (age, plan, churned) rows. Only their column summaries
# (models::stats::Summary) leave the "client".
TABLES = {
    "owner": [(34, "basic", "no"), (51, "pro", "yes"), (29, "basic", "no"), (45, None, "yes")],
    "member": [(38, "pro", "no"), (None, "basic", "yes"), (60, "pro", "no")],
}
SCHEMA = {
    "features": [{"name": "age", "kind": "numeric"}, {"name": "plan", "kind": "categorical"}],
    "target": {"name": "churned", "task": "binary_classification"},
    "excluded": [],
}


def summary(rows) -> dict:
    """`b3o_models::stats::Summary` of the rows: numeric and categorical column summaries."""
    ages = [r[0] for r in rows if r[0] is not None]
    columns = {
        "age": {
            "kind": "numeric", "count": len(ages), "missing": len(rows) - len(ages),
            "sum": float(sum(ages)), "sum_sq": float(sum(a * a for a in ages)),
            "min": float(min(ages)), "max": float(max(ages)),
        },
    }
    for i, name in ((1, "plan"), (2, "churned")):
        counts: dict[str, int] = {}
        for r in rows:
            if r[i] is not None:
                counts[r[i]] = counts.get(r[i], 0) + 1
        missing = sum(1 for r in rows if r[i] is None)
        columns[name] = {"kind": "categorical", "missing": missing, "counts": counts}
    return {"n_rows": len(rows), "columns": columns}


def run(base: str, package_dir: str) -> str:
    api = Api(package_dir)
    health = api.call(api.client(base), "GET", "/healthz", 200).parsed
    expect(plain(health.status) == "ok", "the server is healthy", health.status)

    _, owner = sign_up(api, base, "owner")
    _, member = sign_up(api, base, "member")

    created = api.call(owner, "POST", "/api/groups", 201, body={
        "name": "contract churn",
        "description": "a federated run through the generated client",
        "model": {"kind": "tabular", "schema": SCHEMA, "hidden": [4]},
        "hyperparameters": {"rounds": 1, "local_epochs": 1, "lr": 0.01},
        "strategy": {"name": "fedavg"},
        "min_clients": 2,
        "fraction_fit": 1.0,
        "round_deadline_secs": 120,
    }).parsed
    gid = created.group_id
    code = created.join_code
    expect(isinstance(code, str) and len(code) >= 8, "the owner gets a join code", code)

    joined = api.call(member, "POST", "/api/groups/join", 201,
                      body={"join_code": code.lower(), "name": "member org"}).parsed
    expect(joined.group_id == gid, "the join code leads to the group", joined.group_id)
    expect(joined.name == "member org", "the member's name is kept", joined.name)
    again = api.call(member, "POST", "/api/groups/join", 200, body={"join_code": code}).parsed
    expect(again.member_id == joined.member_id, "joining again gives the same membership")

    group = api.call(member, "GET", "/api/groups/{id}", 200, id=gid).parsed
    expect(plain(group.phase) == "enrolling", "a new group enrols", plain(group.phase))
    expect(group.members == 2, "owner and member are members", group.members)
    expect(plain(group.role) == "member", "the member sees its role", plain(group.role))
    expect(not isinstance(group.join_code, str), "members do not see the join code",
           group.join_code)
    expect(len(group.member_list) == 2, "both memberships are listed", len(group.member_list))

    for client, who in ((owner, "owner"), (member, "member")):
        ready = api.call(client, "POST", "/api/groups/{id}/ready", 200, id=gid,
                         body={"num_samples": len(TABLES[who])}).parsed
        expect(ready.num_samples == len(TABLES[who]), "ready with its sample count")

    refused = api.call(owner, "POST", "/api/groups/{id}/start", 409, id=gid).parsed
    expect("statistics" in refused.error.message,
           "training waits for every ready member's statistics", refused.error.message)

    api.call(owner, "POST", "/api/groups/{id}/statistics", 202, id=gid,
             body=summary(TABLES["owner"]))
    group = api.call(owner, "GET", "/api/groups/{id}", 200, id=gid).parsed
    expect(plain(group.phase) == "statistics", "the first summary opens the statistics phase",
           plain(group.phase))
    expect(group.join_code == code, "the owner sees the join code", group.join_code)
    api.call(member, "POST", "/api/groups/{id}/statistics", 202, id=gid,
             body=summary(TABLES["member"]))

    api.call(member, "POST", "/api/groups/{id}/start", 403, id=gid)
    started = api.call(owner, "POST", "/api/groups/{id}/start", 200, id=gid).parsed
    expect(plain(started.phase) == "training" and attr(started, "round") == 1,
           "starting opens round 1", (plain(started.phase), attr(started, "round")))

    group = api.call(member, "GET", "/api/groups/{id}", 200, id=gid).parsed
    expect(plain(group.phase) == "training", "the group trains", plain(group.phase))
    expect(group.ready_members == 2, "both members are ready", group.ready_members)
    expect(group.current_round == 1, "round 1 is current", group.current_round)

    rounds = api.call(member, "GET", "/api/groups/{id}/rounds", 200, id=gid).parsed.rounds
    expect([attr(r, "round") for r in rounds] == [1], "one round so far", len(rounds))
    first = rounds[0]
    expect(plain(first.state) in ("open", "collecting"), "round 1 takes updates",
           plain(first.state))
    expect(first.selected == 2, "both members are selected (fraction_fit 1)", first.selected)
    expect(first.reported == 0, "no update yet", first.reported)

    one = api.call(owner, "GET", "/api/groups/{id}/rounds/{number}", 200, id=gid, number=1).parsed
    expect(attr(one, "round") == 1 and one.base_version_id == first.base_version_id,
           "round 1 by number is the listed one")
    current = api.call(member, "GET", "/api/groups/{id}/rounds/current", 200, id=gid).parsed
    expect(attr(current, "round") == 1, "the current round is round 1", attr(current, "round"))
    api.call(member, "GET", "/api/groups/{id}/rounds/{number}", 404, id=gid, number=2)

    mine = api.call(owner, "GET", "/api/groups", 200).parsed.groups
    listed = [g for g in mine if g.id == gid]
    expect(len(listed) == 1 and plain(listed[0].role) == "owner",
           "the owner's group list has the group, as owner", [plain(g.role) for g in listed])
    return (f"group {gid}: 2 members joined, statistics merged, round 1 open with "
            f"{first.selected} selected")


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        print("federated run through the generated client: " + run(sys.argv[1], sys.argv[2]))
    except RunFailed as e:
        print(f"federated run through the generated client failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
