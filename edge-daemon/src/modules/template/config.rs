//! template's settings: the `[modules.template]` section of the config file, checked
//! with every other setting at start (all problems at once, exit 64).

use serde::Deserialize;

/// What the section may hold; unknown keys are refused (a typo never keeps a default).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Longest label accepted, in characters (1-1000).
    #[serde(default = "default_max_label_chars")]
    pub max_label_chars: usize,
}

fn default_max_label_chars() -> usize {
    120
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            max_label_chars: default_max_label_chars(),
        }
    }
}

/// The section parsed and checked, or every problem in it.
pub(super) fn parse(section: &toml::Table) -> Result<TemplateConfig, Vec<String>> {
    let cfg: TemplateConfig = toml::Value::Table(section.clone())
        .try_into()
        // The message names the key (`... in `max_label_chars``); the value is not echoed
        // for a mistyped key, and settings holding secrets must not echo them either.
        .map_err(|e: toml::de::Error| vec![e.to_string().trim().replace('\n', " ")])?;
    if !(1..=1000).contains(&cfg.max_label_chars) {
        return Err(vec![format!(
            "max_label_chars = {} is out of range: use 1 to 1000",
            cfg.max_label_chars
        )]);
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn defaults_values_and_refusals() {
        assert_eq!(parse(&table("")).unwrap(), TemplateConfig::default());
        assert_eq!(
            parse(&table("max_label_chars = 40"))
                .unwrap()
                .max_label_chars,
            40
        );
        for bad in [
            "max_label_chars = 0",
            "max_label_chars = 5000",
            "max_label_chars = \"ten\"",
            "max_lable_chars = 40",
        ] {
            assert!(parse(&table(bad)).is_err(), "{bad}");
        }
    }
}
