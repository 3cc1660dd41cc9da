//! YAML text to [`Document`], with serde-saphyr.
//!
//! serde-saphyr deserializes straight into typed values and has no position-carrying value
//! tree of its own, so we read the document into a small private tree whose keys and list
//! elements are wrapped in `serde_saphyr::Spanned` (which records line and column), then
//! flatten that into a `serde_json::Value` plus a [`LocationIndex`].
//!
//! Parser settings: duplicate keys are errors (serde-saphyr's default); booleans follow YAML
//! 1.2 (`yes`/`no`/`on`/`off` stay strings, as with the Collector's YAML library); numbers
//! with leading zeros (`0755`) stay strings rather than silently changing value; nesting
//! depth ([`MAX_DEPTH`]), node count ([`MAX_NODES`]) and alias expansion are bounded by
//! serde-saphyr's budget, which also keeps every later recursive step (merge, expansion) shallow.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{MessageFormatter, Spanned, UserMessageFormatter};

use super::document::{Document, LocationIndex};
use super::error::{ConfigError, Location};

/// Parses one whole source. An empty document (nothing, only comments, `~`) is an empty map;
/// any other top level that is not a map is an error.
pub(crate) fn parse_document(source_name: &str, bytes: &[u8]) -> Result<Document, ConfigError> {
    let root: Spanned<Node> = serde_saphyr::from_slice_with_options(bytes, parser_options())
        .map_err(|error| syntax_error(source_name, &error))?;
    let root_location = to_location(source_name, &root.referenced);
    let mut document = Document::default();
    let mut path = Vec::new();
    match root.value {
        Node::Scalar(Value::Null) => {}
        Node::Map(entries) => {
            for (key, value) in entries {
                let (key, value) = flatten_entry(source_name, key, value, &mut path, &mut document);
                document.root.insert(key, value);
            }
        }
        other => {
            return Err(ConfigError::new(
                "",
                format!(
                    "the top level of `{source_name}` must be a map of sections (receivers, \
                     resolvers, exporters, extensions, service), found {}",
                    other.kind()
                ),
            )
            .at(root_location));
        }
    }
    Ok(document)
}

/// Parses a short text (an expanded variable) as a single YAML scalar. Returns `None` when the
/// text is not valid YAML or is not a scalar.
pub(crate) fn parse_scalar(text: &str) -> Option<Value> {
    match serde_saphyr::from_slice_with_options::<Node>(text.as_bytes(), parser_options()) {
        Ok(Node::Scalar(value)) => Some(value),
        _ => None,
    }
}

/// Deepest nesting accepted. Configurations are shallow (under ten levels); each level costs
/// tens of kilobytes of stack in a debug build, and loading may run on a 2 MiB thread stack
/// (test threads, tokio workers), so serde-saphyr's default of 64 is lowered.
const MAX_DEPTH: usize = 32;

/// Most nodes accepted in one source, aliases expanded. A configuration has hundreds; this
/// leaves a wide margin while bounding the work an alias bomb can cause (serde-saphyr's
/// default is 250 000).
const MAX_NODES: usize = 100_000;

fn parser_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = MAX_NODES;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    // We render our own "(at file:line:column)"; the snippet would repeat the input.
    options.with_snippet = false;
    options.strict_booleans = true;
    // `0755` or `007` would otherwise become the float 755.0 or the integer 7: keep the text.
    options.leading_zero_numbers_as_strings = true;
    options
}

fn syntax_error(source_name: &str, error: &serde_saphyr::Error) -> ConfigError {
    let original = match error.without_snippet() {
        serde_saphyr::Error::AliasError { error, .. } => error.as_ref(),
        other => other,
    };
    let detail = UserMessageFormatter.format_message(original);
    let location = error
        .location()
        .and_then(|location| to_location(source_name, &location));
    match location {
        Some(location) => {
            ConfigError::new("", format!("invalid YAML: {detail}")).at(Some(location))
        }
        None => ConfigError::new("", format!("invalid YAML in `{source_name}`: {detail}")),
    }
}

