//! The configuration loader end to end: YAML parsing, merging, `${env:…}` expansion, top-level
//! and per-component validation, pipeline wiring. Any input: errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netshim::component::BuildContext;
use netshim::config::{Source, load_with_env};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data).into_owned();
    // Two sources, so merging is exercised too: the input and the input's second half.
    let half = text
        .chars()
        .skip(text.chars().count() / 2)
        .collect::<String>();
    let sources = [
        Source::Inline {
            name: "a.yaml".into(),
            text,
        },
        Source::Inline {
            name: "b.yaml".into(),
            text: half,
        },
    ];
    let env = |name: &str| (name.len() % 2 == 0).then(|| format!("v-{name}"));
    if let Ok(loaded) = load_with_env(&sources, &env) {
        let _ = netshim::pipeline::build(loaded.config, BuildContext::new("fuzz"));
    }
});
