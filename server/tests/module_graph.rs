//! Who owns what in the server, checked on its source (ARCHITECTURE.md, "Module
//! dependencies"):
//!
//! - the top-level modules import each other without a cycle. `state` (the composition root:
//!   `AppState` holds every area's runtime), `openapi` (it collects each area's routes), `lib`
//!   and `main` wire the others together and are left out;
//! - only `registry` writes the registry's tables (`model_versions`, `deployments`,
//!   `deployment_history`): rounds, demo seeding and the inference routes go through it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that wire the others together (they may import anything).
const WIRING: [&str; 4] = ["state", "openapi", "lib", "main"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file of the server with its top-level module (`registry/versions.rs` →
/// `registry`, `limits.rs` → `limits`) and its text without `//` comments.
fn sources() -> Vec<(String, PathBuf, String)> {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&src).unwrap();
            let first = rel.components().next().unwrap().as_os_str();
            let module = first.to_str().unwrap().trim_end_matches(".rs").to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let code: String = text
                .lines()
                .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
                .collect::<Vec<_>>()
                .join("\n");
            (module, path, code)
        })
        .collect()
}

/// The top-level names `code` imports from `crate`: `crate::a::b` gives `a`,
/// `crate::{a, b::c}` gives `a` and `b`.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // Names at the top level of the braces.
            let mut depth = 0;
            let mut current = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(std::mem::take(&mut current));
                        continue;
                    }
                    _ => {}
                }
                current.push(c);
            }
            names.insert(current);
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            names.insert(name);
        }
        rest = after;
    }
    names
        .into_iter()
        .map(|n| n.trim().split("::").next().unwrap().trim().to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources();
    let modules: BTreeSet<String> = files.iter().map(|(m, _, _)| m.clone()).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, _, code) in &files {
        if WIRING.contains(&module.as_str()) {
            continue;
        }
        let deps = graph.entry(module.clone()).or_default();
        for name in crate_imports(code) {
            if name != *module && modules.contains(&name) && !WIRING.contains(&name.as_str()) {
                deps.insert(name);
            }
        }
    }
    graph
}

/// A cycle of `graph` as a path (`a → b → a`), if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

#[test]
fn the_import_reader_sees_grouped_and_nested_paths() {
    let code = "use crate::{db::Db, error::{ApiError, Result}, registry};\n\
                let x = crate::limits::DEFAULT;\nuse super::x;";
    let got: Vec<String> = crate_imports(code).into_iter().collect();
    assert_eq!(got, ["db", "error", "limits", "registry"]);
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
    g.get_mut("c").unwrap().insert("a".to_string());
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
}

#[test]
fn top_level_server_modules_import_each_other_without_a_cycle() {
    let graph = module_graph();
    // The areas the ownership rules are about are all there (a rename would hide them).
    for area in [
        "registry",
        "inference",
        "jobs",
        "demo",
        "federation",
        "membership",
    ] {
        assert!(graph.contains_key(area), "no module `{area}` in server/src");
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between top-level server modules: {}\n(graph: {graph:#?})",
            cycle.join(" → ")
        );
    }
    // The direction ARCHITECTURE.md states.
    let imports = |a: &str, b: &str| graph[a].contains(b);
    assert!(imports("inference", "registry"));
    assert!(imports("federation", "registry"));
    assert!(imports("jobs", "inference"));
    assert!(!imports("registry", "inference") && !imports("registry", "federation"));
}

#[test]
fn only_the_registry_writes_versions_and_deployments() {
    let tables = ["model_versions", "deployments", "deployment_history"];
    let mut writers = Vec::new();
    for (module, path, code) in sources() {
        let flat = code.split_whitespace().collect::<Vec<_>>().join(" ");
        let flat = flat.to_ascii_lowercase();
        for table in tables {
            for verb in ["insert into", "update", "delete from"] {
                // `INSERT INTO deployments (`, `UPDATE deployments SET`, ...
                for end in [" ", "(", "\""] {
                    let needle = format!("{verb} {table}{end}");
                    if flat.contains(&needle) && module != "registry" {
                        writers.push(format!("{} ({needle})", path.display()));
                    }
                }
            }
        }
    }
    assert!(
        writers.is_empty(),
        "registry tables written outside `registry`: {writers:#?}"
    );
}
