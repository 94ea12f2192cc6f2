//! The id rule edge and cloud share: vehicle and device ids become MQTT topic levels at
//! the edge, so the cloud must accept exactly the ids the edge can use.

/// 1-64 ASCII letters, digits, '-' or '_', starting with a letter or digit (no topic
/// separators or wildcards).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}
