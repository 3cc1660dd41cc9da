//! Variable expansion in string values, Collector style.
//!
//! Supported forms, in every string scalar (never in keys), after all sources are merged:
//! - `${env:NAME}` and `${NAME}`: the environment variable's value;
//! - `${env:NAME:-default}`: the default when the variable is unset **or empty**;
//! - `$$`: a literal `$` (so `$${env:X}` is the literal text `${env:X}`);
//! - a `$` followed by anything else is kept as is.
//!
//! An unset variable without a default expands to the empty string and produces a warning,
//! as in the Collector. An unclosed `${`, an invalid name or another scheme (`${file:x}`) is an
//! error. Expansion is not recursive: a variable's value (or a default) is never expanded again.
//!
//! When the whole string is one reference, the result is typed like a YAML scalar would be, so
//! `port: ${env:PORT}` yields a number and `enabled: ${env:ON}` a boolean. Only booleans and
//! numbers come out of that: anything else (text, `a: b`, `[1, 2]`, `~`, quoted text) stays the
//! exact string the variable held, so a variable can never inject structure or erase a setting.

use serde_json::{Map, Value};

use super::document::{Document, LocationIndex};
use super::error::{ConfigError, join_path};
use super::yaml::parse_scalar;

/// Looks up an environment variable; injectable for tests.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Warnings (unset variables) and errors (bad references) found while expanding.
#[derive(Debug, Default)]
pub(crate) struct ExpansionReport {
    pub(crate) warnings: Vec<String>,
    pub(crate) errors: Vec<ConfigError>,
}

/// Expands every string value of `document` in place. Strings with a bad reference are
/// reported and replaced by null.
pub(crate) fn expand_document(document: &mut Document, env: Env<'_>) -> ExpansionReport {
    let mut walker = Walker {
        env,
        locations: &document.locations,
        path: Vec::new(),
        report: ExpansionReport::default(),
    };
    walker.map(&mut document.root);
    walker.report
}

struct Walker<'a> {
    env: Env<'a>,
    locations: &'a LocationIndex,
    path: Vec<String>,
    report: ExpansionReport,
}

impl Walker<'_> {
    fn map(&mut self, map: &mut Map<String, Value>) {
        for (key, value) in map.iter_mut() {
            self.path.push(key.clone());
            self.value(value);
            self.path.pop();
        }
    }

    fn value(&mut self, value: &mut Value) {
        match value {
            Value::Object(map) => self.map(map),
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.path.push(index.to_string());
                    self.value(item);
                    self.path.pop();
                }
            }
            Value::String(text) => match expand_string(text, self.env) {
                Ok(None) => {}
                Ok(Some(expanded)) => {
                    for name in &expanded.unset {
                        self.warn_unset(name);
                    }
                    *value = expanded.value;
                }
                Err(message) => {
                    let error = ConfigError::new(join_path(&self.path), message)
                        .at(self.locations.get(&self.path));
                    self.report.errors.push(error);
                    // Loading fails anyway; a null keeps later steps from reporting the same
                    // value again (e.g. as an unknown log level).
                    *value = Value::Null;
                }
            },
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn warn_unset(&mut self, name: &str) {
        let warning = format!(
            "{}: environment variable `{name}` is not set and has no default; \
             it expands to an empty string",
            join_path(&self.path)
        );
        if !self.report.warnings.contains(&warning) {
            self.report.warnings.push(warning);
        }
    }
}

/// The result of expanding one string.
#[derive(Debug, PartialEq)]
struct Expanded {
    value: Value,
    /// Variables that were unset and had no default.
    unset: Vec<String>,
}

/// Expands one string; `Ok(None)` when it contains no `$` at all.
fn expand_string(text: &str, env: Env<'_>) -> Result<Option<Expanded>, String> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut output = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut references = 0usize;
    let mut has_literal_text = false;
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        has_literal_text |= dollar > 0;
        output.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(after_escape) = after.strip_prefix('$') {
            output.push('$');
            has_literal_text = true;
            rest = after_escape;
        } else if let Some(body_and_rest) = after.strip_prefix('{') {
            let Some(end) = body_and_rest.find('}') else {
                return Err(format!(
                    "unclosed variable reference `{}`: missing `}}` (write `$$` for a literal `$`)",
                    shorten(&rest[dollar..])
                ));
            };
            let reference = Reference::parse(&body_and_rest[..end])?;
            output.push_str(&reference.resolve(env, &mut unset));
            references += 1;
            rest = &body_and_rest[end + 1..];
        } else {
            output.push('$');
            has_literal_text = true;
            rest = after;
        }
    }
    has_literal_text |= !rest.is_empty();
    output.push_str(rest);
    let value = if references == 1 && !has_literal_text {
        typed(output)
    } else {
        Value::String(output)
    };
    Ok(Some(Expanded { value, unset }))
}

