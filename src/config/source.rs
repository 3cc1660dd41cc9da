//! Where configuration text comes from.

use std::io::Read;
use std::path::PathBuf;

use super::document::Document;
use super::error::ConfigError;
use super::yaml::parse_document;

/// Larger files are refused: a configuration is a few kilobytes, and reading an arbitrary
/// file (`--config /dev/zero`) must not exhaust memory.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One configuration source; several are merged in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A YAML file (`--config path`).
    File(PathBuf),
    /// YAML text given directly; `name` stands for it in error positions.
    Inline { name: String, text: String },
}

impl Source {
    /// The name used in error positions: the file path, or the inline source's name.
    pub fn name(&self) -> String {
        match self {
            Source::File(path) => path.display().to_string(),
            Source::Inline { name, .. } => name.clone(),
        }
    }

    /// Reads and parses this source.
    pub(crate) fn parse(&self) -> Result<Document, ConfigError> {
        let name = self.name();
        match self {
            Source::File(path) => {
                let bytes = read_file(path).map_err(|problem| {
                    ConfigError::new(
                        "",
                        format!("cannot read configuration file `{name}`: {problem}"),
                    )
                })?;
                parse_document(&name, &bytes)
            }
            Source::Inline { text, .. } => parse_document(&name, text.as_bytes()),
        }
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|error| error.to_string())?;
    let metadata = file.metadata().map_err(|error| error.to_string())?;
    if metadata.is_dir() {
        return Err("it is a directory".to_owned());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| error.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("it is larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_named() {
        let source = Source::File(PathBuf::from("/nonexistent/netshim.yaml"));
        let error = source.parse().unwrap_err();
        let text = error.to_string();
        assert!(text.contains("/nonexistent/netshim.yaml"), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[test]
    fn directory_is_refused() {
        let source = Source::File(std::env::temp_dir());
        let error = source.parse().unwrap_err();
        assert!(error.to_string().contains("directory"), "{error}");
    }

    #[test]
    fn file_is_read_and_located_by_its_path() {
        let path = std::env::temp_dir().join(format!("netshim-config-{}.yaml", std::process::id()));
        std::fs::write(&path, "receivers:\n  netns: {\n").unwrap();
        let error = Source::File(path.clone()).parse().unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let location = error.location.unwrap();
        assert_eq!(location.source, path.display().to_string());
        assert_eq!(location.line, 2);
    }

    #[test]
    fn inline_sources_use_their_name() {
        let source = Source::Inline {
            name: "inline".into(),
            text: "a: [".into(),
        };
        assert_eq!(
            source.parse().unwrap_err().location.unwrap().source,
            "inline"
        );
    }
}
