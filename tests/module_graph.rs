//! Modules import only downward: no two modules of a crate import each other,
//! directly or around a ring.
//!
//! Read from the sources, as a newcomer would follow them: every `crate::…`,
//! `super::…` and `self::…` path (in `use` trees and in code) is resolved to the
//! deepest module it names, and the edges between a crate's modules must form no
//! cycle. A re-export (`pub use child::X`) is a facade, not a use: a path through
//! it counts as a use of the module that defines the item. Unit tests
//! (`#[cfg(test)] mod tests` at the end of a file) are left out: they may reach
//! anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library crates (the `tongban` binary's main.rs only calls `gateway`;
/// `migrate` is one file, with no modules to form a ring).
const CRATES: &[(&str, &str)] = &[
    ("gateway", "gateway/src/lib.rs"),
    ("audit", "audit/src/lib.rs"),
    ("policy", "policy/src/lib.rs"),
    ("connectors", "connectors/src/lib.rs"),
    ("certs", "certs/src/lib.rs"),
];

type Module = Vec<String>;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Every module file below `root`'s directory, with its module path. Files that are
/// another root (`main.rs` beside `lib.rs`) and `bin/`, `tests/`, `examples/` are not
/// modules of this crate.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    let dir = root.parent().unwrap_or(Path::new("."));
    let mut out = BTreeMap::new();
    out.insert(Vec::new(), root.to_path_buf());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "bin") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == root {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                continue;
            }
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// Where the unit-test module starts: `#[cfg(test)]`, maybe more attributes, then
/// `mod`.
fn test_module(text: &str) -> Option<usize> {
    text.match_indices("#[cfg(test)]")
        .map(|(i, _)| i)
        .find(|&i| {
            text[i..]
                .lines()
                .skip(1)
                .map(str::trim)
                .find(|l| !l.starts_with("#["))
                .is_some_and(|l| l.starts_with("mod ") || l.contains(" mod "))
        })
}

