//! The invariants of docs/ARCHITECTURE.md that a program can check, checked
//! on the source tree itself:
//!
//! - each crate depends (normal and build dependencies) on exactly the Eddy
//!   crates the document's `deps` block lists for it (`cargo metadata`);
//! - no import cycle among a crate's top-level modules (`use crate::a` in
//!   module b and `use crate::b` in module a, or a longer loop);
//! - `unsafe` only in the files the document's **unsafe** line names (tests
//!   and benchmarks may call libc too);
//! - no source file over 800 lines and no function over 120 (tests aside).
//!
//! The scanner is lexical, not a parser: it strips comments and string
//! literals, then looks for `crate::`, `unsafe` and `fn` tokens. That is
//! enough for code formatted by rustfmt, which all of Eddy is.

#[path = "architecture/scan.rs"]
mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 120;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ has a parent")
        .to_path_buf()
}

fn architecture_md() -> String {
    std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).expect("read docs/ARCHITECTURE.md")
}

/// Workspace packages: name -> (manifest dir, Eddy crates it depends on
/// as normal or build dependencies).
fn workspace() -> BTreeMap<String, (PathBuf, BTreeSet<String>)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().expect("name").to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().expect("dep name").to_string())
                .filter(|d| names.contains(d))
                .collect();
            let dir = manifest.parent().expect("manifest dir").to_path_buf();
            (p["name"].as_str().expect("name").to_string(), (dir, deps))
        })
        .collect()
}

