//! `extract.labels` and `extract.annotations`: which pod labels and annotations become
//! attributes, and under what name, as in the Collector's k8sattributes processor.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

/// One entry of `extract.labels` or `extract.annotations`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRule {
    /// The attribute name. Default: `k8s.pod.labels.<key>` (or `k8s.pod.annotations.<key>`).
    /// With `key_regex`, `$1`, `$2`… name its capture groups.
    pub tag_name: Option<String>,
    /// An exact key.
    pub key: Option<String>,
    /// A regular expression that keys must match (anchored: the whole key).
    pub key_regex: Option<String>,
    /// Where the label lives. Only `pod` is supported (namespace labels would need a
    /// namespace watch, and more RBAC).
    #[serde(default)]
    pub from: From,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum From {
    #[default]
    Pod,
    Namespace,
}

impl FieldRule {
    /// Problems with this rule, prefixed by where it sits (`extract::labels::0`).
    pub fn problems(&self, at: &str) -> Vec<String> {
        let mut out = Vec::new();
        match (&self.key, &self.key_regex) {
            (Some(_), Some(_)) => out.push(format!("{at}: give `key` or `key_regex`, not both")),
            (None, None) => out.push(format!("{at}: `key` or `key_regex` is required")),
            (None, Some(re)) => {
                if let Err(e) = Regex::new(&format!("^(?:{re})$")) {
                    out.push(format!("{at}::key_regex: {e}"));
                }
            }
            (Some(_), None) => {}
        }
        if self.from == From::Namespace {
            out.push(format!(
                "{at}::from: `namespace` is not supported (it would need a namespace watch); use `pod`"
            ));
        }
        out
    }
}

enum Matcher {
    Key(String),
    Regex(Regex),
}

/// Rules ready to apply.
pub struct Rules {
    rules: Vec<(Matcher, Option<String>)>,
    default_prefix: &'static str,
}

impl Rules {
    /// Compiles `rules` (already checked by [`FieldRule::problems`]; a rule that still fails to
    /// compile is dropped).
    pub fn compile(rules: &[FieldRule], default_prefix: &'static str) -> Self {
        let rules = rules
            .iter()
            .filter_map(|r| {
                let matcher = match (&r.key, &r.key_regex) {
                    (Some(k), _) => Matcher::Key(k.clone()),
                    (None, Some(re)) => Matcher::Regex(Regex::new(&format!("^(?:{re})$")).ok()?),
                    (None, None) => return None,
                };
                Some((matcher, r.tag_name.clone()))
            })
            .collect();
        Rules {
            rules,
            default_prefix,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Adds an attribute to `out` for each entry of `source` a rule matches.
    pub fn apply(
        &self,
        source: Option<&BTreeMap<String, String>>,
        out: &mut BTreeMap<String, String>,
    ) {
        let Some(source) = source else { return };
        for (matcher, tag) in &self.rules {
            match matcher {
                Matcher::Key(key) => {
                    if let Some(value) = source.get(key) {
                        let name = tag
                            .clone()
                            .unwrap_or_else(|| format!("{}{key}", self.default_prefix));
                        out.insert(name, value.clone());
                    }
                }
                Matcher::Regex(re) => {
                    for (key, value) in source {
                        if let Some(caps) = re.captures(key) {
                            let name = match tag {
                                Some(t) => {
                                    let mut name = String::new();
                                    caps.expand(t, &mut name);
                                    name
                                }
                                None => format!("{}{key}", self.default_prefix),
                            };
                            out.insert(name, value.clone());
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: Option<&str>, re: Option<&str>, tag: Option<&str>) -> FieldRule {
        FieldRule {
            tag_name: tag.map(str::to_string),
            key: key.map(str::to_string),
            key_regex: re.map(str::to_string),
            from: From::Pod,
        }
    }

    #[test]
    fn keys_regexes_and_tag_names() {
        let labels = BTreeMap::from([
            ("app".to_string(), "web".to_string()),
            ("team-payments".to_string(), "yes".to_string()),
            ("tier".to_string(), "front".to_string()),
        ]);
        let rules = Rules::compile(
            &[
                rule(Some("app"), None, None),
                rule(Some("tier"), None, Some("service.tier")),
                rule(None, Some("team-(.*)"), Some("team.$1")),
                rule(Some("absent"), None, None),
            ],
            "k8s.pod.labels.",
        );
        let mut out = BTreeMap::new();
        rules.apply(Some(&labels), &mut out);
        assert_eq!(out["k8s.pod.labels.app"], "web");
        assert_eq!(out["service.tier"], "front");
        assert_eq!(out["team.payments"], "yes");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn regexes_match_whole_keys() {
        let labels = BTreeMap::from([("xapp".to_string(), "1".to_string())]);
        let rules = Rules::compile(&[rule(None, Some("app"), None)], "p.");
        let mut out = BTreeMap::new();
        rules.apply(Some(&labels), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn bad_rules_are_reported() {
        assert!(rule(None, None, None).problems("x")[0].contains("required"));
        assert!(rule(Some("a"), Some("b"), None).problems("x")[0].contains("not both"));
        assert!(rule(None, Some("("), None).problems("x")[0].contains("key_regex"));
        let mut ns = rule(Some("a"), None, None);
        ns.from = From::Namespace;
        assert!(ns.problems("x")[0].contains("not supported"));
        assert!(rule(Some("a"), None, None).problems("x").is_empty());
    }
}
