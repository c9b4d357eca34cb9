//! The workspace's dependency rules, read from `cargo metadata` and the sources, so that the
//! crate layout described in ARCHITECTURE.md cannot erode silently:
//!
//! - the domain links no database, broker or HTTP crate;
//! - the services (ingest, projector, query API, alerting) link no storage driver: they program against
//!   the seams in `tally-domain`, and only the binary (`tally`) wires adapters in;
//! - the projector links no HTTP server; the alert evaluator (`tally-alerting`) no storage
//!   driver and no HTTP server (it is an HTTP client of webhooks only); the console
//!   (`tally-console`) neither a storage driver nor the query API's code: it reaches the API's
//!   routes only through the router it is given;
//! - within each of the project's library crates, no two top-level modules use each other,
//!   directly or through others (no import cycle).
//!
//! Dependencies are followed transitively along normal (non-dev, non-build) edges, as they
//! are linked into the crate's library.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The crates a library must not link, transitively.
const RULES: &[(&str, &[&str])] = &[
    (
        "tally-domain",
        &[
            "axum",
            "rdkafka",
            "sqlx",
            "clickhouse",
            "rusqlite",
            "hyper",
            "reqwest",
        ],
    ),
    (
        "tally-schemas",
        &["axum", "rdkafka", "sqlx", "clickhouse", "rusqlite"],
    ),
    ("tally-http", &["rdkafka", "sqlx", "clickhouse", "rusqlite"]),
    (
        "tally-ingest",
        &["rdkafka", "sqlx", "clickhouse", "rusqlite"],
    ),
    (
        "tally-projector",
        &["rdkafka", "sqlx", "clickhouse", "rusqlite", "axum", "hyper"],
    ),
    (
        "tally-query-api",
        &["rdkafka", "sqlx", "clickhouse", "rusqlite"],
    ),
    (
        "tally-alerting",
        &["rdkafka", "sqlx", "clickhouse", "rusqlite", "axum"],
    ),
    (
        "tally-console",
        &[
            "rdkafka",
            "sqlx",
            "clickhouse",
            "rusqlite",
            "tally-query-api",
            "tally-storage",
        ],
    ),
];

/// The machine's target triple (what the build links for).
fn host() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host")
        .to_string()
}

/// The workspace's dependency graph as built on this machine (other platforms' dependencies,
/// which a build never downloads, are left out).
fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Package id → name, and package id → ids of its normal dependencies.
struct Graph {
    names: BTreeMap<String, String>,
    normal: BTreeMap<String, Vec<String>>,
}

fn graph(meta: &Value) -> Graph {
    let names = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().expect("id").to_string(),
                p["name"].as_str().expect("name").to_string(),
            )
        })
        .collect();
    let mut normal = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve.nodes") {
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().expect("pkg").to_string())
            .collect();
        normal.insert(node["id"].as_str().expect("id").to_string(), deps);
    }
    Graph { names, normal }
}

/// For `crate_name`, each package it links and one path that brings it in.
fn linked(g: &Graph, crate_name: &str) -> BTreeMap<String, Vec<String>> {
    let root = g
        .names
        .iter()
        .find(|(_, n)| n.as_str() == crate_name)
        .map(|(id, _)| id.clone())
        .unwrap_or_else(|| panic!("{crate_name} is not in the workspace"));
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut queue = vec![(root.clone(), vec![crate_name.to_string()])];
    let mut seen = BTreeSet::from([root]);
    while let Some((id, path)) = queue.pop() {
        for dep in g.normal.get(&id).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                let mut p = path.clone();
                p.push(g.names[dep].clone());
                paths.entry(g.names[dep].clone()).or_insert(p.clone());
                queue.push((dep.clone(), p));
            }
        }
    }
    paths
}

