//! Pages in Bahasa Indonesia and English from one message catalogue per page set: a
//! TOML table of keys, each with its `id` and `en` text side by side (so a translator
//! sees both, and a missing one is a test failure, not a blank on a tablet). The
//! language is `?lang=`, else the `garasi_lang` cookie the language switch sets, else
//! the browser's `Accept-Language`, else Indonesian: the depot's language.

use std::collections::HashMap;

use axum::http::{header, HeaderMap};

/// A page language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Id,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Id => "id",
            Lang::En => "en",
        }
    }

    /// A language code (`id`, `en`, or a tag starting with one: `en-GB`).
    pub fn from_code(s: &str) -> Option<Lang> {
        match s.trim().get(..2)?.to_ascii_lowercase().as_str() {
            "id" => Some(Lang::Id),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language a request asks for (see the module note).
    pub fn of(query: Option<&str>, headers: &HeaderMap) -> Lang {
        if let Some(l) = query.and_then(Lang::from_code) {
            return l;
        }
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| kv.trim().strip_prefix("garasi_lang="));
        if let Some(l) = cookie.and_then(Lang::from_code) {
            return l;
        }
        // The supported language the browser prefers most (q-values; first on a tie).
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mut best: Option<(Lang, f32)> = None;
        for part in accept.split(',').take(16) {
            let mut bits = part.split(';');
            let Some(l) = bits.next().and_then(Lang::from_code) else {
                continue;
            };
            let q = bits
                .find_map(|b| b.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .filter(|q| q.is_finite())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((l, q));
            }
        }
        best.map_or(Lang::Id, |(l, _)| l)
    }
}

/// One page set's messages.
#[derive(Debug)]
pub struct Catalogue {
    messages: HashMap<String, (String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("the message catalogue is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("message {0:?} lacks its {1:?} text")]
    Missing(String, &'static str),
}

impl Catalogue {
    /// A catalogue with no messages (pages then show keys).
    pub fn empty() -> Catalogue {
        Catalogue {
            messages: HashMap::new(),
        }
    }

    /// Parses a catalogue; every key must have both languages.
    pub fn parse(text: &str) -> Result<Catalogue, CatalogueError> {
        let table: toml::Table = text.parse()?;
        let mut messages = HashMap::new();
        for (key, v) in table {
            let text = |lang: &'static str| {
                v.get(lang)
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
                    .map(str::to_string)
                    .ok_or_else(|| CatalogueError::Missing(key.clone(), lang))
            };
            let pair = (text("id")?, text("en")?);
            messages.insert(key, pair);
        }
        Ok(Catalogue { messages })
    }

    /// The text of `key` (the key itself when the catalogue lacks it, which the page
    /// tests catch).
    pub fn t<'a>(&'a self, lang: Lang, key: &'a str) -> &'a str {
        match (self.messages.get(key), lang) {
            (Some((id, _)), Lang::Id) => id,
            (Some((_, en)), Lang::En) => en,
            (None, _) => key,
        }
    }

    /// Every key, for checks that a page's template names only known messages.
    pub fn has(&self, key: &str) -> bool {
        self.messages.contains_key(key)
    }

    /// Replaces every `{{t:KEY}}` in a template with its text (HTML-escaped).
    pub fn fill(&self, lang: Lang, template: &str) -> String {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(i) = rest.find("{{t:") {
            out.push_str(&rest[..i]);
            let after = &rest[i + 4..];
            match after.find("}}") {
                Some(j) => {
                    out.push_str(&crate::util::esc(self.t(lang, &after[..j])));
                    rest = &after[j + 2..];
                }
                None => {
                    out.push_str(&rest[i..]);
                    rest = "";
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Keys a template names that the catalogue lacks.
    pub fn unknown_in(&self, template: &str) -> Vec<String> {
        template
            .split("{{t:")
            .skip(1)
            .filter_map(|s| s.split("}}").next())
            .filter(|k| !self.has(k))
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
#[path = "i18n_tests.rs"]
mod tests;