fn to_location(source_name: &str, location: &serde_saphyr::Location) -> Option<Location> {
    if *location == serde_saphyr::Location::UNKNOWN || location.line() == 0 {
        return None;
    }
    Some(Location {
        source: source_name.to_owned(),
        line: usize::try_from(location.line()).unwrap_or(usize::MAX),
        column: usize::try_from(location.column()).unwrap_or(usize::MAX),
    })
}

/// Converts one map entry, recording the key's position under its path.
fn flatten_entry(
    source_name: &str,
    key: Spanned<String>,
    value: Spanned<Node>,
    path: &mut Vec<String>,
    document: &mut Document,
) -> (String, Value) {
    path.push(key.value.clone());
    record(source_name, &key.referenced, path, &mut document.locations);
    let value = flatten(source_name, value.value, path, document);
    path.pop();
    (key.value, value)
}

fn flatten(
    source_name: &str,
    node: Node,
    path: &mut Vec<String>,
    document: &mut Document,
) -> Value {
    match node {
        Node::Scalar(value) => value,
        Node::Seq(items) => {
            let mut values = Vec::with_capacity(items.len());
            for (index, item) in items.into_iter().enumerate() {
                path.push(index.to_string());
                record(source_name, &item.referenced, path, &mut document.locations);
                values.push(flatten(source_name, item.value, path, document));
                path.pop();
            }
            Value::Array(values)
        }
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, value) in entries {
                let (key, value) = flatten_entry(source_name, key, value, path, document);
                map.insert(key, value);
            }
            Value::Object(map)
        }
    }
}

fn record(
    source_name: &str,
    location: &serde_saphyr::Location,
    path: &[String],
    locations: &mut LocationIndex,
) {
    if let Some(location) = to_location(source_name, location) {
        locations.insert(path.to_vec(), location);
    }
}