#[test]
fn services_and_domain_link_no_forbidden_crate() {
    let g = graph(&metadata());
    let mut broken = Vec::new();
    for (krate, forbidden) in RULES {
        let links = linked(&g, krate);
        for f in *forbidden {
            if let Some(path) = links.get(*f) {
                broken.push(format!("{krate} links {f}: {}", path.join(" → ")));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_rules_see_what_a_crate_links() {
    // The walk itself, on facts of this workspace that hold by construction: the binary links
    // every adapter driver and the storage crate links each of them.
    let g = graph(&metadata());
    for krate in ["tally", "tally-storage"] {
        let links = linked(&g, krate);
        for driver in ["rdkafka", "sqlx", "clickhouse", "rusqlite"] {
            assert!(links.contains_key(driver), "{krate} should link {driver}");
        }
    }
    assert!(linked(&g, "tally-http").contains_key("axum"));
    assert!(linked(&g, "tally-projector").contains_key("tally-domain"));
}

/// The workspace's own library crates: name and `src/` directory.
fn libraries(meta: &Value) -> Vec<(String, PathBuf)> {
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|m| m.as_str().expect("member id"))
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| members.contains(p["id"].as_str().expect("id")))
        .filter_map(|p| {
            let lib = p["targets"].as_array()?.iter().find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "lib"))
            })?;
            let src = Path::new(lib["src_path"].as_str()?).parent()?.to_path_buf();
            Some((p["name"].as_str()?.to_string(), src))
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn production_code(text: &str) -> String {
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        let without_comment = match t.find("//") {
            Some(i) => &t[..i],
            None => t,
        };
        code.push_str(without_comment);
        code.push('\n');
    }
    code
}

/// Top-level modules of the crate named by `crate::…` paths in `code`, including the items of
/// `use crate::{a, b::c}` groups.
fn modules_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue; // e.g. `tally_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Items at the group's own depth: `a`, `b::{c, d}` → a, b.
            let (mut depth, mut item_start) = (0usize, true);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident(&group[i..]);
                        if !name.is_empty() {
                            used.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

/// A cycle among `edges`, if there is one.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                1 => {
                    let from = stack.iter().position(|n| n == next).expect("on stack");
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, edges, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The top-level module graph of a crate: which top-level module's code names which other.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let top = |path: &Path| -> Option<String> {
        let rel = path.strip_prefix(src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?.to_string();
        let name = first.trim_end_matches(".rs").to_string();
        (name != "lib" && name != "main").then_some(name)
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top(f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = top(file) else { continue };
        let code = production_code(&std::fs::read_to_string(file).expect("read source"));
        let uses = edges.entry(module.clone()).or_default();
        for used in modules_used(&code) {
            if used != module && modules.contains(&used) {
                uses.insert(used);
            }
        }
    }
    edges
}

#[test]
fn no_import_cycle_between_the_modules_of_a_crate() {
    let meta = metadata();
    let libs = libraries(&meta);
    assert!(
        libs.iter().any(|(n, _)| n == "tally-domain"),
        "the workspace's libraries were not found: {libs:?}"
    );
    let mut cycles = Vec::new();
    for (name, src) in libs {
        if let Some(cycle) = find_cycle(&module_graph(&src)) {
            cycles.push(format!("{name}: {}", cycle.join(" → ")));
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_cycle_check_finds_cycles_and_reads_use_groups() {
    let used = modules_used(
        "use crate::{store::{ConfigStore, StoreError}, audit};\nlet x = crate::rollup::Rollup::default();\nuse tally_crate::nope;",
    );
    assert_eq!(
        used,
        BTreeSet::from([
            "store".to_string(),
            "audit".to_string(),
            "rollup".to_string()
        ])
    );
    let code = production_code(
        "use crate::a; // crate::b\n#[cfg(test)]\nmod tests {\n use crate::c;\n}\n",
    );
    assert_eq!(modules_used(&code), BTreeSet::from(["a".to_string()]));

    let edges = |pairs: &[(&str, &str)]| {
        let mut e: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            e.entry(a.to_string()).or_default().insert(b.to_string());
        }
        e
    };
    let cycle = find_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")]))
        .expect("a → b → c → a is a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4);
    assert_eq!(
        find_cycle(&edges(&[("a", "b"), ("a", "c"), ("b", "c")])),
        None
    );
}
