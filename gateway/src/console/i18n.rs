//! The console's languages: Chinese by default, English when the browser prefers it
//! (`Accept-Language`) or the viewer switched (`?lang=`, kept in a cookie). Every
//! message lives in a catalogue file (`gateway/console/i18n/<lang>.toml`), compiled
//! into the binary; templates and pages name messages by key.

use std::collections::HashMap;

/// A language the console speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 简体中文, the default.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// The code in `?lang=`, the cookie and `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// `zh`, `zh-CN`, `en`, `en-GB`, … (case-insensitive); anything else is none.
    pub fn parse(s: &str) -> Option<Self> {
        let primary = s.trim().split(['-', '_']).next()?.to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Lang::Zh),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language a request asks for: `?lang=`, else the cookie, else the
    /// `Accept-Language` entry with the highest weight that the console speaks,
    /// else Chinese.
    pub fn choose(query: Option<&str>, cookie: Option<&str>, accept: Option<&str>) -> Self {
        query
            .and_then(Lang::parse)
            .or_else(|| cookie.and_then(Lang::parse))
            .or_else(|| accept.and_then(preferred))
            .unwrap_or(Lang::Zh)
    }
}

/// The best language of an `Accept-Language` value (RFC 9110 §12.5.4) that the
/// console speaks; ties go to the one listed first.
fn preferred(accept: &str) -> Option<Lang> {
    let mut best: Option<(Lang, f32)> = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let Some(lang) = parts.next().and_then(Lang::parse) else {
            continue;
        };
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .and_then(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if q > 0.0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((lang, q));
        }
    }
    best.map(|(l, _)| l)
}

/// Why a catalogue file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// Not TOML.
    #[error("console message catalogue {file}: {source}")]
    Parse {
        /// Which file.
        file: &'static str,
        /// The parser's message, with the line.
        source: toml::de::Error,
    },
    /// A value that is not a string.
    #[error("console message catalogue {file}: {key} is not a string")]
    NotText {
        /// Which file.
        file: &'static str,
        /// The key.
        key: String,
    },
}

/// Both catalogues, by language and key (`nav.search`, `problem.forbidden`, …).
#[derive(Debug)]
pub struct Messages {
    zh: HashMap<String, String>,
    en: HashMap<String, String>,
}

const ZH: (&str, &str) = ("zh.toml", include_str!("../../console/i18n/zh.toml"));
const EN: (&str, &str) = ("en.toml", include_str!("../../console/i18n/en.toml"));

impl Messages {
    /// The catalogues compiled into the binary.
    pub fn embedded() -> Result<Self, CatalogueError> {
        Ok(Self {
            zh: flatten(ZH.0, ZH.1)?,
            en: flatten(EN.0, EN.1)?,
        })
    }

    /// The message `key` in `lang`; a missing key shows as itself (the tests make
    /// sure none is missing).
    pub fn get<'a>(&'a self, lang: Lang, key: &'a str) -> &'a str {
        let table = match lang {
            Lang::Zh => &self.zh,
            Lang::En => &self.en,
        };
        table.get(key).map_or(key, String::as_str)
    }

    /// Every key of `lang`'s catalogue.
    pub fn keys(&self, lang: Lang) -> impl Iterator<Item = &str> {
        match lang {
            Lang::Zh => self.zh.keys(),
            Lang::En => self.en.keys(),
        }
        .map(String::as_str)
    }
}

/// `[nav] search = "…"` → `nav.search`.
fn flatten(file: &'static str, text: &str) -> Result<HashMap<String, String>, CatalogueError> {
    let table: toml::Table =
        toml::from_str(text).map_err(|source| CatalogueError::Parse { file, source })?;
    let mut out = HashMap::new();
    let mut stack: Vec<(String, toml::Table)> = vec![(String::new(), table)];
    while let Some((prefix, table)) = stack.pop() {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                toml::Value::String(s) => {
                    out.insert(key, s);
                }
                toml::Value::Table(t) => stack.push((key, t)),
                _ => return Err(CatalogueError::NotText { file, key }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_language_is_the_switch_then_the_cookie_then_the_browsers_then_chinese() {
        assert_eq!(Lang::choose(None, None, None), Lang::Zh);
        assert_eq!(Lang::choose(None, None, Some("en-US,en;q=0.9")), Lang::En);
        assert_eq!(
            Lang::choose(None, None, Some("fr;q=1, en;q=0.5, zh-CN;q=0.8")),
            Lang::Zh
        );
        assert_eq!(Lang::choose(None, None, Some("fr, de")), Lang::Zh);
        assert_eq!(Lang::choose(None, None, Some("en;q=0, zh;q=0.1")), Lang::Zh);
        assert_eq!(Lang::choose(None, Some("en"), Some("zh")), Lang::En);
        assert_eq!(Lang::choose(Some("zh-CN"), Some("en"), None), Lang::Zh);
        assert_eq!(Lang::choose(Some("xx"), Some("en"), None), Lang::En);
    }

    #[test]
    fn both_catalogues_have_the_same_keys_and_no_empty_message() {
        let m = Messages::embedded().unwrap();
        let zh: BTreeSet<&str> = m.keys(Lang::Zh).collect();
        let en: BTreeSet<&str> = m.keys(Lang::En).collect();
        assert!(zh.len() > 50, "{}", zh.len());
        let only_zh: Vec<_> = zh.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&zh).collect();
        assert!(
            only_zh.is_empty() && only_en.is_empty(),
            "only in zh.toml: {only_zh:?}; only in en.toml: {only_en:?}"
        );
        for lang in [Lang::Zh, Lang::En] {
            for k in m.keys(lang) {
                assert!(!m.get(lang, k).trim().is_empty(), "{k} is empty");
            }
        }
    }

    /// Every key the templates and pages name (`c.t(key)`) is in the catalogues, so
    /// no page shows a bare key.
    #[test]
    fn every_key_used_is_in_the_catalogues() {
        let m = Messages::embedded().unwrap();
        let known: BTreeSet<&str> = m.keys(Lang::Zh).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut sources = Vec::new();
        for dir in ["templates/console", "src/console", "src/console/pages"] {
            for entry in std::fs::read_dir(root.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    sources.push((path.clone(), std::fs::read_to_string(&path).unwrap()));
                }
            }
        }
        let mut used = 0;
        for (path, text) in &sources {
            for (i, _) in text.match_indices(".t(\"") {
                let rest = &text[i + 4..];
                let key = &rest[..rest.find('"').unwrap()];
                used += 1;
                assert!(
                    known.contains(key),
                    "{}: message {key:?} is in no catalogue",
                    path.display()
                );
            }
        }
        assert!(used > 50, "found only {used} uses");
    }

    /// Every problem type has its title in both languages, so the console shows
    /// refusals and errors in the viewer's language.
    #[test]
    fn every_problem_type_has_a_title() {
        let m = Messages::embedded().unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let errors = std::fs::read_to_string(root.join("src/error.rs")).unwrap();
        let start = errors.find("pub fn slug").unwrap();
        let end = errors.find("pub fn title").unwrap();
        let slugs: Vec<&str> = errors[start..end].split('"').skip(1).step_by(2).collect();
        assert!(slugs.len() > 25, "{slugs:?}");
        for lang in [Lang::Zh, Lang::En] {
            for slug in &slugs {
                let key = format!("problem.{slug}");
                assert_ne!(m.get(lang, &key), key, "{lang:?}: no title for {slug}");
            }
        }
        assert_eq!(
            m.get(Lang::Zh, "problem.forbidden"),
            "没有允许此操作的共享协议"
        );
    }
}
