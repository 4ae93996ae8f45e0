//! `TONGBAN_*` environment variables over the config file.
//!
//! Every setting of the file can also be given as a variable: `TONGBAN_`, then the
//! section and key upper-cased and joined by `_`. `listen` is `TONGBAN_LISTEN`, `[tls]
//! cert` is `TONGBAN_TLS_CERT`, `[audit.anomaly] denials_burst` is
//! `TONGBAN_AUDIT_ANOMALY_DENIALS_BURST`. Entries of `[[sources]]`, `[[datasets]]`,
//! a dataset's `fields`, `[[bundles]]` and `[[bundles.items]]` are numbered from 0 in
//! file order (`TONGBAN_SOURCES_0_URL`, `TONGBAN_DATASETS_0_FIELDS_2_COLUMN`,
//! `TONGBAN_BUNDLES_1_ITEMS_0_DATASET`); a free-form map's key comes last. A variable
//! wins over the file. Lists are comma-separated, or written as a TOML array when an
//! element holds a comma. `TONGBAN_CONFIG` names the file and is not a setting; any
//! other `TONGBAN_*` variable that names no setting is an error, so a misspelt one is
//! not silently ignored. Which settings exist, and whether each is a string, a whole
//! number or a list, comes from the config schema (`schema::settings`).
//!
//! The variables are laid over the file's text before it is parsed — a value the file
//! has is replaced where it stands, a missing key is added under its table's header —
//! so every check sees one document, and a problem in a value that came from a
//! variable is reported against the variable, a problem in the file against its line.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use toml_edit::{ImDocument, Item};

use super::schema::{self, Kind};
use super::ConfigError;

/// The variable that names the config file; not a setting.
pub const CONFIG_VAR: &str = "TONGBAN_CONFIG";

const PREFIX: &str = "TONGBAN_";

/// The `TONGBAN_*` variables a config is read with, taken from the process once (by
/// [`Env::from_process`]) or given by a test ([`Env::from_pairs`]). Its `Debug` shows
/// the names only: values may hold passwords.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// Variables whose value is not UTF-8.
    unreadable: Vec<String>,
}

impl Env {
    /// The `TONGBAN_*` variables of this process (except `TONGBAN_CONFIG`).
    pub fn from_process() -> Self {
        let mut env = Env::default();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(PREFIX) || name == CONFIG_VAR {
                continue;
            }
            match value.into_string() {
                Ok(v) => {
                    env.vars.insert(name.to_owned(), v);
                }
                Err(_) => env.unreadable.push(name.to_owned()),
            }
        }
        env
    }

    /// Variables given directly; names without the `TONGBAN_` prefix, and
    /// `TONGBAN_CONFIG`, are left out as they are from the process.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(PREFIX) && k != CONFIG_VAR)
            .collect();
        Env {
            vars,
            unreadable: Vec::new(),
        }
    }

    /// No variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty() && self.unreadable.is_empty()
    }

    /// The variable names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("unreadable", &self.unreadable)
            .finish()
    }
}

/// One step of a setting's path in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// A variable resolved to its setting.
#[derive(Debug)]
struct Setting {
    var: String,
    path: Vec<Step>,
    /// The value as TOML text.
    toml: String,
}

/// Where a place in the text being checked came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Origin {
    /// A line of the file.
    Line(usize),
    /// The value of a variable.
    Variable(String),
}

#[derive(Debug, Clone)]
enum Source {
    /// Text of the file starting at this offset.
    File(usize),
    /// Text written for this variable.
    Variable(String),
}

/// The file's text with the variables laid over it, and a map back to where each
/// part came from.
#[derive(Debug)]
pub(super) struct Overlay {
    /// The text to parse.
    pub(super) text: String,
    /// The file's text (line numbers are counted in it).
    file: String,
    /// Where each part of `text` starts and what it is, in order.
    parts: Vec<(usize, Source)>,
    /// Each variable applied, by its setting's dotted key (`telemetry.log_format`,
    /// `sources.url`: entry numbers left out, as in error messages).
    keys: Vec<(String, String)>,
}

