//! Garbage in, errors out: no input may make loading panic.

use super::*;

/// Small deterministic generator (xorshift64*), so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

const TOKENS: &[&str] = &[
    "receivers",
    "service",
    "pipelines",
    "metrics",
    "exporters",
    "telemetry",
    "logs",
    "level",
    "a",
    "b/c",
    ":",
    ": ",
    " ",
    "\n",
    "  ",
    "    ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&x ",
    "*x",
    "!!str ",
    "!!binary ",
    "!custom ",
    "${env:X}",
    "${X}",
    "${env:X:-1}",
    "$$",
    "${",
    "$",
    "}",
    "~",
    "null",
    "true",
    "yes",
    "\"",
    "'",
    "# c",
    "? ",
    "<<: ",
    "1e999",
    ".nan",
    "-.inf",
    "99999999999999999999999",
    "0x1F",
    "0o17",
    "-0",
    "\t",
    "|",
    ">",
    "---",
    "...",
    "%YAML 1.2",
    "\u{feff}",
    "\u{0}",
    "\u{85}",
    "é",
    "🔑",
    "\\",
    "\r\n",
];

fn env(name: &str) -> Option<String> {
    match name {
        "X" => Some("[1, {a: b}]".into()),
        _ => None,
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[allow(dead_code)] // only deserialized
struct AnyComponent {
    #[serde(with = "humantime_serde")]
    collection_interval: std::time::Duration,
    port: u16,
    names: Vec<String>,
}

impl Validate for AnyComponent {}

/// Loads `bytes` as a file and as inline text, then parses every component found.
fn exercise(bytes: &[u8]) {
    let _ = super::yaml::parse_document("raw.yaml", bytes);
    let text = String::from_utf8_lossy(bytes).into_owned();
    let sources = [
        Source::Inline {
            name: "fuzz.yaml".into(),
            text: text.clone(),
        },
        Source::Inline {
            name: "fuzz2.yaml".into(),
            text,
        },
    ];
    match load_with_env(&sources, &env) {
        Ok(loaded) => parse_every_component(&loaded.config),
        Err(errors) => {
            assert!(!errors.is_empty());
            let _ = errors.to_string();
        }
    }
}

fn parse_every_component(config: &RawConfig) {
    for (section, components) in [
        ("receivers", &config.receivers),
        ("resolvers", &config.resolvers),
        ("exporters", &config.exporters),
        ("extensions", &config.extensions),
    ] {
        for (id, settings) in components {
            let _ = id.parse::<ComponentId>();
            let _ = parse_component::<AnyComponent>(&format!("{section}::{id}"), settings.clone());
        }
    }
}

#[test]
fn random_bytes_do_not_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..300 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&bytes);
    }
}

#[test]
fn random_yaml_token_soup_does_not_panic() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    for _ in 0..400 {
        let count = rng.below(40);
        let text: String = (0..count)
            .map(|_| TOKENS[rng.below(TOKENS.len())])
            .collect();
        exercise(text.as_bytes());
    }
}

#[test]
fn weird_documents_do_not_panic() {
    let deep_lists = format!("receivers: {}1{}", "[".repeat(5000), "]".repeat(5000));
    let deep_maps = format!(
        "receivers:\n{}",
        (1..2000)
            .map(|depth| format!("{}k:\n", " ".repeat(depth)))
            .collect::<String>()
    );
    let long_line = format!("receivers:\n  x:\n    v: {}\n", "y".repeat(100_000));
    let many_keys: String = (0..5000)
        .map(|index| format!("k{index}: {index}\n"))
        .collect();
    let documents = [
        "",
        "~",
        "---",
        "--- !!map\n",
        "...",
        "receivers: ~\nservice: ~\n",
        "receivers: {a: ~, b: []}\n",
        "service: {pipelines: {m: {receivers: [~, 1, {a: b}]}}}\n",
        "service:\n  pipelines: [a, b]\n",
        "service: {telemetry: {logs: {level: [debug]}}}\n",
        "1: 2\n",
        "true: false\n",
        "null: ~\n",
        "? [a, b]\n: c\n",
        "? {a: b}\n: c\n",
        "receivers: &r {a: *r}\n",
        "receivers: *undefined\n",
        "receivers: !!binary AAECAw==\n",
        "receivers: {x: !!binary /w==}\n",
        "receivers: {x: {port: 99999999999999999999999999999999}}\n",
        "receivers: {x: {port: -1}}\n",
        "receivers: {x: {collection_interval: 1000000000000000000000y}}\n",
        "receivers: {x: {port: ${env:X}}}\n",
        "receivers: {x: {port: \"${env:X\"}}\n",
        "receivers: {\"\": 1, \"/\": 2, \"a/\": 3, \"a//b\": 4}\n",
        "%YAML 1.2\n%TAG ! tag:x,2000:\n---\nreceivers: !foo {}\n",
        "a: 1\n---\nb: 2\n",
        "\u{feff}receivers: {}\n",
        "receivers:\n\t- a\n",
        "receivers: |\n  text\n",
        "receivers: {<<: [{a: 1}, {b: 2}]}\n",
        "<<: {receivers: {}}\n",
        &deep_lists,
        &deep_maps,
        &long_line,
        &many_keys,
    ];
    for document in documents {
        exercise(document.as_bytes());
    }
    let utf16 = [0xff, 0xfe, b'a', 0, b':', 0, b' ', 0, b'1', 0];
    exercise(&utf16);
}

#[test]
fn garbage_values_in_parse_component_do_not_panic() {
    let values = [
        serde_json::json!([1, 2]),
        serde_json::json!({"port": 1e300}),
        serde_json::json!({"port": -5, "names": {"a": 1}, "x": null, "collection_interval": 5}),
        serde_json::json!({"collection_interval": "5 fortnights"}),
    ];
    for value in values {
        assert!(parse_component::<AnyComponent>("receivers::x", value).is_err());
    }
}

#[test]
fn alias_bomb_is_refused() {
    // 10^11 nodes once expanded; parsed once only, as reaching the limit is slow in debug builds.
    let mut alias_bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    for level in 0..10 {
        let previous = match level {
            0 => "a".to_string(),
            _ => format!("b{}", level - 1),
        };
        let refs = vec![format!("*{previous}"); 10].join(",");
        alias_bomb.push_str(&format!("b{level}: &b{level} [{refs}]\n"));
    }
    let error = super::yaml::parse_document("bomb.yaml", alias_bomb.as_bytes()).unwrap_err();
    assert!(
        error.message.contains("too large or too complex"),
        "{error}"
    );
}
