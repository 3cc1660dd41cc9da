//! Merging of several configuration sources (`--config` given more than once).
//!
//! Rules, following the Collector's confmap:
//! - maps merge deeply: keys of the later source are added, and where both sources have a key
//!   the two values are merged by these same rules;
//! - lists and scalars are replaced by the later value (lists are not concatenated);
//! - a later **null** never erases an earlier value: `debug/quiet:` written in an override
//!   file only says "this component exists", so the settings an earlier file gave it are kept.
//!   Consequently a setting cannot be reset to its default by a later file, only overridden.

use serde_json::{Map, Value};

use super::document::Document;

/// Merges `later` over `base`, in place; positions of the winning values follow.
pub(crate) fn merge_document(base: &mut Document, later: Document) {
    let mut kept_earlier = Vec::new();
    let mut path = Vec::new();
    merge_maps(&mut base.root, later.root, &mut path, &mut kept_earlier);
    base.locations.absorb(later.locations, |path| {
        !kept_earlier.iter().any(|kept| kept == path)
    });
}

/// `kept_earlier` collects the paths where a later null left the earlier value in place, so
/// that the earlier position is kept too.
fn merge_maps(
    base: &mut Map<String, Value>,
    later: Map<String, Value>,
    path: &mut Vec<String>,
    kept_earlier: &mut Vec<Vec<String>>,
) {
    for (key, later_value) in later {
        match (base.get_mut(&key), later_value) {
            (Some(existing), Value::Null) if !existing.is_null() => {
                path.push(key);
                kept_earlier.push(path.clone());
                path.pop();
            }
            (Some(Value::Object(existing)), Value::Object(later_map)) => {
                path.push(key);
                merge_maps(existing, later_map, path, kept_earlier);
                path.pop();
            }
            (_, later_value) => {
                base.insert(key, later_value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::yaml::parse_document;

    fn merged(texts: &[&str]) -> Document {
        let mut documents = texts.iter().enumerate().map(|(index, text)| {
            parse_document(&format!("{index}.yaml"), text.as_bytes()).unwrap()
        });
        let mut base = documents.next().unwrap();
        for document in documents {
            merge_document(&mut base, document);
        }
        base
    }

    #[test]
    fn maps_merge_deeply_and_later_scalars_win() {
        let document = merged(&[
            "exporters:\n  debug:\n    verbosity: normal\n    sampling: 5\n",
            "exporters:\n  debug:\n    verbosity: detailed\n  otlp: {endpoint: x}\n",
        ]);
        assert_eq!(
            Value::Object(document.root),
            json!({"exporters": {
                "debug": {"verbosity": "detailed", "sampling": 5},
                "otlp": {"endpoint": "x"}
            }})
        );
    }

    #[test]
    fn lists_are_replaced_not_appended() {
        let document = merged(&["a: [1, 2, 3]\n", "a: [4]\n"]);
        assert_eq!(document.root["a"], json!([4]));
    }

    #[test]
    fn later_null_keeps_earlier_value_and_its_position() {
        let document = merged(&[
            "exporters:\n  debug/quiet:\n    verbosity: basic\n",
            "\n\nexporters:\n  debug/quiet:\n  debug:\n",
        ]);
        assert_eq!(
            document.root["exporters"]["debug/quiet"],
            json!({"verbosity": "basic"})
        );
        assert_eq!(document.root["exporters"]["debug"], json!(null));
        let path = vec!["exporters".to_string(), "debug/quiet".to_string()];
        assert_eq!(document.locations.get(&path).unwrap().source, "0.yaml");
        let path = vec!["exporters".to_string()];
        assert_eq!(document.locations.get(&path).unwrap().source, "1.yaml");
    }

    #[test]
    fn map_replaces_scalar_and_scalar_replaces_map() {
        let document = merged(&["a: 1\nb: {x: 1}\n", "a: {y: 2}\nb: 3\n"]);
        assert_eq!(document.root["a"], json!({"y": 2}));
        assert_eq!(document.root["b"], json!(3));
    }
}
