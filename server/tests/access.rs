//! The authorisation matrix (`b3o_server::access::ROUTES`) against the real router and the
//! sources: every route is called by an anonymous caller, a member of another group, a member,
//! the group's owner and an administrator, each answer is checked against the route's rule,
//! and no route escapes the table.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use axum::http::{Method, StatusCode};
use serde_json::json;

use b3o_server::access::{Access, ROUTES};

use crate::support::TestApp;

/// `/api/groups/{id}/rounds/{number}` -> `/api/groups/1/rounds/1`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                out.push('1');
            }
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

#[tokio::test]
async fn anonymous_callers_get_401_on_every_protected_route() {
    let app = TestApp::new().await;
    let mut failures = Vec::new();
    // Public models answer anonymous callers; the matrix checks them with a private one.
    let protected = |a: Access| a != Access::Public && a != Access::PublicIfModelPublic;
    for rule in ROUTES.iter().filter(|r| protected(r.access)) {
        let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
        // A JSON body, so a handler that reads the body before checking credentials (wrong
        // extractor order) shows up as a 400/422 instead of a 401.
        let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
        let reply = app.call(method, &concrete(rule.path), body, &[]).await;
        if reply.status != StatusCode::UNAUTHORIZED {
            failures.push(format!(
                "{} {} ({:?}): {} {}",
                rule.method, rule.path, rule.access, reply.status, reply.json
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "routes that do not refuse anonymous callers:\n{}",
        failures.join("\n")
    );
}

/// Every `(METHOD, path)` registered with `.route("path", get(..).post(..))` in the modules that
/// `lib.rs` declares.
fn routes_in_sources() -> BTreeSet<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut files = vec![src.join("lib.rs")];
    // Only modules compiled into the crate: a module still being written, not yet declared
    // in lib.rs, serves nothing.
    for line in lib.lines() {
        let line = line.trim();
        let Some(name) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'))
        else {
            continue;
        };
        let file = src.join(format!("{name}.rs"));
        if file.exists() {
            files.push(file);
        }
        collect_rs(&src.join(name), &mut files);
    }
    let mut routes = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Comments (docs showing `.route(…)`) route nothing.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        routes.extend(routes_in(&code));
    }
    routes
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `.route(` calls of one source file: the path literal, then the method routers named
/// up to the call's closing parenthesis.
fn routes_in(text: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let args = rest.trim_start();
        let Some(literal) = args.strip_prefix('"') else {
            continue;
        };
        let Some(end) = literal.find('"') else { break };
        let path = &literal[..end];
        // The arguments up to the matching `)` of `.route(`.
        let mut depth = 1;
        let mut close = literal.len();
        for (i, c) in literal.char_indices().filter(|(i, _)| *i > end) {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let handlers = &literal[end + 1..close];
        for method in ["get", "post", "put", "patch", "delete"] {
            let needle = format!("{method}(");
            let mut from = 0;
            while let Some(i) = handlers[from..].find(&needle).map(|i| from + i) {
                let before = handlers[..i].chars().next_back();
                if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    found.push((method.to_ascii_uppercase(), path.to_string()));
                }
                from = i + needle.len();
            }
        }
    }
    found
}

#[test]
fn every_routed_path_is_in_the_access_table_and_back() {
    let in_code = routes_in_sources();
    let in_table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = in_code.difference(&in_table).collect();
    let stale: Vec<_> = in_table.difference(&in_code).collect();
    assert!(
        missing.is_empty(),
        "routes missing from server/src/access.rs ROUTES (add them with their rule): {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "ROUTES lists routes no module registers (remove or fix them): {stale:?}"
    );
    assert!(in_code.contains(&("GET".to_string(), "/api/me".to_string())));
}

#[test]
fn the_route_scanner_reads_multi_line_and_chained_routes() {
    let text = r#"
        Router::new()
            .route("/a", get(list).post(create))
            .route(
                "/a/{id}",
                delete(remove),
            )
            .route("/b", get(get_thing))
            .merge(other())
    "#;
    let found = routes_in(text);
    assert_eq!(
        found,
        vec![
            ("GET".into(), "/a".into()),
            ("POST".into(), "/a".into()),
            ("DELETE".into(), "/a/{id}".into()),
            ("GET".into(), "/b".into()),
        ]
    );
    assert_eq!(concrete("/x/{id}/y/{n}"), "/x/1/y/1");
}

/// The only routes anyone may call without an account: health and discovery probes, metrics,
/// sign-up and sign-in. (Public models use [`Access::PublicIfModelPublic`]; the web app's
/// static files are the router's fallback, not a route.) A new public route must be added
/// here on purpose.
const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("POST", "/api/auth/register"),
    ("POST", "/api/auth/login"),
    // A static sample file for the demo (no user data).
    ("GET", "/api/demo/churn-sample.csv"),
    // The list of deployments: anonymous callers get the public models only (issue #21;
    // `inference::public_deployments_are_listed_and_read_by_everyone`).
    ("GET", "/api/deployments"),
    // Triton's model repository index: the same list, as V2 clients ask for it
    // (`inference::the_repository_index_lists_what_the_caller_may_call`).
    ("POST", "/v2/repository/index"),
    // The API's description and its reference UI (static, no user data).
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/api/docs/swagger-ui-bundle.js"),
    ("GET", "/api/docs/init.js"),
    ("GET", "/api/docs/swagger-ui.css"),
];

