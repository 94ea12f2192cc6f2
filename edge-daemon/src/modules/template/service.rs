//! template's public API for other modules (`TemplateApi`), published in `Services` at
//! start. Other modules use only this file, never `store.rs` or `api.rs`.

use serde::{Deserialize, Serialize};

use super::config::TemplateConfig;
use super::metrics::TemplateMetrics;
use super::store;
use crate::store::{Store, StoreCallError};

/// One item, as other modules and the API see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub id: String,
    pub label: String,
    /// Who wrote it: the signed-in person's id, never a body field.
    pub set_by: String,
    pub updated_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("item id {0:?} is invalid: use 1-64 letters, digits, '-' or '_'")]
    BadId(String),
    #[error("label must be 1-{0} characters without control or bidi-override characters")]
    BadLabel(usize),
    #[error(transparent)]
    Store(#[from] StoreCallError),
}

pub struct TemplateApi {
    store: Store,
    metrics: TemplateMetrics,
    cfg: TemplateConfig,
}

impl TemplateApi {
    pub(super) fn new(store: Store, metrics: TemplateMetrics, cfg: TemplateConfig) -> Self {
        TemplateApi {
            store,
            metrics,
            cfg,
        }
    }

    pub async fn list(&self) -> Result<Vec<Item>, TemplateError> {
        Ok(self.store.read(store::list).await?)
    }

    /// Stores an item written by `person` (validated first: nothing unchecked is kept).
    pub async fn put(&self, id: &str, label: &str, person: &str) -> Result<Item, TemplateError> {
        if !crate::modules::auth::service::valid_id(id) {
            return Err(TemplateError::BadId(id.chars().take(64).collect()));
        }
        let label = label.trim();
        let hostile = |c: char| {
            c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        };
        if label.is_empty()
            || label.chars().count() > self.cfg.max_label_chars
            || label.chars().any(hostile)
        {
            return Err(TemplateError::BadLabel(self.cfg.max_label_chars));
        }
        let item = Item {
            id: id.to_string(),
            label: label.to_string(),
            set_by: person.to_string(),
            updated_ms: crate::util::now_ms(),
        };
        let it = item.clone();
        self.store.write(move |c| store::put(c, &it)).await?;
        self.metrics.items_written_total.inc();
        Ok(item)
    }
}
