//! The shape of the code, checked: no import cycle between webhookd's modules (nor between the
//! files of one module), and the hard boundaries of DEVELOPERS.md: only `store::sqlite` names
//! rusqlite, only `deliver::http` names ureq, only `daemon::signals` touches signals and only
//! `daemon::systemd` sd-notify, only `cmd` prints to stdout; no file in `src/` is much over 500
//! lines.
//!
//! It reads the sources (test code at the bottom of a file, after its `#[cfg(test)]`, is left
//! out: tests may reach across), so it runs with `cargo test` and needs no other tool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rows of DEVELOPERS.md's layout, leaves first.
const ROWS: &[&[&str]] = &[
    &[
        "check", "time", "text", "sign", "threads", "error", "model", "filter", "message",
        "faults", "random", "egress", "history",
    ],
    &["cli", "config", "endpoint", "logging"],
    &["verdict", "ingest", "counters"],
    &["store"],
    &["deliver", "alert"],
    &["view"],
    &["ops"],
    &["api"],
    &["daemon"],
    &["cmd"],
];

/// Longest file allowed in `src/` (test modules included).
const MAX_LINES: usize = 530;

fn sources() -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    out
}

/// The module path of a library file (`src/store/sqlite/queue.rs` ->
/// `["store", "sqlite", "queue"]`); `None` for the binaries.
fn module_of(path: &Path) -> Option<Vec<String>> {
    let rel = path
        .strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
        .unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts[0] == "bin" || parts == ["main"] {
        return None;
    }
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    Some(parts)
}

/// The code of a file without its test module and comments.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules a file's code refers to: `crate::a::b` and `use crate::{a, b::c}` give `a` and
/// `b`; `super::x` is resolved against the file's own module.
fn references(module: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = ident(item.trim());
                let second = item.trim().split("::").nth(1).map(ident);
                if !first.is_empty() {
                    out.insert(match second {
                        Some(s) if !s.is_empty() && s.starts_with(char::is_lowercase) => {
                            vec![first, s]
                        }
                        _ => vec![first],
                    });
                }
            }
        } else {
            let first = ident(after);
            let second = after
                .strip_prefix(first.as_str())
                .and_then(|a| a.strip_prefix("::"))
                .map(ident)
                .filter(|s| s.starts_with(char::is_lowercase));
            let mut path = vec![first];
            path.extend(second);
            out.insert(path);
        }
        rest = after;
    }
    // super::x within a module directory: a sibling (or the parent's own items).
    let mut rest = code;
    while let Some(i) = rest.find("super::") {
        let after = &rest[i + "super::".len()..];
        let name = ident(after);
        let parent = &module[..module.len().saturating_sub(1)];
        if !name.is_empty() && name.starts_with(char::is_lowercase) && name != "super" {
            let mut path = parent.to_vec();
            path.push(name);
            out.insert(path);
        }
        rest = after;
    }
    out
}

/// A cycle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn modules_import_each_other_without_cycles() {
    // Between top-level modules, and between the files of each module directory.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut inner: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let names: BTreeSet<String> = sources()
        .iter()
        .filter_map(|(p, _)| module_of(p))
        .filter(|m| !m.is_empty())
        .map(|m| m[0].clone())
        .collect();
    for (path, text) in sources() {
        let Some(module) = module_of(&path) else {
            continue;
        };
        if module.is_empty() || module.last().is_some_and(|m| m == "tests") {
            continue; // lib.rs wires the modules together; tests/ files are test code
        }
        for r in references(&module, &code(&text)) {
            if !names.contains(&r[0]) {
                continue;
            }
            if r[0] != module[0] {
                top.entry(module[0].clone())
                    .or_default()
                    .insert(r[0].clone());
            } else if module.len() > 1 && r.len() > 1 && r[1] != module[1] {
                inner
                    .entry(module[0].clone())
                    .or_default()
                    .entry(module[1].clone())
                    .or_default()
                    .insert(r[1].clone());
            }
        }
    }
    if let Some(cycle) = find_cycle(&top) {
        panic!("import cycle between modules: {}", cycle.join(" -> "));
    }
    for (dir, graph) in &inner {
        if let Some(cycle) = find_cycle(graph) {
            panic!("import cycle inside {dir}: {}", cycle.join(" -> "));
        }
    }
    // DEVELOPERS.md's rows: a module uses only modules of its own row or of the rows above.
    let row = |m: &str| ROWS.iter().position(|r| r.contains(&m));
    for (module, uses) in &top {
        let Some(at) = row(module) else {
            panic!("module {module} is in no row of ROWS (and of DEVELOPERS.md's layout)");
        };
        for used in uses {
            let below = row(used).is_none_or(|r| r > at);
            assert!(!below, "{module} (row {at}) uses {used}, of a row below it");
        }
    }
    for m in &names {
        assert!(row(m).is_some(), "module {m} is in no row of ROWS");
    }
}

#[test]
fn hard_boundaries_hold() {
    let mut broken = Vec::new();
    for (path, text) in sources() {
        let Some(module) = module_of(&path) else {
            continue;
        };
        let code = code(&text);
        // The crate `postgres` (the module `store::postgres` is named as `super::postgres` or
        // `store::postgres`).
        let crate_code = code
            .replace("super::postgres::", "")
            .replace("store::postgres::", "")
            .replace("store::postgres;", "");
        let file = module.join("::");
        let top = module.first().map(String::as_str).unwrap_or("");
        for (needle, allowed, rule) in [
            (
                "rusqlite::",
                file.starts_with("store::sqlite"),
                "only store::sqlite names rusqlite",
            ),
            (
                "postgres::",
                // `store` names its submodule; `config::database` parses a `db` URL with the
                // crate's own parser.
                file.starts_with("store::postgres")
                    || file == "store"
                    || file == "config::database",
                "only store::postgres names postgres (config::database parses URLs)",
            ),
            (
                "ureq::",
                file.starts_with("deliver::http"),
                "only deliver::http names ureq",
            ),
            (
                "signal_hook",
                file == "daemon::signals",
                "only daemon::signals touches signals",
            ),
            (
                "sd_notify",
                file == "daemon::systemd",
                "only daemon::systemd touches sd-notify",
            ),
            ("println!", top == "cmd", "only cmd prints to stdout"),
            ("print!(", top == "cmd", "only cmd prints to stdout"),
            ("io::stdout", top == "cmd", "only cmd prints to stdout"),
        ] {
            let text = if needle == "postgres::" {
                &crate_code
            } else {
                &code
            };
            if !allowed && text.contains(needle) {
                broken.push(format!("{}: {rule}", path.display()));
            }
        }
    }
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn files_stay_small() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, text)| text.lines().count() > MAX_LINES)
        .map(|(p, text)| format!("{} ({} lines)", p.display(), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "files over {MAX_LINES} lines: {long:#?}");
}
