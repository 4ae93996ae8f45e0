//! A batch's signed note as its receipts carry it.

use std::sync::Arc;

/// The signed note of a batch's tree, as every receipt of the batch carries it: its
/// JSON string form is written once, not once per answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchNote {
    text: Arc<str>,
    json: Arc<str>,
}

impl BatchNote {
    /// The note `text`.
    pub fn new(text: &str) -> Self {
        let mut json = Vec::with_capacity(text.len() + 16);
        crate::canonical::write_str(&mut json, text);
        Self {
            text: text.into(),
            json: String::from_utf8_lossy(&json).into(),
        }
    }

    /// The note's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The note as a JSON string, quoted and escaped.
    pub fn json(&self) -> &str {
        &self.json
    }
}

impl From<&str> for BatchNote {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl std::ops::Deref for BatchNote {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}
