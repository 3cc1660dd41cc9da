//! Configuration errors.
//!
//! Every problem is reported with the path of the setting it concerns (joined with `::`, like
//! the OpenTelemetry Collector does) so that a user can find it without reading our code, and
//! with a file position when one is known. Loading collects all problems instead of stopping
//! at the first one, hence [`ConfigErrors`].

use std::fmt;

/// Separator between the segments of a configuration path, e.g. `exporters::otlp::tls`.
pub const PATH_SEPARATOR: &str = "::";

/// Where in a configuration source a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file name (or the name given to an inline source).
    pub source: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column number, counted in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            escape_controls(&self.source),
            self.line,
            self.column
        )
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path of the offending setting, `::`-separated; empty for whole-file problems.
    pub path: String,
    /// What was found and what was expected.
    pub message: String,
    /// Position in the source, when known.
    pub location: Option<Location>,
}

impl ConfigError {
    /// A problem at `path` (may be empty) without a known position.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            location: None,
        }
    }

    /// The same problem, pointing at `location` (if any).
    #[must_use]
    pub fn at(mut self, location: Option<Location>) -> Self {
        self.location = location;
        self
    }
}

/// Control characters are escaped when displayed: paths and messages can quote user input
/// (keys, values), and a newline in there must not break the one-error-per-line output.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", escape_controls(&self.path))?;
        }
        f.write_str(&escape_controls(&self.message))?;
        if let Some(location) = &self.location {
            write!(f, " (at {location})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// All problems found in a configuration, in the order they were found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// No problems yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more problem.
    pub fn push(&mut self, error: ConfigError) {
        self.0.push(error);
    }

    /// Whether no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of problems recorded.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The recorded problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// `Ok(value)` when nothing was recorded, otherwise `Err(self)`: convenient at the end of
    /// a validation that collected problems.
    pub fn into_result<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// One problem per line.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

impl Extend<ConfigError> for ConfigErrors {
    fn extend<I: IntoIterator<Item = ConfigError>>(&mut self, errors: I) {
        self.0.extend(errors);
    }
}

impl FromIterator<ConfigError> for ConfigErrors {
    fn from_iter<I: IntoIterator<Item = ConfigError>>(errors: I) -> Self {
        Self(errors.into_iter().collect())
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Joins path segments with [`PATH_SEPARATOR`].
pub(crate) fn join_path<S: AsRef<str>>(segments: &[S]) -> String {
    let mut joined = String::new();
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            joined.push_str(PATH_SEPARATOR);
        }
        joined.push_str(segment.as_ref());
    }
    joined
}

/// Replaces control characters (newlines, escapes, NUL, ...) by their Rust escapes.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn located(path: &str, message: &str) -> ConfigError {
        ConfigError::new(path, message).at(Some(Location {
            source: "a.yaml".into(),
            line: 3,
            column: 7,
        }))
    }

    #[test]
    fn display_with_and_without_path_and_location() {
        assert_eq!(ConfigError::new("", "boom").to_string(), "boom");
        assert_eq!(
            ConfigError::new("exporters::otlp", "boom").to_string(),
            "exporters::otlp: boom"
        );
        assert_eq!(
            located("service", "boom").to_string(),
            "service: boom (at a.yaml:3:7)"
        );
    }

    #[test]
    fn errors_display_one_per_line_and_escape_newlines() {
        let mut errors = ConfigErrors::from(ConfigError::new("a", "one"));
        errors.push(ConfigError::new("b\nc", "two\nlines"));
        assert_eq!(errors.to_string(), "a: one\nb\\nc: two\\nlines");
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn into_result_and_extend() {
        let errors = ConfigErrors::new();
        assert!(errors.is_empty());
        assert_eq!(errors.into_result(5), Ok(5));
        let mut errors = ConfigErrors::new();
        errors.extend(vec![ConfigError::new("", "x")]);
        assert!(errors.into_result(5).is_err());
    }

    #[test]
    fn join_path_uses_double_colons() {
        assert_eq!(
            join_path(&["exporters", "otlp", "tls"]),
            "exporters::otlp::tls"
        );
        assert_eq!(join_path::<&str>(&[]), "");
    }
}
