//! The README and `docs/` checked against what they describe, so they cannot go stale:
//! relative links (and their `#anchors`) resolve, every doc is reachable from the
//! README, the README stays one page and gives CI's exact test command, agreement
//! examples parse as `tongban policy apply` parses them, every `tongban` command line
//! names real subcommands and options of the built binary, repository paths exist,
//! and the problem types and endpoints in `docs/api.md` are the OpenAPI document's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Docs other engineers are writing for the same issue (the policy engine's design).
/// Links to them are allowed to dangle until they are merged; delete an entry once
/// its file is on main.
const NOT_YET_MERGED: &[&str] = &["docs/policy-engine.md"];

/// "Readable in five minutes": the README is one page.
const README_MAX_LINES: usize = 200;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_owned()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// README.md, BENCHMARKS.md and every `docs/*.md`, read from the file system so a new
/// page is checked as soon as it exists: (path relative to the root, text).
fn pages() -> Vec<(String, String)> {
    let mut names = vec!["README.md".to_owned(), "BENCHMARKS.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = read(&n);
            (n, text)
        })
        .collect()
}

/// A page split into prose (fenced blocks blanked) and its fenced blocks with their
/// info strings, so links are not looked for in code and code is found whole.
struct Parsed {
    prose: String,
    blocks: Vec<(String, String)>,
}

fn parse(text: &str) -> Parsed {
    let mut prose = String::new();
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        let fence = line.trim_start().strip_prefix("```");
        match (&mut open, fence) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {
                prose.push_str(line);
                prose.push('\n');
            }
        }
    }
    assert!(open.is_none(), "an unclosed ``` block");
    Parsed { prose, blocks }
}

/// The text of every `inline code` span in prose.
fn code_spans(prose: &str) -> Vec<&str> {
    prose.split('`').skip(1).step_by(2).collect()
}

/// Targets of `[text](target)` links in prose.
fn links(prose: &str) -> Vec<String> {
    prose
        .match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &prose[i + 2..];
            rest.find(')').map(|end| rest[..end].trim().to_owned())
        })
        .collect()
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    parse(text)
        .prose
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| anchor(l.trim_start_matches('#')))
        .collect()
}