/// Types the text of a whole-string reference: a boolean or a number when it reads as one.
fn typed(text: String) -> Value {
    let could_be_typed = text.len() <= 64
        && !text.contains('\n')
        && text
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || "+-.tTfF".contains(c));
    if could_be_typed && let Some(value @ (Value::Bool(_) | Value::Number(_))) = parse_scalar(&text)
    {
        return value;
    }
    Value::String(text)
}

/// A parsed `${...}` body.
struct Reference<'a> {
    name: &'a str,
    default: Option<&'a str>,
}

impl<'a> Reference<'a> {
    fn parse(body: &'a str) -> Result<Self, String> {
        let whole = format!("${{{body}}}");
        let (name, default) = match body.split_once(':') {
            None => (body, None),
            Some(("env", rest)) => match rest.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (rest, None),
            },
            Some((scheme, rest)) if is_env_name(scheme) && rest.starts_with('-') => {
                return Err(format!(
                    "`{}`: a default value needs the `env` scheme, write `${{env:{scheme}:{}}}`",
                    shorten(&whole),
                    shorten(rest)
                ));
            }
            Some((scheme, _)) if is_scheme_name(scheme) => {
                return Err(format!(
                    "unsupported variable scheme `{scheme}` in `{}`: only `env` is supported \
                     (write `$$` for a literal `$`)",
                    shorten(&whole)
                ));
            }
            Some(_) => {
                return Err(format!(
                    "invalid variable reference `{}`: expected `${{env:NAME}}`, \
                     `${{env:NAME:-default}}` or `${{NAME}}`",
                    shorten(&whole)
                ));
            }
        };
        if !is_env_name(name) {
            return Err(format!(
                "invalid environment variable name `{}` in `{}`: a name starts with a letter or \
                 `_` and contains only letters, digits and `_`",
                shorten(name),
                shorten(&whole)
            ));
        }
        Ok(Self { name, default })
    }

    fn resolve(&self, env: Env<'_>, unset: &mut Vec<String>) -> String {
        let value = env(self.name);
        match (value, self.default) {
            (Some(value), Some(default)) if value.is_empty() => default.to_owned(),
            (Some(value), _) => value,
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                unset.push(self.name.to_owned());
                String::new()
            }
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A URI-like scheme: `[A-Za-z][A-Za-z0-9+.-]*`.
fn is_scheme_name(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
}

/// Keeps quoted input short in messages.
fn shorten(text: &str) -> String {
    const MAX_CHARS: usize = 60;
    if text.chars().count() <= MAX_CHARS {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(MAX_CHARS).collect();
    short.push_str("...");
    short
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("4317".into()),
            "ON" => Some("true".into()),
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            "PAIR" => Some("a: b".into()),
            "LIST" => Some("[1,2]".into()),
            "REF" => Some("${env:HOST}".into()),
            "TILDE" => Some("~".into()),
            "QUOTED" => Some("'5'".into()),
            "FLOAT" => Some("0.25".into()),
            "YES" => Some("yes".into()),
            "MODE" => Some("0755".into()),
            _ => None,
        }
    }

    fn expand(text: &str) -> Result<Option<Expanded>, String> {
        expand_string(text, &env)
    }

    fn value(text: &str) -> Value {
        expand(text).unwrap().unwrap().value
    }

    #[test]
    fn plain_strings_are_untouched() {
        assert_eq!(expand("no variables here").unwrap(), None);
    }

    #[test]
    fn env_forms() {
        assert_eq!(value("http://${env:HOST}:1"), json!("http://example.com:1"));
        assert_eq!(value("http://${HOST}:1"), json!("http://example.com:1"));
        assert_eq!(value("${env:HOST}"), json!("example.com"));
        assert_eq!(value("${HOST}${HOST}"), json!("example.comexample.com"));
    }

    #[test]
    fn defaults_apply_when_unset_or_empty() {
        assert_eq!(value("${env:NOPE:-fallback}"), json!("fallback"));
        assert_eq!(value("${env:EMPTY:-fallback}"), json!("fallback"));
        assert_eq!(value("${env:HOST:-fallback}"), json!("example.com"));
        assert_eq!(value("x${env:NOPE:-}y"), json!("xy"));
        assert_eq!(value("${env:NOPE:-a:b-c}"), json!("a:b-c"));
    }

    #[test]
    fn dollar_escapes_and_lone_dollars() {
        assert_eq!(value("cost: $$5"), json!("cost: $5"));
        assert_eq!(value("$${env:HOST}"), json!("${env:HOST}"));
        assert_eq!(value("a$b $ c$"), json!("a$b $ c$"));
        assert_eq!(value("$$$${HOST}"), json!("$${HOST}"));
        assert_eq!(value("$$$"), json!("$$"));
    }

    #[test]
    fn unset_without_default_is_empty_with_a_note() {
        let expanded = expand("a${env:NOPE}b").unwrap().unwrap();
        assert_eq!(expanded.value, json!("ab"));
        assert_eq!(expanded.unset, vec!["NOPE".to_string()]);
        let expanded = expand("${NOPE}").unwrap().unwrap();
        assert_eq!(expanded.value, json!(""));
        // Set-but-empty is not "unset".
        assert!(expand("${EMPTY}").unwrap().unwrap().unset.is_empty());
    }

    #[test]
    fn bad_references_are_errors() {
        let error = expand("${env:HOST").unwrap_err();
        assert!(error.contains("unclosed"), "{error}");
        let error = expand("x ${").unwrap_err();
        assert!(error.contains("unclosed"), "{error}");
        let error = expand("${file:/etc/passwd}").unwrap_err();
        assert!(
            error.contains("unsupported variable scheme `file`"),
            "{error}"
        );
        let error = expand("${1ABC}").unwrap_err();
        assert!(
            error.contains("invalid environment variable name `1ABC`"),
            "{error}"
        );
        let error = expand("${env:A-B}").unwrap_err();
        assert!(
            error.contains("invalid environment variable name `A-B`"),
            "{error}"
        );
        let error = expand("${}").unwrap_err();
        assert!(
            error.contains("invalid environment variable name ``"),
            "{error}"
        );
        let error = expand("${HOST:-x}").unwrap_err();
        assert!(error.contains("${env:HOST:-x}"), "{error}");
        let error = expand("${:x}").unwrap_err();
        assert!(error.contains("invalid variable reference"), "{error}");
    }

    #[test]
    fn whole_string_reference_is_typed() {
        assert_eq!(value("${env:PORT}"), json!(4317));
        assert_eq!(value("${PORT}"), json!(4317));
        assert_eq!(value("${env:ON}"), json!(true));
        assert_eq!(value("${env:FLOAT}"), json!(0.25));
        assert_eq!(value("${env:NOPE:-8080}"), json!(8080));
        // Not alone in the string: stays text.
        assert_eq!(value("${env:PORT} "), json!("4317 "));
        assert_eq!(value("${env:PORT}${env:PORT}"), json!("43174317"));
    }

    #[test]
    fn only_scalars_come_out_of_an_expansion() {
        assert_eq!(value("${env:HOST}"), json!("example.com"));
        assert_eq!(value("${env:PAIR}"), json!("a: b"));
        assert_eq!(value("${env:LIST}"), json!("[1,2]"));
        assert_eq!(value("${env:TILDE}"), json!("~"));
        assert_eq!(value("${env:QUOTED}"), json!("'5'"));
        assert_eq!(value("${env:YES}"), json!("yes"));
        assert_eq!(value("${env:MODE}"), json!("0755"));
        assert_eq!(value("${env:EMPTY}"), json!(""));
    }

    #[test]
    fn expansion_is_not_recursive() {
        assert_eq!(value("${env:REF}"), json!("${env:HOST}"));
        assert_eq!(value("${env:NOPE:-${HOST}"), json!("${HOST"));
    }

    #[test]
    fn long_inputs_are_shortened_in_messages() {
        let text = format!("${{{}", "A".repeat(500));
        let error = expand(&text).unwrap_err();
        assert!(error.len() < 200, "{error}");
    }
}