impl Overlay {
    /// Lay `env` over the file text `file`; `path` names the file in errors.
    pub(super) fn build(path: &Path, file: &str, env: &Env) -> Result<Self, ConfigError> {
        let var_err = |var: &str, message: String| ConfigError {
            path: path.to_owned(),
            line: None,
            variable: Some(var.to_owned()),
            message,
        };
        if let Some(var) = env.unreadable.first() {
            return Err(var_err(var, "the value is not UTF-8".into()));
        }
        if env.vars.is_empty() {
            return Ok(Self::plain(file));
        }
        let settings = env
            .vars
            .iter()
            .map(|(var, value)| resolve(var, value).map_err(|m| var_err(var, m)))
            .collect::<Result<Vec<_>, _>>()?;
        let doc = ImDocument::parse(file).map_err(|e| ConfigError {
            path: path.to_owned(),
            line: e.span().map(|s| line_of(file, s.start)),
            variable: None,
            message: e.message().to_owned(),
        })?;
        let root_at = root_insert_at(&doc, file);
        let mut edits = settings
            .iter()
            .map(|s| edit(&doc, file, root_at, s).map_err(|m| var_err(&s.var, m)))
            .collect::<Result<Vec<_>, _>>()?;
        // In text order; at one insertion point, in variable-name order.
        edits.sort_by(|a, b| (a.at.start, &a.var).cmp(&(b.at.start, &b.var)));
        let (mut text, mut parts, mut pos) = (String::new(), Vec::new(), 0);
        for e in edits {
            parts.push((text.len(), Source::File(pos)));
            text.push_str(&file[pos..e.at.start]);
            parts.push((text.len(), Source::Variable(e.var)));
            text.push_str(&e.text);
            pos = e.at.end;
        }
        parts.push((text.len(), Source::File(pos)));
        text.push_str(&file[pos..]);
        Ok(Self {
            text,
            file: file.to_owned(),
            parts,
            keys: settings
                .into_iter()
                .map(|s| (dotted_key(&s.path), s.var))
                .collect(),
        })
    }

    /// The file alone.
    pub(super) fn plain(file: &str) -> Self {
        Self {
            text: file.to_owned(),
            file: file.to_owned(),
            parts: vec![(0, Source::File(0))],
            keys: Vec::new(),
        }
    }

    /// Where the text at `span` came from. An empty span (a default value) is placed
    /// in the file.
    pub(super) fn origin(&self, span: Range<usize>) -> Origin {
        let at = span.start.min(self.text.len());
        let i = self.parts.partition_point(|(start, _)| *start <= at);
        let mut k = i.saturating_sub(1);
        if span.is_empty() {
            while k > 0 && matches!(self.parts[k].1, Source::Variable(_)) {
                k -= 1;
            }
        }
        match &self.parts[k] {
            (_, Source::Variable(var)) => Origin::Variable(var.clone()),
            (start, Source::File(from)) => {
                let end = self.parts.get(k + 1).map_or(self.text.len(), |p| p.0);
                let offset = from + at.min(end) - start;
                Origin::Line(line_of(&self.file, offset))
            }
        }
    }

