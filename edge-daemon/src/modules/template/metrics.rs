//! template's Prometheus metrics, registered by the module at start in the node's
//! registry (`garasi_template_*`). Labels stay low-cardinality: never an id.

use prometheus::{IntCounter, Registry};

pub struct TemplateMetrics {
    pub items_written_total: IntCounter,
}

impl TemplateMetrics {
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let items_written_total =
            IntCounter::new("template_items_written_total", "Items created or changed")?;
        r.register(Box::new(items_written_total.clone()))?;
        Ok(TemplateMetrics {
            items_written_total,
        })
    }
}