/// The source without comments, string literals and the trailing unit tests.
fn code(text: &str) -> String {
    let text = match test_module(text) {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && b.get(i + 1).is_some_and(|c| *c == b'"' || *c == b'#') {
            // Raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            j += 1;
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // A char literal such as '"' must not open a string.
            out.push_str("' '");
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // '\'', '\n', '\u{1F600}': the escaped character, then the closing quote.
            let end = b[i + 3..].iter().position(|c| *c == b'\'').unwrap_or(0);
            out.push_str("' '");
            i += end + 4;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Expands a `use` tree (`crate::{a::B, c::{self, D}}`) into its paths, each with
/// the name it brings into scope.
fn expand(tree: &str) -> Vec<(String, String)> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), a.trim()),
            None => (tree, tree.rsplit("::").next().unwrap_or(tree)),
        };
        let path = path.trim_end_matches("::self");
        let alias = if alias == "self" {
            path.rsplit("::").next().unwrap_or(path)
        } else {
            alias
        };
        return vec![(path.replace(' ', ""), alias.to_owned())];
    };
    let prefix = tree[..open].replace(' ', "");
    let inner = tree[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&tree[open + 1..]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| {
            expand(p)
                .into_iter()
                .map(|(path, alias)| {
                    if path == "self" {
                        // `a::{self}` names `a` itself.
                        let module = prefix.trim_end_matches("::");
                        let name = module.rsplit("::").next().unwrap_or(module);
                        (module.to_owned(), name.to_owned())
                    } else {
                        (format!("{prefix}{path}"), alias)
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// What a module's code names: the paths of its `use` items (re-exports apart,
/// with the names they publish) and the `crate::`/`super::`/`self::` paths in its
/// code.
#[derive(Debug, Default, PartialEq)]
struct Names {
    /// `use` paths and paths in code: what the module itself relies on.
    uses: Vec<String>,
    /// `pub use` items: (published name, path). A facade, not a use.
    reexports: Vec<(String, String)>,
}

fn names(code: &str) -> Names {
    let mut out = Names::default();
    let mut in_use = Vec::new();
    for (i, _) in code.match_indices("use ") {
        if i > 0 && code[..i].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[i + 4..];
        let Some(end) = rest.find(';') else { continue };
        in_use.push(i..i + 4 + end);
        let before = code[..i].trim_end();
        let public = before.ends_with("pub") || before.ends_with(')') && before.contains("pub(");
        for (path, alias) in expand(&rest[..end]) {
            if public {
                out.reexports.push((alias, path));
            } else {
                out.uses.push(path);
            }
        }
    }
    for start in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(start) {
            if in_use.iter().any(|r| r.contains(&i)) {
                continue;
            }
            if i > 0
                && code[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| is_ident(c) || c == ':')
            {
                continue;
            }
            let len = code[i..]
                .find(|c: char| !(is_ident(c) || c == ':'))
                .unwrap_or(code.len() - i);
            out.uses
                .push(code[i..i + len].trim_end_matches("::").to_owned());
        }
    }
    out
}

/// Where a module's re-exported names really live: (module, name) → module.
type Facades = BTreeMap<(Module, String), Module>;

/// The module a path names: the deepest module that is a prefix of it, seen
/// through re-exports to the module that defines the item.
fn resolve(
    from: &Module,
    path: &str,
    known: &BTreeMap<Module, PathBuf>,
    facades: &Facades,
) -> Option<Module> {
    // `::name::…` is another crate, even where a child module has that name.
    if path.starts_with("::") {
        return None;
    }
    let mut segs = path.split("::").filter(|s| !s.is_empty()).peekable();
    let mut base: Module = match segs.peek().copied() {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("super") | Some("self") => from.clone(),
        // `use child::Thing` in a parent: a path relative to this module.
        Some(first) if known.contains_key(&[from.as_slice(), &[first.to_owned()]].concat()) => {
            from.clone()
        }
        _ => return None,
    };
    while let Some(s) = segs.peek().copied() {
        match s {
            "super" => {
                base.pop()?;
            }
            "self" => {}
            _ => break,
        }
        segs.next();
    }
    let mut target = base;
    for s in segs {
        target.push(s.to_owned());
        if known.contains_key(&target) {
            continue;
        }
        target.pop();
        // An item the module only re-exports lives where it came from.
        let mut seen = 0;
        while let Some(real) = facades.get(&(target.clone(), s.to_owned())) {
            if real == &target || seen > 8 {
                break;
            }
            target = real.clone();
            seen += 1;
        }
        break;
    }
    Some(target)
}

/// The crate's module graph: module → the modules it imports.
fn graph(root: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let known = modules(root);
    let named: BTreeMap<&Module, Names> = known
        .iter()
        .map(|(m, file)| {
            (
                m,
                names(&code(&std::fs::read_to_string(file).unwrap_or_default())),
            )
        })
        .collect();
    // Re-exports first (without facades, then through the ones already known, so a
    // chain of re-exports resolves too).
    let mut facades = Facades::new();
    for _ in 0..3 {
        let mut next = Facades::new();
        for (module, n) in &named {
            for (alias, path) in &n.reexports {
                if let Some(t) = resolve(module, path, &known, &facades) {
                    next.insert(((*module).clone(), alias.clone()), t);
                }
            }
        }
        facades = next;
    }
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, n) in &named {
        let set = edges.entry((*module).clone()).or_default();
        for path in &n.uses {
            if let Some(target) = resolve(module, path, &known, &facades) {
                if &target != *module {
                    set.insert(target);
                }
            }
        }
    }
    edges
}

/// The strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        let edges = s.edges;
        for w in edges.get(v).into_iter().flatten() {
            let Some((w, _)) = edges.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.found
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".to_owned()
    } else {
        m.join("::")
    }
}

#[test]
fn no_module_imports_around_a_ring() {
    let ws = workspace();
    let mut report = Vec::new();
    for (krate, root) in CRATES {
        let edges = graph(&ws.join(root));
        assert!(edges.len() > 1, "{krate}: no modules found under {root}");
        for ring in cycles(&edges) {
            let members: BTreeSet<&Module> = ring.iter().collect();
            let links: Vec<String> = ring
                .iter()
                .flat_map(|m| {
                    edges[m]
                        .iter()
                        .filter(|t| members.contains(t))
                        .map(move |t| format!("{} -> {}", name(m), name(t)))
                })
                .collect();
            report.push(format!("{krate}: {}", links.join(", ")));
        }
    }
    assert!(
        report.is_empty(),
        "modules that import each other:\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn the_checker_sees_a_ring() {
    let known: BTreeMap<Module, PathBuf> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .map(|m| (m, PathBuf::new()))
    .collect();
    let a: Module = vec!["a".into()];
    let ab: Module = vec!["a".into(), "b".into()];
    let c: Module = vec!["c".into()];
    assert_eq!(
        test_module("fn f() {}\n#[cfg(test)]\n#[allow(x)]\npub(crate) mod tests {}"),
        Some(10)
    );
    let child = names(&code(
        "use super::{Outcome, x::Y as Z};\npub use crate::c::{self, D};\n\
         fn f() { let s = \"crate::z\"; crate::c::g(); }",
    ));
    assert_eq!(
        child.uses,
        vec!["super::Outcome", "super::x::Y", "crate::c::g"]
    );
    assert_eq!(
        child.reexports,
        vec![
            ("c".to_owned(), "crate::c".to_owned()),
            ("D".to_owned(), "crate::c::D".to_owned())
        ]
    );
    let none = Facades::new();
    assert_eq!(
        resolve(&ab, "super::Outcome", &known, &none),
        Some(a.clone())
    );
    assert_eq!(
        resolve(&a, "self::b::Thing", &known, &none),
        Some(ab.clone())
    );
    assert_eq!(
        resolve(&ab, "crate::a::b::f", &known, &none),
        Some(ab.clone())
    );
    assert_eq!(resolve(&a, "b::Thing", &known, &none), Some(ab.clone()));
    assert_eq!(resolve(&a, "::b::Thing", &known, &none), None);
    assert_eq!(resolve(&a, "serde::Serialize", &known, &none), None);
    // `crate::Thing`, re-exported at the root from c, is c's.
    let facades: Facades = [((vec![], "Thing".to_owned()), c.clone())]
        .into_iter()
        .collect();
    assert_eq!(
        resolve(&ab, "crate::Thing", &known, &facades),
        Some(c.clone())
    );
    let edges: BTreeMap<Module, BTreeSet<Module>> = [
        (a.clone(), BTreeSet::from([ab.clone()])),
        (ab.clone(), BTreeSet::from([a.clone()])),
        (vec![], BTreeSet::from([a.clone()])),
    ]
    .into_iter()
    .collect();
    assert_eq!(cycles(&edges), vec![vec![a, ab]]);
}
