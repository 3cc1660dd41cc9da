//! Where the runtime's CRI socket is: given, or found the way crictl finds it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default sockets, in the order they are tried: containerd, CRI-O, cri-dockerd.
pub const DEFAULT_SOCKETS: &[&str] = &[
    "/run/containerd/containerd.sock",
    "/var/run/crio/crio.sock",
    "/var/run/cri-dockerd.sock",
];

/// How the endpoint setting was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `auto`: `runtime-endpoint` of `/etc/crictl.yaml`, else the first default socket that exists.
    Auto,
    /// A socket path (from `unix:///path` or a plain path), before `host_root` is applied.
    Socket(PathBuf),
}

impl Endpoint {
    /// Parses the `endpoint` setting.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "auto" {
            return Ok(Endpoint::Auto);
        }
        let path = match text.strip_prefix("unix://") {
            Some(rest) => rest,
            None if text.contains("://") => {
                return Err(format!(
                    "endpoint `{text}`: only unix sockets are supported (unix:///path, a path, or auto)"
                ));
            }
            None => text,
        };
        if !path.starts_with('/') {
            return Err(format!(
                "endpoint `{text}`: the socket path must be absolute"
            ));
        }
        Ok(Endpoint::Socket(PathBuf::from(path)))
    }

    /// The socket to connect to now, with `host_root` applied. `Auto` looks again each time, so
    /// a runtime that starts after the agent is found.
    pub fn resolve(&self, host_root: &Path) -> Result<PathBuf, String> {
        match self {
            Endpoint::Socket(path) => Ok(under_root(host_root, path)),
            Endpoint::Auto => {
                if let Some(path) = crictl_endpoint(host_root) {
                    return Ok(under_root(host_root, &path));
                }
                DEFAULT_SOCKETS
                    .iter()
                    .map(|s| under_root(host_root, Path::new(s)))
                    .find(|p| p.exists())
                    .ok_or_else(|| {
                        format!(
                            "no CRI socket found: /etc/crictl.yaml names none and none of {} exists under {}",
                            DEFAULT_SOCKETS.join(", "),
                            host_root.display()
                        )
                    })
            }
        }
    }
}

/// `path` as seen from inside a container that has the host's `/` mounted at `root`.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(relative) => root.join(relative),
        Err(_) => root.join(path),
    }
}

/// `runtime-endpoint` from the host's `/etc/crictl.yaml`, when it names a unix socket.
fn crictl_endpoint(host_root: &Path) -> Option<PathBuf> {
    #[derive(Deserialize)]
    struct CrictlConfig {
        #[serde(rename = "runtime-endpoint")]
        runtime_endpoint: Option<String>,
    }
    let text =
        std::fs::read_to_string(under_root(host_root, Path::new("/etc/crictl.yaml"))).ok()?;
    let config: CrictlConfig = serde_saphyr::from_str(&text).ok()?;
    match Endpoint::parse(&config.runtime_endpoint?) {
        Ok(Endpoint::Socket(path)) => Some(path),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(Endpoint::parse("auto"), Ok(Endpoint::Auto));
        assert_eq!(
            Endpoint::parse("unix:///run/containerd/containerd.sock"),
            Ok(Endpoint::Socket("/run/containerd/containerd.sock".into()))
        );
        assert_eq!(
            Endpoint::parse("/var/run/crio/crio.sock"),
            Ok(Endpoint::Socket("/var/run/crio/crio.sock".into()))
        );
        assert!(Endpoint::parse("tcp://10.0.0.1:1234").is_err());
        assert!(Endpoint::parse("relative.sock").is_err());
        assert!(Endpoint::parse("unix://relative").is_err());
    }

    #[test]
    fn host_root_prefixes_paths() {
        assert_eq!(
            under_root(Path::new("/host"), Path::new("/run/netns/x")),
            PathBuf::from("/host/run/netns/x")
        );
        assert_eq!(
            under_root(Path::new("/"), Path::new("/run/x")),
            PathBuf::from("/run/x")
        );
    }

    #[test]
    fn auto_prefers_crictl_yaml_then_default_sockets() {
        let root = std::env::temp_dir().join(format!("netshim-endpoint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("var/run/crio")).unwrap();
        // Nothing there yet.
        assert!(Endpoint::Auto.resolve(&root).is_err());
        // A default socket (a plain file stands in: only existence is checked here).
        std::fs::write(root.join("var/run/crio/crio.sock"), b"").unwrap();
        assert_eq!(
            Endpoint::Auto.resolve(&root).unwrap(),
            root.join("var/run/crio/crio.sock")
        );
        // crictl.yaml wins.
        std::fs::write(
            root.join("etc/crictl.yaml"),
            "runtime-endpoint: unix:///custom/cri.sock\nimage-endpoint: unix:///x\ntimeout: 2\n",
        )
        .unwrap();
        assert_eq!(
            Endpoint::Auto.resolve(&root).unwrap(),
            root.join("custom/cri.sock")
        );
        // A crictl.yaml that does not parse is ignored.
        std::fs::write(root.join("etc/crictl.yaml"), "runtime-endpoint: [").unwrap();
        assert_eq!(
            Endpoint::Auto.resolve(&root).unwrap(),
            root.join("var/run/crio/crio.sock")
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