#[test]
fn only_health_metrics_and_signing_in_are_public() {
    let public: BTreeSet<(&str, &str)> = ROUTES
        .iter()
        .filter(|r| r.access == Access::Public)
        .map(|r| (r.method, r.path))
        .collect();
    let allowed: BTreeSet<(&str, &str)> = PUBLIC_ROUTES.iter().copied().collect();
    let unexpected: Vec<_> = public.difference(&allowed).collect();
    assert!(
        unexpected.is_empty(),
        "routes that answer without an account, beyond health, metrics and signing in: \
         {unexpected:?} (use PublicIfModelPublic for models, or list them in PUBLIC_ROUTES)"
    );
}

mod matrix {
    //! Every row of `ROUTES`, driven by its `Access` variant, against real accounts and two
    //! real groups. A row added by another module is covered as it stands; a row whose path
    //! parameter this fixture does not know (say `/api/jobs/{id}`) is called with an id that
    //! does not exist, which still checks 401 / 403 / 404 — extend [`Fixture::param`] to check
    //! success for its owner too.

    use std::fmt;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::{Value, json};

    use b3o_models::stats::Summary;
    use b3o_models::tabular::{InferOptions, Schema, infer_schema, read_csv};
    use b3o_server::access::{Access, ROUTES, RouteRule};
    use b3o_server::accounts;

    use crate::support::{Browser, PASSWORD, Reply, TestApp};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Caller {
        Anonymous,
        /// A member of group B only.
        OtherGroupMember,
        /// An active member of group A (not its owner).
        Member,
        /// Created group A (and is a member of it).
        Owner,
        /// An administrator in no group.
        Admin,
    }

    /// Call order: the owner last, so that what it deletes (its own session or token) is still
    /// there for the others' calls.
    const CALLERS: [Caller; 5] = [
        Caller::Anonymous,
        Caller::OtherGroupMember,
        Caller::Member,
        Caller::Admin,
        Caller::Owner,
    ];

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Expect {
        Unauthorized,
        Forbidden,
        /// 404 with the very body of the same call for ids that do not exist.
        Hidden,
        /// Success or a 4xx that is not about access (400, 404 of a sub-resource, 409…).
        Allowed,
        /// `Allowed`, or 404 (own-account resources: administrators may or may not see them).
        AllowedOrHidden,
    }

