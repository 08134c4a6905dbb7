//! `packaging/ringtail.toml` cannot go stale: it parses with the broker's loader, resolves to
//! exactly the built-in defaults, lists every key the loader knows (Ringtail's and the
//! `[kafka]` ones) and shows Kafka's default for each Kafka setting.

use std::path::PathBuf;

use super::*;
use crate::log::topic_config::BROKER_CONFIGS;

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../packaging/ringtail.toml")
}

fn template() -> String {
    std::fs::read_to_string(template_path()).expect("packaging/ringtail.toml is readable")
}

/// The top-level keys `FileConfig` accepts, from serde's own list (the error for an unknown
/// key names every expected one), so a key added to the loader is seen here at once.
fn known_keys() -> Vec<String> {
    let err = toml::from_str::<FileConfig>("__probe__ = 1")
        .expect_err("an unknown key is refused")
        .to_string();
    let list = err
        .split("expected one of")
        .nth(1)
        .unwrap_or_else(|| panic!("unexpected error text: {err}"));
    let keys: Vec<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(
        keys.len() > 10 && keys.iter().any(|k| k == "kafka_addr"),
        "{keys:?}"
    );
    keys
}

#[test]
fn template_lists_every_key_the_loader_knows() {
    let text = template();
    // Parses with the loader (unknown keys are refused), so every key in it is known.
    let file: FileConfig = toml::from_str(&text).expect("the template parses");
    assert!(
        file.kafka.is_empty(),
        "Kafka settings stay commented out: defaults"
    );
    for key in known_keys() {
        let listed = text.lines().any(|l| {
            let l = l.trim_start_matches('#').trim_start();
            l.starts_with(&format!("{key} =")) || l == format!("[{key}]")
        });
        assert!(listed, "packaging/ringtail.toml does not list `{key}`");
    }
}

#[test]
fn template_values_are_the_defaults() {
    let with_template = BrokerConfig::resolve(&Overrides {
        config_file: Some(template_path()),
        ..Overrides::default()
    })
    .expect("the template resolves");
    let built_in = BrokerConfig::resolve(&Overrides::default()).expect("defaults resolve");
    assert_eq!(format!("{with_template:?}"), format!("{built_in:?}"));
}

#[test]
fn template_shows_kafka_defaults_for_every_kafka_setting() {
    let text = template();
    let kafka = text
        .split_once("\n[kafka]\n")
        .map(|(_, k)| k)
        .expect("the template has a [kafka] table");
    let mut pairs = Vec::new();
    for def in BROKER_CONFIGS {
        let prefix = format!("# \"{}\" =", def.name);
        let line = kafka
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("[kafka] does not list \"{}\"", def.name));
        let Some(default) = def.default else { continue };
        // `# "name" = value   # Type`: the value is TOML.
        let value_text = line[prefix.len()..]
            .split("   #")
            .next()
            .unwrap_or_default()
            .trim();
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value_text}"))
            .unwrap_or_else(|e| panic!("{}: {value_text:?} is not TOML: {e}", def.name))
            .remove("v")
            .expect("parsed");
        let shown = match &value {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(shown, default, "\"{}\" shows another default", def.name);
        pairs.push((def.name.to_string(), shown));
    }
    // Every default shown is valid as written (uncommenting one changes nothing).
    crate::log::topic_config::BrokerDefaults::from_pairs(pairs).expect("the defaults validate");
}
