//! A lexical scanner of Rust sources for the architecture test: enough to
//! find `crate::` paths, `unsafe` and function bodies in rustfmt-formatted
//! code once comments and string literals are blanked out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `root`, skipping build output and hidden folders.
pub fn sources(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source dir") {
            let path = entry.expect("dir entry").path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A test file: under a `tests/` folder or a `tests.rs` module.
pub fn is_test(rel: &str) -> bool {
    rel.starts_with("tests/") || rel.contains("/tests/") || rel.ends_with("/tests.rs")
}

pub fn is_test_or_bench(rel: &str) -> bool {
    is_test(rel) || rel.contains("/benches/")
}

/// `text` with comments and the contents of string and char literals
/// replaced by spaces; newlines stay, so line numbers still hold.
pub fn code_of(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        let ident_before = i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
                out.push(' ');
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                }
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if at(i) == 'r' && !ident_before && (at(i + 1) == '"' || at(i + 1) == '#') {
            // A raw string r"..." or r#"..."#: ends at a quote followed by as many #.
            let mut k = i + 1;
            while at(k) == '#' {
                k += 1;
            }
            if at(k) != '"' {
                out.push(c[i]);
                i += 1;
                continue;
            }
            let hashes = k - i - 1;
            out.push_str(&" ".repeat(k - i));
            out.push('"');
            i = k + 1;
            while i < c.len() {
                if c[i] == '"' && (1..=hashes).all(|h| at(i + h) == '#') {
                    out.push('"');
                    out.push_str(&" ".repeat(hashes));
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, c[i]);
                i += 1;
            }
        } else if at(i) == '"' {
            out.push('"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                let n = if c[i] == '\\' { 2 } else { 1 };
                for _ in 0..n {
                    if i < c.len() {
                        blank(&mut out, c[i]);
                        i += 1;
                    }
                }
            }
            out.push('"');
            i += 1;
        } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            out.push('\'');
            i += 1;
            let mut k = i + 1;
            while k < c.len() && c[k] != '\'' {
                k += 1;
            }
            while i < k {
                blank(&mut out, c[i]);
                i += 1;
            }
            out.push('\'');
            i += 1;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Code before a trailing `#[cfg(test)] mod tests {`.
pub fn without_test_module(code: &str) -> String {
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]") {
        let at = from + at;
        let rest = code[at + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests {") || rest.starts_with("mod tests{") {
            return code[..at].to_string();
        }
        from = at + 1;
    }
    code.to_string()
}

fn is_ident(ch: char) -> bool {
    ch.is_alphanumeric() || ch == '_'
}

/// `word` as a whole identifier in `code`.
pub fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back().is_some_and(is_ident);
        let after = code[at + word.len()..].chars().next().is_some_and(is_ident);
        !before && !after
    })
}

fn leading_ident(s: &str) -> Option<&str> {
    let s = s.trim_start();
    let end = s.find(|ch: char| !is_ident(ch)).unwrap_or(s.len());
    (end > 0).then(|| &s[..end])
}

/// The top-level names `crate::` paths in `code` start with, in order of
/// first appearance (`crate::{a::X, b}` names `a` and `b`).
pub fn crate_refs(code: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |name: &str| {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let prev = code[..at].chars().next_back();
        if prev.is_some_and(|ch| is_ident(ch) || ch == '$') {
            continue;
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut item = String::new();
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if let Some(n) = leading_ident(&item) {
                            push(n);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(ch);
            }
            if let Some(n) = leading_ident(&item) {
                push(n);
            }
        } else if let Some(n) = leading_ident(rest) {
            push(n);
        }
    }
    out
}

/// The crate's top-level module a file under `src` belongs to (`a.rs`,
/// `a/mod.rs` and `a/b.rs` are all `a`); `None` for the crate root.
fn module_of(rel: &Path) -> Option<String> {
    let first = rel
        .components()
        .next()?
        .as_os_str()
        .to_string_lossy()
        .to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main" | "bin")).then_some(name)
}

/// Module -> (module it imports -> a file that does), for one crate's
/// `src`, test modules left out.
pub fn module_graph(src: &Path) -> BTreeMap<String, BTreeMap<String, String>> {
    let files: Vec<(PathBuf, String)> = sources(src)
        .into_iter()
        .filter_map(|f| {
            let rel = f.strip_prefix(src).expect("under src").to_path_buf();
            let m = module_of(&rel)?;
            (!rel.ends_with("tests.rs")).then_some((f, m))
        })
        .collect();
    let modules: BTreeSet<&String> = files.iter().map(|(_, m)| m).collect();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = modules
        .iter()
        .map(|m| ((*m).clone(), BTreeMap::new()))
        .collect();
    for (file, m) in &files {
        let code = without_test_module(&code_of(&std::fs::read_to_string(file).expect("read")));
        let rel = file
            .strip_prefix(src)
            .expect("under src")
            .to_string_lossy()
            .to_string();
        for to in crate_refs(&code) {
            if &to != m && modules.contains(&to) {
                let edges = graph.get_mut(m).expect("module");
                edges.entry(to).or_insert_with(|| rel.clone());
            }
        }
    }
    graph
}

/// Strongly connected components with more than one module (Tarjan),
/// each sorted, in sorted order.
pub fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            for w in self.graph[v].keys() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let lw = self.low[w];
                    let lv = self.low.get_mut(v).expect("low");
                    *lv = (*lv).min(lw);
                } else if self.stack.contains(&w) {
                    let iw = self.index[w];
                    let lv = self.low.get_mut(v).expect("low");
                    *lv = (*lv).min(iw);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().position(|s| *s == v).expect("on stack");
                let mut comp: Vec<String> = self.stack.drain(at..).map(str::to_string).collect();
                if comp.len() > 1 {
                    comp.sort();
                    self.found.push(comp);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

/// The name of the function a line declares, if it does.
fn declared_fn(line: &str) -> Option<&str> {
    let mut s = line.trim_start();
    loop {
        let before = s;
        for kw in ["const ", "async ", "unsafe ", "default "] {
            s = s.strip_prefix(kw).unwrap_or(s);
        }
        if let Some(r) = s.strip_prefix("pub") {
            if let Some(r) = r.strip_prefix('(') {
                s = r.split_once(')').map_or(r, |(_, after)| after).trim_start();
            } else if r.starts_with(' ') {
                s = r.trim_start();
            }
        }
        if let Some(r) = s.strip_prefix("extern ") {
            s = r.trim_start();
            if let Some(r) = s.strip_prefix('"') {
                s = r.split_once('"').map_or(r, |(_, after)| after).trim_start();
            }
        }
        if s == before {
            break;
        }
    }
    leading_ident(s.strip_prefix("fn ")?)
}

/// (name, first line, length in lines) of every function with a body.
pub fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for (n, line) in code.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        let Some(name) = declared_fn(line) else {
            continue;
        };
        // The body opens at the first `{` outside parentheses and brackets;
        // a `;` there first means a declaration without a body.
        let mut depth = 0i32;
        let mut open = None;
        for (k, ch) in code[start..].char_indices() {
            match ch {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ';' if depth <= 0 => break,
                '{' if depth <= 0 => {
                    open = Some(start + k);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0;
        let mut end = code.len();
        for (k, ch) in code[open..].char_indices() {
            match ch {
                '{' => braces += 1,
                '}' => {
                    braces -= 1;
                    if braces == 0 {
                        end = open + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        let lines = code[start..end].matches('\n').count() + 1;
        out.push((name.to_string(), n + 1, lines));
    }
    out
}
