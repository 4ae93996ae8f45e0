//! Config-test fixtures: a directory holding the files a config names, and parsing
//! a config text as if it were written there.
#![allow(clippy::unwrap_used)] // test support: a failed write is a failed test

use super::{Config, ConfigError};

/// The top of the test configs here (lines 1-10): the keys every config needs and
/// its `[tls]`, naming the files of [`BASE_FILES`].
macro_rules! head {
    () => {
        r#"node = "gw-1"
listen = "127.0.0.1:8443"
ops_listen = "127.0.0.1:9090"
state_db = "state.db"
signing_key = "signing.pem"

[tls]
cert = "server.pem"
key = "server.key"
client_cas = ["ca.pem"]
"#
    };
}
pub(crate) use head;

/// The files every test config here names: the signing key and the TLS files.
const BASE_FILES: &[&str] = &["signing.pem", "server.pem", "server.key", "ca.pem"];

/// A temp dir with placeholder files for [`BASE_FILES`] and `extra`. The config
/// checks only that named files exist; their contents are read at start-up.
pub(crate) fn dir_with(extra: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for f in BASE_FILES.iter().chain(extra) {
        std::fs::write(d.path().join(f), "x").unwrap();
    }
    d
}

/// Parse `text` as `tongban.toml` in `d`, errors as their messages.
pub(crate) fn parse_in(d: &tempfile::TempDir, text: &str) -> Result<Config, String> {
    Config::parse(&d.path().join("tongban.toml"), text).map_err(|e: ConfigError| e.to_string())
}

/// A placeholder file for every string of `doc` that is a path under `root`, so that
/// an example config's absolute paths, moved under `root`, name files that exist.
pub(crate) fn touch_paths_under(doc: &toml::Value, root: &str) {
    match doc {
        toml::Value::String(s) if s.starts_with(root) => {
            let path = std::path::Path::new(s);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "x").unwrap();
        }
        toml::Value::Array(items) => items.iter().for_each(|v| touch_paths_under(v, root)),
        toml::Value::Table(t) => t.values().for_each(|v| touch_paths_under(v, root)),
        _ => {}
    }
}

/// Each text, written in `d`, fails to parse with an error naming the file and
/// holding `want`.
pub(crate) fn assert_errors(
    d: &tempfile::TempDir,
    cases: impl IntoIterator<Item = (String, &'static str)>,
) {
    for (text, want) in cases {
        let err = parse_in(d, &text).unwrap_err();
        assert!(err.contains("tongban.toml"), "{err}");
        assert!(err.contains(want), "want {want:?} in {err}");
    }
}