/// The ```deps block of ARCHITECTURE.md: `crate: dep dep ...` per line.
fn allowed_deps(md: &str) -> BTreeMap<String, BTreeSet<String>> {
    let start = md
        .find("```deps\n")
        .expect("docs/ARCHITECTURE.md has a ```deps block");
    let body = &md[start + "```deps\n".len()..];
    let body = &body[..body.find("```").expect("the deps block ends")];
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (krate, deps) = l.split_once(':').expect("a deps line is `crate: deps`");
            let deps = deps.split_whitespace().map(str::to_string).collect();
            (krate.trim().to_string(), deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_what_the_architecture_allows() {
    let allowed = allowed_deps(&architecture_md());
    let mut wrong = Vec::new();
    for (krate, (_, deps)) in workspace() {
        let Some(may) = allowed.get(&krate) else {
            wrong.push(format!("{krate} is not in the deps block"));
            continue;
        };
        for d in deps.difference(may) {
            wrong.push(format!(
                "{krate} depends on {d}, which the deps block does not allow"
            ));
        }
        for d in may.difference(&deps) {
            wrong.push(format!(
                "the deps block lets {krate} depend on {d}, but it does not"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "crate dependencies and docs/ARCHITECTURE.md disagree; remove the dependency, or \
         change the graph, its invariants and the ```deps block together:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_crate_has_an_import_cycle_among_its_modules() {
    let mut found = Vec::new();
    for (krate, (dir, _)) in workspace() {
        let src = dir.join("src");
        let graph = scan::module_graph(&src);
        for cycle in scan::cycles(&graph) {
            let edges: Vec<String> = cycle
                .iter()
                .flat_map(|m| {
                    graph[m]
                        .iter()
                        .filter(|(to, _)| cycle.contains(*to))
                        .map(move |(to, file)| format!("{m} -> {to} ({file})"))
                })
                .collect();
            found.push(format!("{krate}: {}", edges.join(", ")));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles among modules (move what both sides need into a module of its own):\n  {}",
        found.join("\n  ")
    );
}

/// The code map's section of `krate`: from its `### ` heading (which names
/// the crate in backticks) to the next heading.
fn code_map_section<'a>(md: &'a str, krate: &str) -> Option<&'a str> {
    let needle = format!("(`{krate}`");
    let start = md
        .match_indices("\n### ")
        .map(|(at, _)| at + 1)
        .find(|&at| md[at..].lines().next().is_some_and(|h| h.contains(&needle)))?;
    let rest = &md[start..];
    let end = rest[4..].find("\n#").map_or(rest.len(), |e| e + 5);
    Some(&rest[..end])
}

#[test]
fn every_module_is_on_the_code_map() {
    let md = architecture_md();
    let mut missing = Vec::new();
    for (krate, (dir, _)) in workspace() {
        let Some(section) = code_map_section(&md, &krate) else {
            missing.push(format!("{krate}: no `### ` section names it"));
            continue;
        };
        for module in scan::module_graph(&dir.join("src")).keys() {
            if !section.contains(&format!("`{module}`")) {
                missing.push(format!("{krate}: module `{module}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md's code map does not name these; say in the crate's section what \
         each is for:\n  {}",
        missing.join("\n  ")
    );
}

/// The files the **unsafe** line of ARCHITECTURE.md names (backticked
/// paths; a path ending in `/` names a directory).
fn unsafe_allowed(md: &str) -> Vec<String> {
    let start = md
        .find("- **unsafe**")
        .expect("docs/ARCHITECTURE.md has an **unsafe** line");
    let item = &md[start..];
    let item = &item[..item[2..].find("\n- ").map_or(item.len(), |e| e + 2)];
    item.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.contains('/'))
        .map(str::to_string)
        .collect()
}

#[test]
fn unsafe_lives_only_in_the_listed_modules() {
    let allowed = unsafe_allowed(&architecture_md());
    assert!(!allowed.is_empty(), "the **unsafe** line names no file");
    let root = root();
    let mut wrong = Vec::new();
    for file in scan::sources(&root) {
        let rel = file
            .strip_prefix(&root)
            .expect("under root")
            .to_string_lossy();
        if scan::is_test_or_bench(&rel) || allowed.iter().any(|a| rel.starts_with(a.as_str())) {
            continue;
        }
        let code = scan::code_of(&std::fs::read_to_string(&file).expect("read source"));
        if scan::has_word(&code, "unsafe") {
            wrong.push(rel.to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "`unsafe` outside the modules docs/ARCHITECTURE.md lists (move it into one of them, \
         or list the new module there with a reason):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_source_file_or_function_is_too_long() {
    let root = root();
    let mut long = Vec::new();
    for file in scan::sources(&root) {
        let rel = file
            .strip_prefix(&root)
            .expect("under root")
            .to_string_lossy();
        if scan::is_test(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let lines = text.lines().count();
        if lines > MAX_FILE_LINES {
            long.push(format!("{rel}: {lines} lines (at most {MAX_FILE_LINES})"));
        }
        let code = scan::without_test_module(&scan::code_of(&text));
        for (name, line, n) in scan::functions(&code) {
            if n > MAX_FN_LINES {
                long.push(format!(
                    "{rel}:{line}: fn {name} is {n} lines (at most {MAX_FN_LINES})"
                ));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these by responsibility:\n  {}",
        long.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_what_it_must() {
    let code = scan::code_of(
        "use crate::{a::X, b};\n// use crate::c;\nlet s = \"crate::d unsafe\";\n\
         let q = '\"'; fn f() { crate::e::g(); }\n",
    );
    let refs = scan::crate_refs(&code);
    assert_eq!(refs, ["a", "b", "e"].map(String::from).to_vec());
    assert!(!scan::has_word(&code, "unsafe"));
    assert!(scan::has_word("x; unsafe { y }", "unsafe"));
    assert!(!scan::has_word("undocumented_unsafe_blocks", "unsafe"));
    let fns = scan::functions("fn a() -> u8 {\n    1\n}\nfn b(x: u8);\nasync fn c() {}\n");
    assert_eq!(fns, vec![("a".into(), 1, 3), ("c".into(), 5, 1)]);
    let graph = BTreeMap::from([
        (
            "x".to_string(),
            BTreeMap::from([("y".to_string(), "x.rs".to_string())]),
        ),
        (
            "y".to_string(),
            BTreeMap::from([("x".to_string(), "y.rs".to_string())]),
        ),
        ("z".to_string(), BTreeMap::new()),
    ]);
    assert_eq!(
        scan::cycles(&graph),
        vec![vec!["x".to_string(), "y".to_string()]]
    );
}