    fn expect(access: Access, caller: Caller) -> Expect {
        use Access as A;
        use Caller as C;
        match (access, caller) {
            (A::Public, _) => Expect::Allowed,
            (_, C::Anonymous) => Expect::Unauthorized,
            (A::Authenticated, _) => Expect::Allowed,
            (A::Owner, C::Owner) => Expect::Allowed,
            (A::Owner, C::Admin) => Expect::AllowedOrHidden,
            (A::Owner, _) => Expect::Hidden,
            (A::Admin, C::Admin) => Expect::Allowed,
            (A::Admin, _) => Expect::Forbidden,
            (_, C::OtherGroupMember) => Expect::Hidden,
            (A::GroupMember | A::PublicIfModelPublic, _) => Expect::Allowed,
            (A::GroupParticipant, C::Admin) => Expect::Forbidden,
            (A::GroupParticipant, _) => Expect::Allowed,
            (A::GroupOwner | A::DeploymentOwner, C::Member) => Expect::Forbidden,
            (A::GroupOwner | A::DeploymentOwner, _) => Expect::Allowed,
        }
    }

    /// Ids and names of things that do not exist, for the `Hidden` comparison.
    const MISSING_ID: &str = "999999";
    const MISSING_NAME: &str = "no-such-model";

    /// The two groups' accounts, and group A as rebuilt for one row.
    struct Fixture {
        app: TestApp,
        sessions: Vec<(Caller, String, Browser)>,
        schema: Schema,
        summary: Value,
        /// This row's group A: id, join code, version 0, deployment of version 0.
        group: i64,
        code: String,
        version: i64,
        deployment: String,
        /// A second session and an API token of the owner, for own-resource routes.
        owner_spare_session: i64,
        owner_spare_token: i64,
        /// A batch job of the owner on the deployment, for `/api/jobs/{id}` rows.
        owner_job: Option<i64>,
        /// The account `/api/admin/users/{id}` rows act on: a fresh one per row, since they
        /// reset its password, disable or delete it.
        target_user_id: i64,
    }

    impl Fixture {
        async fn new() -> Fixture {
            // The owner creates a group per row: more than `--max-groups-per-account`.
            // Admin rows register an account each to act on.
            let limits = b3o_server::limits::Limits {
                max_groups_per_account: usize::MAX,
                max_registrations_per_hour: u32::MAX,
                ..Default::default()
            };
            let app = TestApp::with_limits(Default::default(), limits).await;
            accounts::bootstrap_admin(
                &app.db,
                &app.accounts,
                Some("root@example.org"),
                Some(PASSWORD),
            )
            .await
            .unwrap();
            let admin = app.login_ok("root@example.org", PASSWORD).await;
            let owner = app
                .register_named("owner@example.org", "Olga", "Owner Bank")
                .await;
            let member = app
                .register_named("member@example.org", "Mia", "Member Bank")
                .await;
            let other_owner = app
                .register_named("owner-b@example.org", "Otto", "Other Owner")
                .await;
            let other = app
                .register_named("member-b@example.org", "Oda", "Other Bank")
                .await;
            let csv = "age,country,exited\n31,FR,0\n45,DE,1\n29,ES,0\n52,FR,1\n38,DE,0\n";
            let table = read_csv(csv.as_bytes()).unwrap();
            let options = InferOptions {
                target: Some("exited".into()),
                ..Default::default()
            };
            let schema = infer_schema(&table, &options).unwrap();
            let summary =
                serde_json::to_value(Summary::from_table(&table, &schema).unwrap()).unwrap();
            let f = Fixture {
                app,
                sessions: vec![
                    (
                        Caller::OtherGroupMember,
                        "member-b@example.org".into(),
                        other,
                    ),
                    (Caller::Member, "member@example.org".into(), member),
                    (Caller::Owner, "owner@example.org".into(), owner),
                    (Caller::Admin, "root@example.org".into(), admin),
                ],
                schema,
                summary,
                group: 0,
                code: String::new(),
                version: 0,
                deployment: String::new(),
                owner_spare_session: 0,
                owner_spare_token: 0,
                owner_job: None,
                target_user_id: 0,
            };
            // Group B: the other member's group, never touched again.
            let (b, code_b) = f.create_group(&other_owner, "group B").await;
            let joined = f
                .app
                .as_browser(
                    f.session(Caller::OtherGroupMember),
                    Method::POST,
                    "/api/groups/join",
                    Some(json!({ "join_code": code_b })),
                    true,
                )
                .await;
            assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.json);
            assert_eq!(joined.json["group_id"], b);
            f
        }