/// A YAML value whose keys and list elements carry their positions.
enum Node {
    /// Null, bool, number or string.
    Scalar(Value),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Scalar(Value::Null) => "null",
            Node::Scalar(Value::Bool(_)) => "a boolean",
            Node::Scalar(Value::Number(_)) => "a number",
            Node::Scalar(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a map",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a YAML scalar, list or map")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(value.into())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(value.into())))
    }

    fn visit_i128<E: de::Error>(self, value: i128) -> Result<Node, E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            // Beyond 64 bits only a float can hold it (approximately), as in the Collector.
            Err(_) => self.visit_f64(value as f64),
        }
    }

    fn visit_u128<E: de::Error>(self, value: u128) -> Result<Node, E> {
        match u64::try_from(value) {
            Ok(value) => self.visit_u64(value),
            Err(_) => self.visit_f64(value as f64),
        }
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Node, E> {
        Number::from_f64(value)
            .map(|number| Node::Scalar(Value::Number(number)))
            .ok_or_else(|| E::custom(format!("`{value}` is not a finite number")))
    }

    fn visit_char<E: de::Error>(self, value: char) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(value.to_string())))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(value)))
    }

    fn visit_bytes<E: de::Error>(self, value: &[u8]) -> Result<Node, E> {
        match std::str::from_utf8(value) {
            Ok(text) => self.visit_str(text),
            Err(_) => Err(E::custom("binary value is not valid UTF-8 text")),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            let value = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Document, ConfigError> {
        parse_document("test.yaml", text.as_bytes())
    }

    #[test]
    fn empty_and_comment_only_documents_are_empty_maps() {
        for text in ["", "\n\n", "# only a comment\n", "---\n", "~\n", "null"] {
            let document = parse(text).unwrap();
            assert!(document.root.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn parses_nested_values_and_records_positions() {
        let document = parse("a:\n  b: [1, x]\n  c: true\n").unwrap();
        assert_eq!(
            Value::Object(document.root),
            json!({"a": {"b": [1, "x"], "c": true}})
        );
        let at = |path: &[&str]| {
            let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
            document.locations.get(&path).map(|l| (l.line, l.column))
        };
        assert_eq!(at(&["a"]), Some((1, 1)));
        assert_eq!(at(&["a", "b"]), Some((2, 3)));
        assert_eq!(at(&["a", "b", "1"]), Some((2, 10)));
        assert_eq!(at(&["a", "c"]), Some((3, 3)));
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let error = parse("receivers:\n  netns: [1\n").unwrap_err();
        let location = error.location.clone().unwrap();
        assert_eq!(location.source, "test.yaml");
        assert_eq!((location.line, location.column), (2, 10));
        assert!(error.message.starts_with("invalid YAML: "), "{error}");
        assert!(
            error.to_string().ends_with("(at test.yaml:2:10)"),
            "{error}"
        );
    }

    #[test]
    fn bad_indentation_is_located() {
        let error = parse("a:\n  b: 1\n c: 2\n").unwrap_err();
        let location = error.location.unwrap();
        assert_eq!(location.line, 3);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let error = parse("a: 1\na: 2\n").unwrap_err();
        assert!(error.message.contains("duplicate"), "{error}");
        assert_eq!(error.location.unwrap().line, 2);
    }

    #[test]
    fn top_level_must_be_a_map() {
        let error = parse("- a\n- b\n").unwrap_err();
        assert!(error.message.contains("found a list"), "{error}");
        assert!(
            parse("just a string")
                .unwrap_err()
                .message
                .contains("a string")
        );
    }

    #[test]
    fn anchors_aliases_and_merge_keys_are_resolved() {
        let document = parse("base: &b {x: 1}\ncopy: *b\nmerged:\n  <<: *b\n  y: 2\n").unwrap();
        assert_eq!(document.root["copy"], json!({"x": 1}));
        assert_eq!(document.root["merged"], json!({"x": 1, "y": 2}));
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        let document = parse("a: yes\nb: on\nc: true\n").unwrap();
        assert_eq!(document.root["a"], json!("yes"));
        assert_eq!(document.root["b"], json!("on"));
        assert_eq!(document.root["c"], json!(true));
    }

    #[test]
    fn leading_zeros_stay_strings() {
        let document = parse(
            "mode: 0755
id: 007
zero: 0
half: 0.5
",
        )
        .unwrap();
        assert_eq!(document.root["mode"], json!("0755"));
        assert_eq!(document.root["id"], json!("007"));
        assert_eq!(document.root["zero"], json!(0));
        assert_eq!(document.root["half"], json!(0.5));
    }

    #[test]
    fn odd_scalars_do_not_panic() {
        let document = parse("big: 99999999999999999999999\nneg: -99999999999999999999\n").unwrap();
        assert!(document.root["big"].is_f64());
        assert!(document.root["neg"].is_f64());
        assert!(parse("x: .nan\n").is_err());
        assert!(parse("x: 1e999\n").is_err());
        assert!(parse("null: 1\n").is_err());
        assert!(parse("[a]: 1\n").is_err());
        assert!(parse("x: *missing\n").is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |depth: usize| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(parse(&format!("a: {}", nested(MAX_DEPTH - 1))).is_ok());
        let error = parse(&format!("a: {}", nested(MAX_DEPTH + 1))).unwrap_err();
        assert!(error.location.is_some(), "{error}");
    }

    #[test]
    fn invalid_utf8_names_the_source() {
        let error = parse_document("bin.yaml", &[b'a', b':', b' ', 0xc3, 0x28]).unwrap_err();
        assert!(error.to_string().contains("bin.yaml"), "{error}");
    }

    #[test]
    fn parse_scalar_only_returns_scalars() {
        assert_eq!(parse_scalar("8080"), Some(json!(8080)));
        assert_eq!(parse_scalar("true"), Some(json!(true)));
        assert_eq!(parse_scalar("1.5"), Some(json!(1.5)));
        assert_eq!(parse_scalar("[1, 2]"), None);
        assert_eq!(parse_scalar("a: b"), None);
        assert_eq!(parse_scalar("{"), None);
    }
}
