//! What one `include`, `exclude` or `drop_*` block matches: its settings, compiled once.

use regex::Regex;
use serde::Deserialize;

use crate::model::{Interface, PodNetwork};

/// How the strings of a block are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchType {
    /// Equal strings.
    Strict,
    /// A regular expression (Rust `regex` syntax) found anywhere in the value, as the
    /// Collector's filter does: anchor with `^…$` for a whole-value match.
    Regexp,
}

/// A pod label to match: the key exactly, the value by the block's `match_type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelMatch {
    pub key: String,
    pub value: String,
}

/// One block's settings. Every property given must match (and, across properties); within
/// one property's list, any entry may (or). Pod properties select pods; interface properties
/// select interfaces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Required: `strict` or `regexp`.
    pub match_type: MatchType,
    /// The pod's Kubernetes namespace.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The pod's name.
    #[serde(default)]
    pub pod_names: Vec<String>,
    /// The pod's labels (from the runtime, else as `k8s.pod.labels.<key>` from
    /// `k8s_attributes`).
    #[serde(default)]
    pub pod_labels: Vec<LabelMatch>,
    /// The pod-side interface name (`eth0`, `net1`).
    #[serde(default)]
    pub interface_names: Vec<String>,
    /// The interface's kind (`veth`, `macvlan`, `vlan`).
    #[serde(default)]
    pub interface_kinds: Vec<String>,
}

impl MatchConfig {
    /// Problems, each with the setting it is at (`namespaces[1]`).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.pod_properties() == 0 && self.interface_properties() == 0 {
            problems.push(
                "matches nothing: give at least one of namespaces, pod_names, pod_labels, \
                 interface_names, interface_kinds"
                    .into(),
            );
        }
        if self.match_type == MatchType::Regexp {
            let lists = [
                ("namespaces", &self.namespaces),
                ("pod_names", &self.pod_names),
                ("interface_names", &self.interface_names),
                ("interface_kinds", &self.interface_kinds),
            ];
            for (name, list) in lists {
                for (i, re) in list.iter().enumerate() {
                    if let Err(e) = Regex::new(re) {
                        problems.push(format!("{name}[{i}]: not a regular expression: {e}"));
                    }
                }
            }
            for (i, l) in self.pod_labels.iter().enumerate() {
                if let Err(e) = Regex::new(&l.value) {
                    problems.push(format!(
                        "pod_labels[{i}].value: not a regular expression: {e}"
                    ));
                }
            }
        }
        problems
    }

    fn pod_properties(&self) -> usize {
        [
            self.namespaces.is_empty(),
            self.pod_names.is_empty(),
            self.pod_labels.is_empty(),
        ]
        .iter()
        .filter(|empty| !**empty)
        .count()
    }

    fn interface_properties(&self) -> usize {
        [
            self.interface_names.is_empty(),
            self.interface_kinds.is_empty(),
        ]
        .iter()
        .filter(|empty| !**empty)
        .count()
    }

    pub fn has_interface_properties(&self) -> bool {
        self.interface_properties() > 0
    }
}

/// Strings compared one way or the other.
#[derive(Debug)]
enum Patterns {
    Strict(Vec<String>),
    Regexp(Vec<Regex>),
}

impl Patterns {
    /// `None` for an empty list (the property is not asked about).
    fn new(match_type: MatchType, list: &[String]) -> Result<Option<Self>, regex::Error> {
        if list.is_empty() {
            return Ok(None);
        }
        Ok(Some(match match_type {
            MatchType::Strict => Patterns::Strict(list.to_vec()),
            MatchType::Regexp => Patterns::Regexp(
                list.iter()
                    .map(|re| Regex::new(re))
                    .collect::<Result<_, _>>()?,
            ),
        }))
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            Patterns::Strict(list) => list.iter().any(|s| s == value),
            Patterns::Regexp(list) => list.iter().any(|re| re.is_match(value)),
        }
    }
}

#[derive(Debug)]
enum ValueMatch {
    Strict(String),
    Regexp(Regex),
}

/// A compiled block.
#[derive(Debug)]
pub struct Matcher {
    namespaces: Option<Patterns>,
    pod_names: Option<Patterns>,
    pod_labels: Vec<(String, ValueMatch)>,
    interface_names: Option<Patterns>,
    interface_kinds: Option<Patterns>,
}

impl Matcher {
    /// Compiles a block; its regular expressions were checked by [`MatchConfig::problems`].
    pub fn new(c: &MatchConfig) -> Result<Self, regex::Error> {
        let t = c.match_type;
        Ok(Matcher {
            namespaces: Patterns::new(t, &c.namespaces)?,
            pod_names: Patterns::new(t, &c.pod_names)?,
            pod_labels: c
                .pod_labels
                .iter()
                .map(|l| {
                    let value = match t {
                        MatchType::Strict => ValueMatch::Strict(l.value.clone()),
                        MatchType::Regexp => ValueMatch::Regexp(Regex::new(&l.value)?),
                    };
                    Ok((l.key.clone(), value))
                })
                .collect::<Result<_, regex::Error>>()?,
            interface_names: Patterns::new(t, &c.interface_names)?,
            interface_kinds: Patterns::new(t, &c.interface_kinds)?,
        })
    }

    pub fn has_interface_properties(&self) -> bool {
        self.interface_names.is_some() || self.interface_kinds.is_some()
    }

    /// Whether the pod has every pod property asked (true when none is asked). A pod with no
    /// known namespace or name matches no list of them.
    pub fn matches_pod(&self, pod: &PodNetwork) -> bool {
        let identity = pod.sandbox.pod.as_ref();
        let namespace = identity.and_then(|p| p.namespace.as_deref());
        let name = identity.and_then(|p| p.name.as_deref());
        let property = |patterns: &Option<Patterns>, value: Option<&str>| match patterns {
            None => true,
            Some(p) => value.is_some_and(|v| p.matches(v)),
        };
        property(&self.namespaces, namespace)
            && property(&self.pod_names, name)
            && self.pod_labels.iter().all(|(key, want)| {
                label(pod, key).is_some_and(|v| match want {
                    ValueMatch::Strict(s) => s == v,
                    ValueMatch::Regexp(re) => re.is_match(v),
                })
            })
    }

    /// Whether the interface has every interface property asked (true when none is asked).
    pub fn matches_interface(&self, iface: &Interface) -> bool {
        self.interface_names
            .as_ref()
            .is_none_or(|p| p.matches(&iface.name))
            && self
                .interface_kinds
                .as_ref()
                .is_none_or(|p| p.matches(&iface.kind))
    }
}

/// A pod's label: the runtime's, else what `k8s_attributes` extracted.
fn label<'a>(pod: &'a PodNetwork, key: &str) -> Option<&'a str> {
    if let Some(v) = pod.sandbox.labels.get(key) {
        return Some(v);
    }
    let identity = pod.sandbox.pod.as_ref()?;
    identity
        .attributes
        .get(&format!("k8s.pod.labels.{key}"))
        .map(String::as_str)
}