        fn session(&self, caller: Caller) -> &Browser {
            &self
                .sessions
                .iter()
                .find(|(c, _, _)| *c == caller)
                .expect("a signed-in caller")
                .2
        }

        async fn ok(
            &self,
            caller: Caller,
            method: Method,
            path: &str,
            body: Option<Value>,
        ) -> Value {
            let reply = self
                .app
                .as_browser(self.session(caller), method.clone(), path, body, true)
                .await;
            assert!(
                reply.status.is_success(),
                "{caller:?} {method} {path}: {} {}",
                reply.status,
                reply.json
            );
            reply.json
        }

        async fn create_group(&self, owner: &Browser, name: &str) -> (i64, String) {
            let body = json!({
                "name": name,
                "model": { "kind": "tabular", "schema": self.schema, "hidden": [4] },
                "hyperparameters": { "rounds": 2, "local_epochs": 1 },
                "min_clients": 1,
                "round_deadline_secs": 600,
            });
            let reply = self
                .app
                .as_browser(owner, Method::POST, "/api/groups", Some(body), true)
                .await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json);
            (
                reply.json["group_id"].as_i64().unwrap(),
                reply.json["join_code"].as_str().unwrap().to_string(),
            )
        }

        /// A fresh group A for row `row`: the member joined, ready and summarised, training
        /// started (round 1, version 0), version 0 deployed; plus a spare session and token
        /// of the owner. Rows change state (leave, fail a round, revoke…); none sees another's.
        async fn reset(&mut self, row: usize, rule: &RouteRule) {
            let (group, code) = self
                .create_group(self.session(Caller::Owner), &format!("group A {row}"))
                .await;
            let joined = self
                .ok(
                    Caller::Member,
                    Method::POST,
                    "/api/groups/join",
                    Some(json!({ "join_code": code })),
                )
                .await;
            assert_eq!(joined["group_id"], group);
            self.ok(
                Caller::Member,
                Method::POST,
                &format!("/api/groups/{group}/ready"),
                Some(json!({ "num_samples": 5 })),
            )
            .await;
            self.ok(
                Caller::Member,
                Method::POST,
                &format!("/api/groups/{group}/statistics"),
                Some(self.summary.clone()),
            )
            .await;
            self.ok(
                Caller::Owner,
                Method::POST,
                &format!("/api/groups/{group}/start"),
                None,
            )
            .await;
            let versions = self
                .ok(
                    Caller::Owner,
                    Method::GET,
                    &format!("/api/groups/{group}/versions"),
                    None,
                )
                .await;
            let version = versions["versions"][0]["id"].as_i64().unwrap();
            let deployment = format!("matrix-{row}");
            self.ok(
                Caller::Owner,
                Method::PUT,
                &format!("/api/deployments/{deployment}"),
                Some(json!({ "version_id": version })),
            )
            .await;
            let spare = self.app.login_ok("owner@example.org", PASSWORD).await;
            let sessions = self
                .ok(Caller::Owner, Method::GET, "/api/auth/sessions", None)
                .await;
            let spare_session = sessions
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["id"].as_i64())
                .max()
                .unwrap();
            drop(spare);
            let token = self
                .ok(
                    Caller::Owner,
                    Method::POST,
                    "/api/auth/tokens",
                    Some(json!({ "name": format!("spare {row}") })),
                )
                .await;
            if rule.path.starts_with("/api/admin/users/") {
                let target = self
                    .app
                    .register(&format!("target-{row}@example.org"))
                    .await;
                let me = self
                    .app
                    .as_browser(&target, Method::GET, "/api/me", None, false)
                    .await;
                self.target_user_id = me.json["user"]["id"].as_i64().unwrap();
            }
            self.owner_job = if rule.path.starts_with("/api/jobs/") {
                Some(self.submit_job(&deployment).await)
            } else {
                None
            };
            self.group = group;
            self.code = code;
            self.version = version;
            self.deployment = deployment;
            self.owner_spare_session = spare_session;
            self.owner_spare_token = token["id"].as_i64().unwrap();
        }

        /// The owner submits a batch job (a raw CSV body) on `deployment`.
        async fn submit_job(&self, deployment: &str) -> i64 {
            let owner = self.session(Caller::Owner);
            let request = Request::post(format!("/api/jobs?model={deployment}"))
                .header("cookie", &owner.cookie)
                .header("x-csrf-token", &owner.csrf)
                .header("content-type", "text/csv")
                .body(Body::from("age,country\n40,FR\n33,DE\n"))
                .unwrap();
            let reply = self.app.send(request).await;
            assert!(reply.status.is_success(), "{} {}", reply.status, reply.json);
            reply.json["id"].as_i64().expect("the job's id")
        }

        /// Signs callers whose session a row ended (logout) in again.
        async fn restore_sessions(&mut self) {
            for i in 0..self.sessions.len() {
                let (caller, email, browser) = &self.sessions[i];
                let me = self
                    .app
                    .as_browser(browser, Method::GET, "/api/me", None, false)
                    .await;
                if me.status == StatusCode::UNAUTHORIZED {
                    let (caller, email) = (*caller, email.clone());
                    let fresh = self.app.login_ok(&email, PASSWORD).await;
                    self.sessions[i] = (caller, email, fresh);
                }
            }
        }

        /// The value of path parameter `param` of `path` for this row, or for something that
        /// does not exist when `missing`.
        fn param(&self, path: &str, param: &str, missing: bool) -> String {
            if param == "number" {
                return "1".into();
            }
            let name_like = param == "name";
            if missing {
                return if name_like { MISSING_NAME } else { MISSING_ID }.into();
            }
            let id = if path.starts_with("/api/groups/") {
                self.group
            } else if path.starts_with("/api/versions/") || param == "version" {
                self.version
            } else if name_like {
                return self.deployment.clone();
            } else if path.starts_with("/api/auth/sessions/") {
                self.owner_spare_session
            } else if path.starts_with("/api/auth/tokens/") {
                self.owner_spare_token
            } else if path.starts_with("/api/admin/users/") {
                self.target_user_id
            } else if let (true, Some(job)) = (path.starts_with("/api/jobs/"), self.owner_job) {
                job
            } else {
                return MISSING_ID.into();
            };
            id.to_string()
        }

        fn path(&self, template: &str, missing: bool) -> String {
            let mut out = String::new();
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let close = rest[open..].find('}').map_or(rest.len(), |c| open + c);
                out.push_str(&self.param(template, &rest[open + 1..close], missing));
                rest = &rest[(close + 1).min(rest.len())..];
            }
            out.push_str(rest);
            out
        }

        /// A body of the right shape, so that the access check, not the body's parsing,
        /// decides the answer.
        fn body(&self, rule: &RouteRule, missing: bool) -> Option<Value> {
            let version = if missing {
                json!(MISSING_ID.parse::<i64>().unwrap())
            } else {
                json!(self.version)
            };
            let body = match (rule.method, rule.path) {
                ("GET" | "DELETE", _) => return None,
                (_, p) if p.ends_with("/ready") => json!({ "num_samples": 5 }),
                (_, p) if p.ends_with("/failure") => json!({ "reason": "matrix" }),
                (_, p) if p.ends_with("/progress") => json!({ "fraction": 0.5 }),
                (_, p) if p.ends_with("/secagg/keys") => {
                    let key = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
                    json!({ "cipher": key, "mask": key })
                }
                (_, p) if p.ends_with("/secagg/shares") || p.ends_with("/secagg/unmask") => {
                    json!({ "shares": [] })
                }
                (_, p) if p.ends_with("/evaluation") => {
                    json!({ "num_samples": 5, "metrics": { "accuracy": 0.5 } })
                }
                (_, "/api/groups/join") => json!({ "join_code": self.code }),
                ("PUT", "/api/deployments/{name}") => json!({ "version_id": version }),
                (_, p) if p.ends_with("/sharing") => json!({ "public": false }),
                (_, p) if p.ends_with("/disabled") => json!({ "disabled": true }),
                (_, p) if p.ends_with("/role") => json!({ "role": "member" }),
                _ => json!({}),
            };
            Some(body)
        }

        async fn call(&self, caller: Caller, rule: &RouteRule, missing: bool) -> Reply {
            let method = Method::from_bytes(rule.method.as_bytes()).unwrap();
            let path = self.path(rule.path, missing);
            let body = self.body(rule, missing);
            if caller == Caller::Anonymous {
                self.app.call(method, &path, body, &[]).await
            } else {
                self.app
                    .as_browser(self.session(caller), method, &path, body, true)
                    .await
            }
        }
    }

    struct Seen<'a>(&'a Reply);

    impl fmt::Display for Seen<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} {}", self.0.status, self.0.json)
        }
    }

    fn access_refusal(status: StatusCode) -> bool {
        status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_route_answers_each_kind_of_caller_by_its_rule() {
        let mut f = Fixture::new().await;
        let mut failures = Vec::new();
        for (row, rule) in ROUTES.iter().enumerate() {
            f.reset(row, rule).await;
            for caller in CALLERS {
                let want = expect(rule.access, caller);
                let got = f.call(caller, rule, false).await;
                // The same call about things that do not exist: what "hidden" must look like.
                let has_params = rule.path.contains('{')
                    || (rule.method == "PUT" && rule.path == "/api/deployments/{name}");
                let missing = if has_params && caller != Caller::Anonymous {
                    Some(f.call(caller, rule, true).await)
                } else {
                    None
                };
                // Names echoed in messages ("no model named `x`") are the caller's own input:
                // compare with the name blanked out. Ids must not be echoed at all.
                let blank = |r: &Reply, name: &str| r.json.to_string().replace(name, "{name}");
                let looks_hidden = |r: &Reply| {
                    r.status == StatusCode::NOT_FOUND
                        && missing.as_ref().is_some_and(|m| {
                            m.status == StatusCode::NOT_FOUND
                                && blank(m, MISSING_NAME) == blank(r, &f.deployment)
                        })
                };
                let ok = match want {
                    Expect::Unauthorized => got.status == StatusCode::UNAUTHORIZED,
                    Expect::Forbidden => got.status == StatusCode::FORBIDDEN,
                    Expect::Hidden => looks_hidden(&got),
                    Expect::Allowed => {
                        !access_refusal(got.status)
                            && !got.status.is_server_error()
                            && !looks_hidden(&got)
                    }
                    Expect::AllowedOrHidden => {
                        !access_refusal(got.status) && !got.status.is_server_error()
                    }
                };
                if !ok {
                    let missing = missing
                        .as_ref()
                        .map(|m| format!(" (for missing ids: {})", Seen(m)))
                        .unwrap_or_default();
                    failures.push(format!(
                        "{} {} ({:?}) as {caller:?}: expected {want:?}, got {}{missing}",
                        rule.method,
                        rule.path,
                        rule.access,
                        Seen(&got)
                    ));
                }
            }
            f.restore_sessions().await;
        }
        assert!(
            failures.is_empty(),
            "{} answer(s) break the authorisation matrix:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn every_rule_has_an_expectation_for_every_caller() {
        // `expect` is a total match: a new `Access` variant fails to compile until it has
        // a line there. This pins the rules that matter most.
        assert_eq!(
            expect(Access::GroupMember, Caller::OtherGroupMember),
            Expect::Hidden
        );
        assert_eq!(
            expect(Access::GroupOwner, Caller::Member),
            Expect::Forbidden
        );
        assert_eq!(
            expect(Access::Authenticated, Caller::Anonymous),
            Expect::Unauthorized
        );
        for rule in ROUTES {
            for caller in CALLERS {
                let _ = expect(rule.access, caller);
            }
        }
    }
}

/// Programs reach group routes with an API token exactly as browsers do with their session:
/// members in, others 404, a revoked token 401.
#[tokio::test]
async fn api_tokens_open_the_callers_groups_only() {
    let app = TestApp::new().await;
    let owner = app.register("owner@example.org").await;
    let stranger = app.register("stranger@example.org").await;
    let owner_token = app.api_token(&owner).await;
    let stranger_token = app.api_token(&stranger).await;
    let body = json!({
        "name": "tokens",
        "model": { "kind": "custom", "layout": [{ "name": "w", "shape": [2] }] },
        "hyperparameters": { "rounds": 1 },
        "min_clients": 1,
    });
    let created = app
        .as_program(&owner_token, Method::POST, "/api/groups", Some(body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let path = format!("/api/groups/{}", created.json["group_id"]);
    let mine = app.as_program(&owner_token, Method::GET, &path, None).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.json);
    assert_eq!(mine.json["role"], "owner");
    let theirs = app
        .as_program(&stranger_token, Method::GET, &path, None)
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    // No CSRF header is needed with a token, even to change state.
    let ready = app
        .as_program(
            &owner_token,
            Method::POST,
            &format!("{path}/ready"),
            Some(json!({ "num_samples": 3 })),
        )
        .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json);
    let tokens = app
        .as_browser(&owner, Method::GET, "/api/auth/tokens", None, false)
        .await;
    let id = tokens.json[0]["id"].as_i64().unwrap();
    let revoked = app
        .as_browser(
            &owner,
            Method::DELETE,
            &format!("/api/auth/tokens/{id}"),
            None,
            true,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let after = app.as_program(&owner_token, Method::GET, &path, None).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

/// Browsers change groups with their session cookie and the CSRF token; without the token the
/// change is refused (403), and after signing out the cookie opens nothing (401).
#[tokio::test]
async fn group_changes_from_a_browser_need_the_csrf_token() {
    let app = TestApp::new().await;
    let owner = app.register("owner@example.org").await;
    let body = json!({
        "name": "csrf",
        "model": { "kind": "custom", "layout": [{ "name": "w", "shape": [2] }] },
        "hyperparameters": { "rounds": 1 },
        "min_clients": 1,
    });
    let forged = app
        .as_browser(
            &owner,
            Method::POST,
            "/api/groups",
            Some(body.clone()),
            false,
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.json);
    let created = app
        .as_browser(&owner, Method::POST, "/api/groups", Some(body), true)
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json);
    let group = created.json["group_id"].as_i64().unwrap();
    let ready = format!("/api/groups/{group}/ready");
    let samples = json!({ "num_samples": 3 });
    let forged = app
        .as_browser(&owner, Method::POST, &ready, Some(samples.clone()), false)
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.json);
    let ok = app
        .as_browser(&owner, Method::POST, &ready, Some(samples), true)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    // Reading needs no token (EventSource and links cannot send one).
    let events = app
        .as_browser(
            &owner,
            Method::GET,
            &format!("/api/groups/{group}/events"),
            None,
            false,
        )
        .await;
    assert_eq!(events.status, StatusCode::OK);
    let out = app
        .as_browser(&owner, Method::POST, "/api/auth/logout", None, true)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = app
        .as_browser(
            &owner,
            Method::GET,
            &format!("/api/groups/{group}"),
            None,
            false,
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}