    /// The variable that set `key` (dotted, without entry numbers), if any.
    pub(super) fn variable_of(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// 1-based line of `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The setting `var` names, and its value as TOML.
fn resolve(var: &str, value: &str) -> Result<Setting, String> {
    let name = var.strip_prefix(PREFIX).unwrap_or(var);
    let (path, kind) = schema::settings()
        .iter()
        .find_map(|s| matches(&s.pattern, name).map(|p| (p, s.kind)))
        .ok_or_else(|| {
            "names no setting (a setting's section and key, upper-cased and joined by _; \
             entries of [[sources]], [[datasets]] and [[bundles]] numbered from 0)"
                .to_owned()
        })?;
    let toml = toml_text(kind, value).map_err(|m| format!("{}: {m}", dotted_key(&path)))?;
    Ok(Setting {
        var: var.to_owned(),
        path,
        toml,
    })
}

/// The path of `name` (a variable name without the prefix) if it names `pattern`.
fn matches(pattern: &str, name: &str) -> Option<Vec<Step>> {
    let mut rest = name;
    let mut path = Vec::new();
    for (i, segment) in pattern_steps(pattern).enumerate() {
        if i > 0 {
            rest = rest.strip_prefix('_')?;
        }
        match segment {
            Some("*") => {
                if rest.is_empty() {
                    return None;
                }
                path.push(Step::Key(rest.to_ascii_lowercase()));
                rest = "";
            }
            Some(key) => {
                rest = rest.strip_prefix(key.to_ascii_uppercase().as_str())?;
                path.push(Step::Key(key.to_owned()));
            }
            None => {
                let digits = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                let number = &rest[..digits];
                // One spelling per entry: no leading zeros.
                if number.is_empty() || (number.len() > 1 && number.starts_with('0')) {
                    return None;
                }
                path.push(Step::Index(number.parse().ok()?));
                rest = &rest[digits..];
            }
        }
    }
    rest.is_empty().then_some(path)
}

/// A pattern's steps: `Some(key)`, or `None` for an entry number.
fn pattern_steps(pattern: &str) -> impl Iterator<Item = Option<&str>> {
    pattern
        .split('.')
        .flat_map(|segment| match segment.strip_suffix("[]") {
            Some(key) => vec![Some(key), None],
            None => vec![Some(segment)],
        })
}

/// `sources.resilience.timeout_ms` for `sources[2].resilience.timeout_ms`.
fn dotted_key(path: &[Step]) -> String {
    path.iter()
        .filter_map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            Step::Index(_) => None,
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A variable's text as a TOML value of `kind`.
fn toml_text(kind: Kind, value: &str) -> Result<String, String> {
    match kind {
        Kind::Str => Ok(toml_edit::Value::from(value).to_string()),
        Kind::Int => value
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("{value:?} is not a whole number")),
        Kind::List => {
            let items: Vec<String> = if value.trim_start().starts_with('[') {
                let array = value
                    .parse::<toml_edit::Value>()
                    .map_err(|e| format!("{value:?} is not a TOML array: {}", e.message()))?;
                array
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect())
                    .unwrap_or(None)
                    .ok_or_else(|| format!("{value:?} is not an array of strings"))?
            } else {
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            };
            Ok(toml_edit::Value::Array(items.into_iter().collect()).to_string())
        }
    }
}

/// Replace `at` of the file with `text` (an empty `at` inserts).
#[derive(Debug)]
struct Edit {
    at: Range<usize>,
    text: String,
    var: String,
}

/// Where keys of the root table are added: before the first table header (root keys
/// must come first), or at the end of a file without one.
fn root_insert_at(doc: &ImDocument<&str>, file: &str) -> usize {
    fn first_header(item: &Item, first: &mut Option<usize>) {
        let mut see = |t: &toml_edit::Table| {
            if let Some(span) = header_span(t) {
                *first = Some(first.map_or(span.start, |f: usize| f.min(span.start)));
            }
            for (_, child) in t.iter() {
                first_header(child, first);
            }
        };
        match item {
            Item::Table(t) => see(t),
            Item::ArrayOfTables(a) => a.iter().for_each(see),
            _ => {}
        }
    }
    let mut first = None;
    for (_, item) in doc.as_table().iter() {
        first_header(item, &mut first);
    }
    match first {
        Some(at) => file[..at].rfind('\n').map_or(0, |n| n + 1),
        None => file.len(),
    }
}

/// The span of a table's `[header]`, when it has one (not implicit, not dotted).
fn header_span(t: &toml_edit::Table) -> Option<Range<usize>> {
    (!t.is_implicit() && !t.is_dotted())
        .then(|| t.span())
        .flatten()
}

/// Just after the line holding `at`.
fn next_line(file: &str, at: usize) -> usize {
    file[at..].find('\n').map_or(file.len(), |n| at + n + 1)
}

/// How to lay setting `s` over the file: replace the value it has, or add the key
/// under the nearest table header above it.
fn edit(doc: &ImDocument<&str>, file: &str, root_at: usize, s: &Setting) -> Result<Edit, String> {
    let (leaf, parents) = match s.path.split_last() {
        Some((Step::Key(leaf), parents)) => (leaf, parents),
        _ => return Err("not a key".into()),
    };
    let mut item = doc.as_item();
    // Where a missing key goes, and its dotted path relative to that table.
    let mut insert_at = root_at;
    let mut relative: Vec<&str> = Vec::new();
    let mut missing = false;
    let mut inline_at: Option<usize> = None;
    for (i, step) in parents.iter().enumerate() {
        let next = match step {
            Step::Key(k) => item.get(k.as_str()),
            Step::Index(n) => item.get(*n),
        };
        match (next, step) {
            (Some(next), _) => {
                match next {
                    Item::Table(t) => {
                        if let Some(span) = header_span(t) {
                            insert_at = next_line(file, span.start);
                            relative.clear();
                        } else if let Step::Key(k) = step {
                            relative.push(k);
                        }
                    }
                    Item::Value(v) if inline_at.is_none() => {
                        inline_at = v.span().map(|s| s.start);
                    }
                    _ => {}
                }
                item = next;
            }
            (None, Step::Index(n)) => {
                let section = dotted_key(&parents[..i]);
                let have = item.as_array_of_tables().map_or(0, |a| a.len());
                return Err(format!(
                    "the config has no [[{section}]] entry {n} (it has {have}; entries are numbered from 0)"
                ));
            }
            (None, Step::Key(k)) => {
                if let Some(Step::Index(_)) =
                    parents[i..].iter().find(|s| matches!(s, Step::Index(_)))
                {
                    return Err(format!(
                        "the config has no [[{}]] entries",
                        dotted_key(&parents[..=i])
                    ));
                }
                relative.push(k);
                relative.extend(parents[i + 1..].iter().filter_map(|s| match s {
                    Step::Key(k) => Some(k.as_str()),
                    Step::Index(_) => None,
                }));
                missing = true;
                break;
            }
        }
    }
    let current = if missing {
        None
    } else {
        item.get(leaf.as_str())
    };
    match current {
        Some(Item::Value(v)) => {
            let span = v.span().ok_or("the file's value has no position")?;
            // Keep the file's line count: a multi-line value is replaced by a one-line
            // value followed by as many blank lines (inside the brackets of an array).
            let newlines = file[span.clone()].matches('\n').count();
            let text = if newlines > 0 && s.toml.ends_with(']') {
                let open = &s.toml[..s.toml.len() - 1];
                format!("{open}{}]", "\n".repeat(newlines))
            } else {
                format!("{}{}", s.toml, "\n".repeat(newlines))
            };
            Ok(Edit {
                at: span,
                text,
                var: s.var.clone(),
            })
        }
        Some(_) => Err(format!(
            "{} is a table in the file, not a value",
            dotted_key(&s.path)
        )),
        None => {
            if let Some(at) = inline_at {
                return Err(format!(
                    "cannot add {} to the inline table at line {}; write it as a [section] in the file",
                    dotted_key(&s.path),
                    line_of(file, at)
                ));
            }
            relative.push(leaf);
            let key = relative
                .iter()
                .map(|k| toml_edit::Key::new(*k).display_repr().into_owned())
                .collect::<Vec<_>>()
                .join(".");
            let lead = if insert_at == file.len() && !file.is_empty() && !file.ends_with('\n') {
                "\n"
            } else {
                ""
            };
            Ok(Edit {
                at: insert_at..insert_at,
                text: format!("{lead}{key} = {}\n", s.toml),
                var: s.var.clone(),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use Kind::{Int, List, Str};

    #[test]
    fn every_setting_has_one_variable_name() {
        let settings = schema::settings();
        for pattern in settings.iter().map(|s| s.pattern.as_str()) {
            let name: String = pattern_steps(pattern)
                .map(|s| s.map_or("3".to_owned(), |k| k.replace('*', "birth_date")))
                .collect::<Vec<_>>()
                .join("_")
                .to_ascii_uppercase();
            let found: Vec<&str> = settings
                .iter()
                .filter(|s| matches(&s.pattern, &name).is_some())
                .map(|s| s.pattern.as_str())
                .collect();
            assert_eq!(found, [pattern], "TONGBAN_{name}");
        }
        assert_eq!(
            matches(
                "sources[].resilience.timeout_ms",
                "SOURCES_12_RESILIENCE_TIMEOUT_MS"
            ),
            Some(vec![
                Step::Key("sources".into()),
                Step::Index(12),
                Step::Key("resilience".into()),
                Step::Key("timeout_ms".into())
            ])
        );
        assert_eq!(matches("sources[].url", "SOURCES_01_URL"), None);
        assert_eq!(
            matches("datasets[].fields.*", "DATASETS_0_FIELDS_BIRTH_DATE").map(|p| dotted_key(&p)),
            Some("datasets.fields.birth_date".into())
        );
    }

    #[test]
    fn values_become_toml() {
        assert_eq!(toml_text(Str, "a \"b\"").unwrap(), r#"'a "b"'"#);
        assert_eq!(toml_text(Int, " 512 ").unwrap(), "512");
        assert!(toml_text(Int, "5k")
            .unwrap_err()
            .contains("not a whole number"));
        assert_eq!(
            toml_text(List, "a.pem, b.pem,").unwrap(),
            r#"["a.pem", "b.pem"]"#
        );
        assert_eq!(toml_text(List, "").unwrap(), "[]");
        assert_eq!(
            toml_text(List, r#"["a,b", "c"]"#).unwrap(),
            r#"["a,b", "c"]"#
        );
        assert!(toml_text(List, "[1, 2]").is_err());
    }

    fn overlay(file: &str, vars: &[(&str, &str)]) -> Result<Overlay, String> {
        Overlay::build(
            Path::new("t.toml"),
            file,
            &Env::from_pairs(vars.iter().copied()),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn replaces_in_place_and_adds_under_headers() {
        let file = "node = \"a\"\nlisten = \"x\"\n\n[tls]\ncert = \"c\"\nclient_cas = [\n  \"1\",\n  \"2\",\n]\n\n[[sources]]\nname = \"s0\"\n\n[[sources]]\nname = \"s1\"\n[sources.resilience]\nretries = 1\n\n[audit.anomaly]\ndenials_burst = 3\n";
        let o = overlay(
            file,
            &[
                ("TONGBAN_LISTEN", "127.0.0.1:1"),
                ("TONGBAN_OPS_LISTEN", "127.0.0.1:2"),
                ("TONGBAN_TLS_KEY", "k"),
                ("TONGBAN_TLS_CLIENT_CAS", "9"),
                ("TONGBAN_SOURCES_0_RESILIENCE_TIMEOUT_MS", "5"),
                ("TONGBAN_SOURCES_1_RESILIENCE_TIMEOUT_MS", "6"),
                ("TONGBAN_SOURCES_1_URL", "u"),
                ("TONGBAN_AUDIT_BATCH_MAX", "7"),
                ("TONGBAN_TELEMETRY_LOG_FORMAT", "json"),
            ],
        )
        .unwrap();
        let v: toml::Value = toml::from_str(&o.text).unwrap();
        assert_eq!(v["listen"].as_str(), Some("127.0.0.1:1"));
        assert_eq!(v["ops_listen"].as_str(), Some("127.0.0.1:2"));
        assert_eq!(v["tls"]["key"].as_str(), Some("k"));
        assert_eq!(v["tls"]["client_cas"].as_array().unwrap().len(), 1);
        assert_eq!(
            v["sources"][0]["resilience"]["timeout_ms"].as_integer(),
            Some(5)
        );
        assert_eq!(
            v["sources"][1]["resilience"]["timeout_ms"].as_integer(),
            Some(6)
        );
        assert_eq!(
            v["sources"][1]["resilience"]["retries"].as_integer(),
            Some(1)
        );
        assert_eq!(v["sources"][1]["url"].as_str(), Some("u"));
        assert_eq!(v["audit"]["batch_max"].as_integer(), Some(7));
        assert_eq!(v["audit"]["anomaly"]["denials_burst"].as_integer(), Some(3));
        assert_eq!(v["telemetry"]["log_format"].as_str(), Some("json"));

        // Every byte of the file keeps its line; what a variable wrote is the variable's.
        let at = |needle: &str| {
            let start = o.text.find(needle).unwrap();
            o.origin(start..start + needle.len())
        };
        assert_eq!(at("denials_burst = 3"), Origin::Line(20));
        assert_eq!(at("retries = 1"), Origin::Line(17));
        assert_eq!(at("name = \"s1\""), Origin::Line(15));
        assert_eq!(
            at("\"127.0.0.1:1\""),
            Origin::Variable("TONGBAN_LISTEN".into())
        );
        assert_eq!(
            at("ops_listen"),
            Origin::Variable("TONGBAN_OPS_LISTEN".into())
        );
        assert_eq!(
            at("[\"9\""),
            Origin::Variable("TONGBAN_TLS_CLIENT_CAS".into())
        );
        assert_eq!(o.origin(0..0), Origin::Line(1));
        assert_eq!(
            o.variable_of("telemetry.log_format"),
            Some("TONGBAN_TELEMETRY_LOG_FORMAT")
        );
        assert_eq!(o.variable_of("sources.url"), Some("TONGBAN_SOURCES_1_URL"));
    }

    #[test]
    fn a_file_without_headers_or_final_newline() {
        let o = overlay("node = \"a\"", &[("TONGBAN_LISTEN", "l")]).unwrap();
        let v: toml::Value = toml::from_str(&o.text).unwrap();
        assert_eq!(v["listen"].as_str(), Some("l"));
        assert_eq!(v["node"].as_str(), Some("a"));
    }

    #[test]
    fn variables_that_cannot_apply_are_named() {
        let file = "node = \"a\"\ntls = { cert = \"c\" }\n[[sources]]\nname = \"s\"\n";
        let cases = [
            (
                "TONGBAN_LISTN",
                "TONGBAN_LISTN (environment; config t.toml): names no setting",
            ),
            ("TONGBAN_SOURCES_1_URL", "no [[sources]] entry 1 (it has 1;"),
            ("TONGBAN_DATASETS_0_NAME", "no [[datasets]] entries"),
            (
                "TONGBAN_TLS_KEY",
                "cannot add tls.key to the inline table at line 2",
            ),
            (
                "TONGBAN_AUDIT_BATCH_MAX",
                "audit.batch_max: \"x\" is not a whole number",
            ),
        ];
        for (var, want) in cases {
            let e = overlay(file, &[(var, "x")]).unwrap_err();
            assert!(e.contains(want), "{var}: want {want:?} in {e}");
        }
        // A key of an inline table is replaced where it stands.
        let o = overlay(file, &[("TONGBAN_TLS_CERT", "d")]).unwrap();
        let v: toml::Value = toml::from_str(&o.text).unwrap();
        assert_eq!(v["tls"]["cert"].as_str(), Some("d"));
        // TONGBAN_CONFIG names the file and is left alone.
        assert!(Env::from_pairs([(CONFIG_VAR, "x")]).is_empty());
    }

    /// One of every table the config has.
    const FULL: &str = concat!(
        crate::config::test_files::head!(),
        r#"
[audit]
batch_max = 100

[audit.anomaly]
denials_burst = 5

[limits]
max_body_bytes = 1000

[telemetry]
log_level = "info"

[policy]
sync_interval_ms = 100

[[sources]]
name = "population-db"
kind = "sql"
url = "sqlite://population.db"
[sources.resilience]
retries = 1

[[datasets]]
name = "population"
department = "sz-psb"
subject = "resident_id"
source = "population-db"
query = "SELECT full_name, birth_date FROM residents WHERE id_number = ?"
[[datasets.fields]]
name = "name"
column = "full_name"
class = "conditional"
[[datasets.fields]]
name = "birth_date"
type = "date"
column = "dob"
class = "conditional"

[[bundles]]
name = "one"
[[bundles.items]]
name = "person"
dataset = "population"
"#
    );

    /// Every key the config structs accept has a variable: serde's "unknown field"
    /// error lists the keys each table accepts, and the schema walk must find each.
    #[test]
    fn settings_cover_every_key_of_the_file() {
        let tables = [
            ("", "node = "),
            ("tls", "[tls]\n"),
            ("audit", "[audit]\n"),
            ("audit.anomaly", "[audit.anomaly]\n"),
            ("limits", "[limits]\n"),
            ("telemetry", "[telemetry]\n"),
            ("policy", "[policy]\n"),
            ("sources[]", "[[sources]]\n"),
            ("sources[].resilience", "[sources.resilience]\n"),
            ("datasets[]", "[[datasets]]\n"),
            ("datasets[].fields[]", "[[datasets.fields]]\n"),
            ("bundles[]", "[[bundles]]\n"),
            ("bundles[].items[]", "[[bundles.items]]\n"),
        ];
        assert!(toml::from_str::<super::super::RawConfig>(FULL).is_ok());
        for (table, header) in tables {
            let at = FULL.find(header).unwrap();
            let at = if table.is_empty() {
                at
            } else {
                at + header.len()
            };
            let text = format!("{}zz_not_a_key = 1\n{}", &FULL[..at], &FULL[at..]);
            let err = toml::from_str::<super::super::RawConfig>(&text)
                .err()
                .unwrap_or_else(|| panic!("[{table}] accepted an unknown key"))
                .message()
                .to_owned();
            let keys: Vec<&str> = err.split('`').skip(1).step_by(2).skip(1).collect();
            assert!(!keys.is_empty(), "{err}");
            for key in keys {
                let full = if table.is_empty() {
                    key.to_owned()
                } else {
                    format!("{table}.{key}")
                };
                let covered = schema::settings().iter().any(|s| {
                    let p = &s.pattern;
                    *p == full
                        || p.starts_with(&format!("{full}."))
                        || p.starts_with(&format!("{full}[]."))
                });
                assert!(covered, "{full} has no TONGBAN_ variable");
            }
        }
    }

    /// Variables of a test case.
    type Vars<'a> = &'a [(&'a str, &'a str)];

    fn dir() -> tempfile::TempDir {
        crate::config::test_files::dir_with(&["other.pem", "population.db"])
    }

    fn load(
        d: &tempfile::TempDir,
        text: &str,
        vars: &[(&str, &str)],
    ) -> Result<crate::config::Config, String> {
        crate::config::Config::parse_with(
            &d.path().join("tongban.toml"),
            text,
            &Env::from_pairs(vars.iter().copied()),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn variables_win_over_the_file() {
        let d = dir();
        let c = load(
            &d,
            FULL,
            &[
                ("TONGBAN_LISTEN", "0.0.0.0:9443"),
                ("TONGBAN_STATE_DB", "postgres://u:secret@db.example/tongban"),
                ("TONGBAN_TLS_CERT", "other.pem"),
                ("TONGBAN_TLS_CLIENT_CAS", "ca.pem,other.pem"),
                ("TONGBAN_AUDIT_BATCH_MAX", "64"),
                ("TONGBAN_AUDIT_ANOMALY_SERVICE_HOURS", "09:00-17:00"),
                ("TONGBAN_TELEMETRY_OTLP_ENDPOINT", "http://collector:4317"),
                ("TONGBAN_TELEMETRY_LOG_FORMAT", "json"),
                ("TONGBAN_SOURCES_0_RESILIENCE_TIMEOUT_MS", "750"),
                ("TONGBAN_DATASETS_0_FIELDS_1_COLUMN", "birth_date"),
                ("TONGBAN_LIMITS_SHUTDOWN_GRACE_SECS", "5"),
            ],
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:9443");
        assert_eq!(c.ops_listen.to_string(), "127.0.0.1:9090");
        assert!(matches!(c.state_db, crate::config::StateDb::Postgres(_)));
        assert_eq!(
            c.tls.cert,
            d.path().join("other.pem"),
            "relative to the file"
        );
        assert_eq!(c.tls.client_cas.len(), 2);
        assert_eq!(c.audit.batch_max, 64);
        assert_eq!(c.audit.anomaly.denials_burst, 5, "the file's, untouched");
        assert_eq!(c.audit.anomaly.service_minutes().unwrap(), (540, 1020));
        assert_eq!(c.telemetry.otlp_endpoint, "http://collector:4317");
        assert_eq!(c.telemetry.log_format, "json");
        assert_eq!(c.sources[0].resilience.timeout_ms, 750);
        assert_eq!(c.sources[0].resilience.retries, 1);
        assert_eq!(
            c.datasets[0].field("birth_date").unwrap().from.as_deref(),
            Some("birth_date")
        );
        assert_eq!(c.limits.shutdown_grace_secs, 5);
        assert_eq!(c.env.names().count(), 11);
    }

    #[test]
    fn errors_name_the_variable_or_the_line() {
        let d = dir();
        let cases: [(&str, Vars, &str); 6] = [
            (
                FULL,
                &[("TONGBAN_LISTEN", "localhost")],
                "TONGBAN_LISTEN (environment; config ",
            ),
            (
                FULL,
                &[("TONGBAN_TLS_CERT", "gone.pem")],
                "TONGBAN_TLS_CERT (environment; config ",
            ),
            (
                FULL,
                &[("TONGBAN_TELEMETRY_LOG_FORMAT", "xml")],
                "TONGBAN_TELEMETRY_LOG_FORMAT (environment; config ",
            ),
            (
                FULL,
                &[("TONGBAN_AUDIT_ANOMALY_SERVICE_HOURS", "late")],
                "TONGBAN_AUDIT_ANOMALY_SERVICE_HOURS (environment; config ",
            ),
            (
                FULL,
                &[("TONGBAN_SOURCES_0_KIND", "ftp")],
                "TONGBAN_SOURCES_0_KIND (environment; config ",
            ),
            // Added lines do not move the file's: the bad source kind is still line 29.
            (
                &FULL.replace("kind = \"sql\"", "kind = \"ftp\""),
                &[
                    ("TONGBAN_OPS_LISTEN", "127.0.0.1:1"),
                    ("TONGBAN_TLS_CRLS", ""),
                    ("TONGBAN_LIMITS_MAX_CONCURRENT_REQUESTS", "9"),
                ],
                "tongban.toml:29: sources.kind",
            ),
        ];
        for (text, vars, want) in cases {
            let e = load(&d, text, vars).unwrap_err();
            assert!(e.contains(want), "want {want:?} in {e}");
        }
        let e = load(&d, FULL, &[("TONGBAN_LISTEN", "localhost")]).unwrap_err();
        assert!(
            e.ends_with(": listen: \"localhost\" is not an address like 127.0.0.1:8443"),
            "{e}"
        );
    }

    /// Found by the property below: TLS files set by a variable on a SQL source were
    /// blamed on the source's `kind` line in the file.
    #[test]
    fn tls_files_on_a_sql_source_name_the_variable() {
        let d = dir();
        let e = load(&d, FULL, &[("TONGBAN_SOURCES_0_CA", "other.pem")]).unwrap_err();
        assert!(e.contains("TONGBAN_SOURCES_0_CA"), "{e}");
        assert!(e.contains("are for kind = \"http\""), "{e}");
    }

    /// A bad `[sources.resilience]` value set by a variable was blamed on the table's
    /// header line in the file.
    #[test]
    fn resilience_errors_name_the_variable() {
        let d = dir();
        for (var, value, want) in [
            (
                "TONGBAN_SOURCES_0_RESILIENCE_TIMEOUT_MS",
                "0",
                "timeout_ms must be at least 1",
            ),
            (
                "TONGBAN_SOURCES_0_RESILIENCE_RETRIES",
                "11",
                "retries must be at most 10",
            ),
            (
                "TONGBAN_SOURCES_0_RESILIENCE_BREAKER_FAILURES",
                "0",
                "breaker_failures",
            ),
        ] {
            let e = load(&d, FULL, &[(var, value)]).unwrap_err();
            assert!(e.contains(var) && e.contains(want), "{var}={value}: {e}");
        }
        // Written in the file, the same mistake names its line.
        let text = FULL.replace("retries = 1\n", "retries = 11\n");
        let e = load(&d, &text, &[]).unwrap_err();
        assert!(
            e.contains("tongban.toml:32: sources.resilience.retries"),
            "{e}"
        );
    }

    /// A bad `health_path` set by a variable was blamed on the source's `url` line.
    #[test]
    fn health_path_errors_name_the_variable() {
        let d = dir();
        let var = "TONGBAN_SOURCES_0_HEALTH_PATH";
        let e = load(&d, FULL, &[(var, "readyz")]).unwrap_err();
        assert!(e.contains(var) && e.contains("must start with /"), "{e}");
    }

    /// A source renamed by a variable, which a dataset still names by its file name,
    /// was blamed on the dataset's `source` line.
    #[test]
    fn a_renamed_source_names_the_variable() {
        let d = dir();
        let var = "TONGBAN_SOURCES_0_NAME";
        let e = load(&d, FULL, &[(var, "renamed")]).unwrap_err();
        assert!(
            e.contains(var) && e.contains("no source named \"population-db\""),
            "{e}"
        );
    }

    /// Every known variable, its `[]` indexes 0 and its `*` keys `birth_date`.
    fn variable_names() -> Vec<String> {
        schema::settings()
            .iter()
            .map(|s| {
                let name: String = pattern_steps(&s.pattern)
                    .map(|s| s.map_or("0".to_owned(), |k| k.replace('*', "birth_date")))
                    .collect::<Vec<_>>()
                    .join("_")
                    .to_ascii_uppercase();
                format!("TONGBAN_{name}")
            })
            .collect()
    }

    /// A value as an operator might set it, or anything at all.
    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            "\\PC{0,40}",
            any::<String>(),
            any::<i64>().prop_map(|n| n.to_string()),
            "[0-9]{1,25}",
            "[a-z0-9.,:/ \\[\\]\"'-]{0,40}",
            Just("other.pem".to_owned()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 128, ..Default::default() })]

        /// Any value of any known variable over a good file: loaded, or refused
        /// naming that variable; never a panic.
        #[test]
        fn any_value_of_a_variable_is_taken_or_refused_naming_it(
            name in proptest::sample::select(variable_names()),
            value in value(),
        ) {
            let d = dir();
            if let Err(e) = load(&d, FULL, &[(&name, &value)]) {
                // Named by the variable, or — for what the value breaks elsewhere (a
                // renamed dataset a bundle item still names) — by the line of the file
                // it breaks.
                let at_line = e
                    .split_once("tongban.toml:")
                    .and_then(|(_, rest)| rest.split_once(':'))
                    .is_some_and(|(n, _)| n.parse::<usize>().is_ok());
                proptest::prop_assert!(e.contains(&name) || at_line, "{name}={value:?}: {e}");
            }
        }
    }
}
