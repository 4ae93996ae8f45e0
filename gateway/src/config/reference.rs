//! `docs/configuration.md`, generated from the config schema: every setting with its
//! key, `TONGBAN_*` variable, type, default and doc comment. A test fails when the
//! committed file differs, and rewrites it with `TONGBAN_REGENERATE_DOCS=1`.
#![allow(clippy::unwrap_used)] // test support: a failed write is a failed test

use std::fmt::Write as _;

use serde_json::Value;

use super::schema::{settings, Kind, Setting};

impl Setting {
    /// The table the setting is in (`sources[].resilience`; empty: the top level).
    pub(crate) fn table(&self) -> &str {
        self.pattern.rsplit_once('.').map_or("", |(t, _)| t)
    }

    /// The key within its table.
    pub(crate) fn key(&self) -> &str {
        self.pattern
            .rsplit_once('.')
            .map_or(&self.pattern, |(_, k)| k)
    }

    /// The `TONGBAN_*` variable, with `<n>` for entry numbers and `<KEY>` for a
    /// map's key.
    pub(crate) fn variable(&self) -> String {
        let name = self
            .pattern
            .to_ascii_uppercase()
            .replace("[]", ".<n>")
            .replace('*', "<KEY>")
            .replace('.', "_");
        format!("TONGBAN_{name}")
    }
}

/// `docs/configuration.md`, generated from [`settings`].
pub(crate) fn reference() -> String {
    let mut out = String::from(HEADER);
    let mut table = None;
    for s in settings() {
        if table != Some(s.table()) {
            table = Some(s.table());
            let _ = write!(out, "\n## {}\n\n", heading(s.table()));
            out.push_str("| key | variable | type | default | what it does |\n");
            out.push_str("|---|---|---|---|---|\n");
        }
        let kind = match s.kind {
            Kind::Str => "string",
            Kind::Int => "integer",
            Kind::List => "list of strings",
        };
        let default = match (&s.default, s.required) {
            (_, true) => "required".to_owned(),
            (None | Some(Value::Null), false) => "—".to_owned(),
            (Some(v), false) => format!("`{v}`"),
        };
        let key = s.key().replace('*', "<key>");
        let _ = writeln!(
            out,
            "| `{key}` | `{}` | {kind} | {default} | {} |",
            s.variable(),
            s.description
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    out
}

/// A table's header as the file writes it: `[tls]`, `[[sources]]`,
/// `[sources.resilience]`.
fn heading(table: &str) -> String {
    if table.is_empty() {
        return "Top level".to_owned();
    }
    let dotted = table.replace("[]", "");
    if table.ends_with("[]") {
        format!("`[[{dotted}]]`")
    } else {
        format!("`[{dotted}]`")
    }
}

const HEADER: &str = "# Configuration reference

<!-- Generated from the config structs in gateway/src/config*: do not edit by hand.
     Regenerate with `TONGBAN_REGENERATE_DOCS=1 cargo test -p gateway reference_is_up_to_date`. -->

The gateway reads one TOML file, `tongban serve --config FILE` (default
`./tongban.toml`, or the file `TONGBAN_CONFIG` names); every command that reads or
changes a gateway's state takes the same `--config`. Relative paths in it are resolved
against the file's directory. `tongban config check FILE` checks it without serving;
a mistake is reported with the file and line, or the variable, and exit code 2.

Every setting can also be given as a `TONGBAN_*` variable, which wins over the file:
`TONGBAN_`, then the table and key upper-cased and joined by `_`. Entries of an array
of tables (`[[sources]]`, `[[datasets]]`, a dataset's `fields`, `[[bundles]]`,
`[[bundles.items]]`) are numbered from 0 in file order (`<n>`), and a map's key comes
last (`<key>`). Lists are comma-separated, or written as a TOML array when an element
holds a comma. A `TONGBAN_*` variable that names no setting is an error, so a misspelt
one is not silently ignored.
";

#[test]
fn variables_are_named_as_the_overlay_reads_them() {
    let named = |pattern: &str| {
        settings()
            .iter()
            .find(|s| s.pattern == pattern)
            .map(Setting::variable)
    };
    assert_eq!(
        named("audit.anomaly.denials_burst").as_deref(),
        Some("TONGBAN_AUDIT_ANOMALY_DENIALS_BURST")
    );
    assert_eq!(
        named("bundles[].items[].dataset").as_deref(),
        Some("TONGBAN_BUNDLES_<n>_ITEMS_<n>_DATASET")
    );
    assert_eq!(
        named("datasets[].fields[].column").as_deref(),
        Some("TONGBAN_DATASETS_<n>_FIELDS_<n>_COLUMN")
    );
}

/// The committed reference is what the code generates; with
/// `TONGBAN_REGENERATE_DOCS=1` the test writes it instead.
#[test]
fn reference_is_up_to_date() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("docs")
        .join("configuration.md");
    let want = reference();
    if std::env::var_os("TONGBAN_REGENERATE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the config structs: regenerate it with \
         `TONGBAN_REGENERATE_DOCS=1 cargo test -p gateway reference_is_up_to_date`",
        path.display()
    );
}