/// Normalise `a/./b/../c` without touching the file system.
fn normalise(path: &Path) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.to_str().expect("UTF-8 path").split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[test]
fn every_relative_link_resolves() {
    let mut broken = Vec::new();
    for (page, text) in pages() {
        let dir = Path::new(&page).parent().unwrap_or(Path::new(""));
        for target in links(&parse(&text).prose) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let rel = if file.is_empty() {
                page.clone()
            } else {
                normalise(&dir.join(file))
            };
            let path = root().join(&rel);
            if !path.exists() {
                if !NOT_YET_MERGED.contains(&rel.as_str()) {
                    broken.push(format!("{page}: ({target}): no file {rel}"));
                }
                continue;
            }
            if let Some(fragment) = fragment.filter(|_| rel.ends_with(".md")) {
                if !anchors(&read(&rel)).contains(fragment) {
                    broken.push(format!(
                        "{page}: ({target}): no heading #{fragment} in {rel}"
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_doc_is_linked_from_the_readme() {
    let readme = links(&parse(&read("README.md")).prose);
    let linked: BTreeSet<String> = readme
        .iter()
        .map(|t| t.split('#').next().unwrap_or_default().to_owned())
        .collect();
    let orphans: Vec<String> = pages()
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| p != "README.md" && !linked.contains(p))
        .collect();
    assert!(orphans.is_empty(), "not linked from README.md: {orphans:?}");
    for expected in NOT_YET_MERGED {
        assert!(
            linked.contains(*expected),
            "README.md should link {expected}"
        );
    }
}

#[test]
fn the_readme_is_one_page() {
    let lines = read("README.md").lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines; the reference belongs in docs/"
    );
}

#[test]
fn the_readme_gives_the_test_command_ci_runs() {
    let ci = read(".ci/run");
    let command = ci
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("cargo test"))
        .expect(".ci/run runs cargo test");
    let readme = parse(&read("README.md"));
    assert!(
        readme
            .blocks
            .iter()
            .any(|(_, body)| body.lines().any(|l| l.trim() == command)),
        "README.md should give `{command}` (what .ci/run runs) as a command of its own"
    );
}

#[test]
fn the_benchmark_markers_are_where_run_py_looks() {
    let run = read("tests/bench/run.py");
    let readme = read("README.md");
    let (start, end) = ("<!-- bench:start -->", "<!-- bench:end -->");
    for marker in [start, end] {
        assert!(
            run.contains(&format!("\"{marker}\"")),
            "run.py no longer uses {marker}"
        );
        assert_eq!(
            readme.matches(marker).count(),
            1,
            "README.md needs {marker} once"
        );
    }
    assert!(
        readme.find(start) < readme.find(end),
        "markers out of order"
    );
    assert!(
        readme.contains("(BENCHMARKS.md)"),
        "README.md should link BENCHMARKS.md"
    );
}

#[test]
fn agreement_examples_parse() {
    let mut parsed = 0;
    for (page, text) in pages() {
        for (info, body) in parse(&text).blocks {
            if info == "toml" && body.contains("[[agreement]]") {
                policy::AgreementFile::parse(Path::new(&page), &body)
                    .unwrap_or_else(|e| panic!("{page}: agreement example: {e}\n{body}"));
                parsed += 1;
            }
        }
    }
    assert!(parsed >= 1, "no agreement example found to check");
}

/// A `tongban` command line as written, split into its words: the subcommand path
/// (`["certs", "issue", "server"]`) and the long options after it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Mention {
    words: Vec<String>,
    options: Vec<String>,
}

fn is_word(t: &str) -> bool {
    t.starts_with(|c: char| c.is_ascii_lowercase())
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Every command line in `text` run as `tongban …`, or as `cargo run … -p gateway --
/// …`. `certs init / issue / revoke` names three subcommands of `certs`, and
/// `issue server|client` two of `issue`.
fn mentions(text: &str) -> Vec<Mention> {
    let mut out = Vec::new();
    for line in text.lines() {
        let starts = line.match_indices("tongban ").map(|(i, m)| (i, m.len()));
        let cargo = line
            .match_indices("-p gateway -- ")
            .map(|(i, m)| (i, m.len()));
        for (i, len) in starts.chain(cargo) {
            let before = line[..i].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || "-_:/.".contains(c)) {
                continue;
            }
            // `kubectl -n tongban …`: an option's value, not the command.
            let previous = line[..i].split_whitespace().next_back();
            if len == "tongban ".len() && previous.is_some_and(|t| t.starts_with('-')) {
                continue;
            }
            let tokens: Vec<&str> = line[i + len..].split_whitespace().collect();
            out.extend(command_lines(&tokens));
        }
    }
    out
}

fn command_lines(tokens: &[&str]) -> Vec<Mention> {
    let Some(first) = tokens.first().filter(|t| is_word(t)) else {
        return Vec::new();
    };
    let mut lines: Vec<Mention> = Vec::new();
    let mut current = vec![vec![first.to_string()]];
    let mut rest = &tokens[1..];
    loop {
        match rest.first() {
            Some(t) if is_word(t) => current.iter_mut().for_each(|w| w.push(t.to_string())),
            Some(t) if t.contains('|') && t.split('|').all(is_word) => {
                current = current
                    .iter()
                    .flat_map(|w| {
                        t.split('|').map(|alt| {
                            let mut w = w.clone();
                            w.push(alt.to_owned());
                            w
                        })
                    })
                    .collect();
            }
            Some(&"/") if rest.get(1).is_some_and(|t| is_word(t)) => {
                lines.extend(current.drain(..).map(|words| Mention {
                    words,
                    options: Vec::new(),
                }));
                current = vec![vec![first.to_string()]];
            }
            _ => break,
        }
        rest = &rest[1..];
    }
    // Long options up to a shell comment, a pipe or a redirection.
    let options: Vec<String> = rest
        .iter()
        .take_while(|t| !["#", "|", ">", "&&", ";"].contains(t))
        .map(|t| t.trim_start_matches(['[', '(']))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(|t| {
            t.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .collect();
    lines.extend(current.into_iter().map(|words| Mention {
        words,
        options: options.clone(),
    }));
    lines
}

#[test]
fn mentions_are_read_as_written() {
    let m = |s: &str| {
        mentions(s)
            .into_iter()
            .map(|m| format!("{} {}", m.words.join(" "), m.options.join(" ")))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        m("tongban certs init / issue server|client [--days N] or tongban demo"),
        [
            "certs init ",
            "certs issue server --days",
            "certs issue client --days",
            "demo "
        ]
    );
    assert_eq!(
        m("cargo run --release -p gateway -- verify answer.json --config x # y --z"),
        ["verify --config"]
    );
    assert!(m("urn:tongban:a:b and /etc/tongban/x and tongban-demo").is_empty());
}

#[test]
fn every_tongban_command_line_is_real() {
    let mut all: BTreeMap<Mention, BTreeSet<String>> = BTreeMap::new();
    for (page, text) in pages() {
        let parsed = parse(&text);
        let code = code_spans(&parsed.prose)
            .into_iter()
            .map(str::to_owned)
            .chain(parsed.blocks.into_iter().map(|(_, body)| body));
        for chunk in code {
            for m in mentions(&chunk) {
                all.entry(m).or_default().insert(page.clone());
            }
        }
    }
    assert!(
        all.keys().any(|m| m.words == ["demo"]),
        "the docs should mention `tongban demo`"
    );
    // One `--help` per command (a debug binary takes a while to start), checked
    // against every option any page gives it.
    let mut commands: BTreeMap<&[String], Vec<(&Mention, &BTreeSet<String>)>> = BTreeMap::new();
    for (m, pages) in &all {
        commands.entry(&m.words).or_default().push((m, pages));
    }
    let bin = tongban_tests::tongban_binary();
    let mut wrong = Vec::new();
    for (words, uses) in commands {
        let help = Command::new(&bin)
            .args(words)
            .arg("--help")
            .output()
            .expect("tongban runs");
        let text = String::from_utf8_lossy(&help.stdout);
        for (m, pages) in uses {
            if !help.status.success() {
                wrong.push(format!(
                    "{pages:?}: `tongban {}`: {}",
                    m.words.join(" "),
                    String::from_utf8_lossy(&help.stderr)
                        .lines()
                        .next()
                        .unwrap_or_default()
                ));
                continue;
            }
            for option in &m.options {
                let known = text.match_indices(option.as_str()).any(|(i, _)| {
                    !text[i + option.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '-')
                });
                if !known {
                    wrong.push(format!(
                        "{pages:?}: `tongban {}` has no option {option}",
                        m.words.join(" ")
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "stale command lines:\n{}",
        wrong.join("\n")
    );
}

/// Top-level directories whose paths, quoted in the docs, must exist.
const REPO_DIRS: &[&str] = &[
    "gateway/",
    "audit/",
    "migrate/",
    "policy/",
    "connectors/",
    "certs/",
    "tests/",
    "deploy/",
    "docs/",
    ".ci/",
];

#[test]
fn quoted_repository_paths_exist() {
    let mut missing = Vec::new();
    for (page, text) in pages() {
        for span in code_spans(&parse(&text).prose) {
            let path = span.trim();
            let plain = !path.contains(|c: char| c.is_whitespace() || "<>*{}…$".contains(c));
            if plain && REPO_DIRS.iter().any(|d| path.starts_with(d)) {
                let path = path.trim_end_matches('/');
                if !root().join(path).exists() {
                    missing.push(format!("{page}: `{path}`"));
                }
            }
        }
    }
    // `cargo run -p CRATE --example NAME` runs CRATE/examples/NAME.rs.
    for (page, text) in pages() {
        for line in text.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            for w in words.windows(4) {
                if let ["-p", krate, "--example", name] = w {
                    let name: String = name
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let rel = format!("{krate}/examples/{name}.rs");
                    if !root().join(&rel).exists() {
                        missing.push(format!("{page}: example {rel}"));
                    }
                }
            }
        }
    }
    assert!(missing.is_empty(), "no such file:\n{}", missing.join("\n"));
}

fn openapi() -> Value {
    serde_json::from_str(&read("docs/openapi.json")).expect("docs/openapi.json is JSON")
}

/// `/problems/<slug>` names in a text.
fn problem_types(text: &str) -> BTreeSet<String> {
    text.match_indices("/problems/")
        .map(|(i, m)| {
            let slug: String = text[i + m.len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                .collect();
            slug
        })
        .filter(|s| !s.is_empty())
        .collect()
}

#[test]
fn api_problem_types_are_the_documented_and_served_ones() {
    let documented = problem_types(&openapi().to_string());
    assert!(
        documented.len() > 10,
        "docs/openapi.json should list the problem types"
    );
    let api = problem_types(&read("docs/api.md"));
    let only_api: Vec<&String> = api.difference(&documented).collect();
    let only_openapi: Vec<&String> = documented.difference(&api).collect();
    assert!(
        only_api.is_empty() && only_openapi.is_empty(),
        "problem types only in docs/api.md: {only_api:?}; only in docs/openapi.json: {only_openapi:?}"
    );
    // The slugs are string literals in the one module that renders problems.
    let errors = read("gateway/src/error.rs");
    let unknown: Vec<&String> = api
        .iter()
        .filter(|s| !errors.contains(&format!("\"{s}\"")))
        .collect();
    assert!(
        unknown.is_empty(),
        "problem types not in gateway/src/error.rs: {unknown:?}"
    );
    for (page, text) in pages() {
        let stray: Vec<String> = problem_types(&text).difference(&api).cloned().collect();
        assert!(stray.is_empty(), "{page}: unknown problem types {stray:?}");
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH"];

#[test]
fn api_endpoints_are_the_documented_ones() {
    let doc = openapi();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let method = method.to_uppercase();
            if METHODS.contains(&method.as_str()) {
                documented.insert(format!("{method} {path}"));
            }
        }
    }
    let api = read("docs/api.md");
    let mut written = BTreeSet::new();
    for span in code_spans(&parse(&api).prose) {
        let mut words = span.split_whitespace();
        let (Some(method), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        if METHODS.contains(&method) && path.starts_with('/') {
            let path = path.split(['?', '[']).next().unwrap_or_default();
            written.insert(format!("{method} {path}"));
        }
    }
    // The ops listener's endpoints are plain HTTP on another port, not in the document.
    let ops = ["GET /healthz", "GET /readyz", "GET /metrics"];
    let extra: Vec<&String> = written
        .iter()
        .filter(|e| !documented.contains(*e) && !ops.contains(&e.as_str()))
        .collect();
    let missing: Vec<&String> = documented.difference(&written).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "docs/api.md vs docs/openapi.json: not in the document {extra:?}; not in api.md {missing:?}"
    );
}
