//! Host names to addresses without libc's resolver. netshim ships as one static binary on an
//! empty image: a static glibc cannot load NSS modules, so `getaddrinfo` (std's
//! `ToSocketAddrs`, `tokio::net::lookup_host`) would resolve nothing there. This module reads
//! the files the kubelet mounts into every container itself, as glibc's `hosts: files dns`
//! does: `/etc/hosts` first (the name as given, case-insensitive), then DNS with
//! `/etc/resolv.conf`'s nameservers, `search` list and `options` (`ndots`, `timeout`,
//! `attempts`), through hickory-resolver (pure Rust, on the tokio runtime). IP literals never
//! reach either. One resolver per process ([`system`]), built on first use; the paths can be
//! given instead ([`DnsResolver::from_files`]) for tests.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::OnceLock;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use tokio::net::TcpStream;

/// Where the kubelet (and every Linux system) puts them.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
pub const HOSTS: &str = "/etc/hosts";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("resolving {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("connecting to {host}:{port}: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
}

/// Static names from a hosts file, keyed by lowercased name (no trailing dot).
type HostsTable = HashMap<String, Vec<IpAddr>>;

pub struct DnsResolver {
    hosts: HostsTable,
    /// The DNS part, or why there is none (an unreadable or invalid resolv.conf): names not in
    /// the hosts file then fail with that reason.
    dns: Result<TokioResolver, String>,
    /// Its path, for messages.
    resolv_conf: String,
}

/// The process's resolver, from [`RESOLV_CONF`] and [`HOSTS`], built on first use.
pub fn system() -> &'static DnsResolver {
    static SYSTEM: OnceLock<DnsResolver> = OnceLock::new();
    SYSTEM.get_or_init(|| DnsResolver::from_files(Path::new(RESOLV_CONF), Path::new(HOSTS)))
}

impl DnsResolver {
    /// Reads both files now. A missing hosts file is an empty one; a missing resolv.conf means
    /// a nameserver on 127.0.0.1 with default options (as glibc and musl do). Any other
    /// problem with resolv.conf is kept and reported by each lookup that needs DNS.
    pub fn from_files(resolv_conf: &Path, hosts: &Path) -> DnsResolver {
        let hosts = match std::fs::read_to_string(hosts) {
            Ok(text) => parse_hosts(&text),
            Err(e) => {
                if e.kind() != ErrorKind::NotFound {
                    tracing::warn!(path = %hosts.display(), error = %e, "hosts file not read");
                }
                HostsTable::new()
            }
        };
        DnsResolver {
            hosts,
            dns: build_dns(resolv_conf),
            resolv_conf: resolv_conf.display().to_string(),
        }
    }

    /// The addresses of `host` (a name, or an IP literal returned as it is), in the order to
    /// try them.
    pub async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, Error> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        let fail = |reason: String| Error::Resolve {
            host: host.to_string(),
            reason,
        };
        if host.is_empty() {
            return Err(fail("empty host name".into()));
        }
        let key = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(ips) = self.hosts.get(&key) {
            return Ok(ips.clone());
        }
        let dns = self.dns.as_ref().map_err(|e| fail(e.clone()))?;
        let found = dns.lookup_ip(host).await.map_err(|e| {
            if e.is_nx_domain() || e.is_no_records_found() {
                fail(format!(
                    "no such host (DNS, with {}'s search list)",
                    self.resolv_conf
                ))
            } else {
                fail(format!("DNS lookup failed: {e}"))
            }
        })?;
        let ips: Vec<IpAddr> = found.iter().collect();
        if ips.is_empty() {
            return Err(fail("no addresses".into()));
        }
        Ok(ips)
    }

    /// A TCP connection to `host:port`: each address in turn until one accepts.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, Error> {
        let ips = self.lookup(host).await?;
        let mut last = String::new();
        for ip in ips {
            match TcpStream::connect(SocketAddr::new(ip, port)).await {
                Ok(tcp) => return Ok(tcp),
                Err(e) => last = format!("{ip}: {e}"),
            }
        }
        Err(Error::Connect {
            host: host.to_string(),
            port,
            reason: last,
        })
    }
}

fn build_dns(path: &Path) -> Result<TokioResolver, String> {
    let (config, options) = match std::fs::read(path) {
        Ok(data) => hickory_resolver::system_conf::parse_resolv_conf(data)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "no resolv.conf: asking a nameserver on 127.0.0.1");
            let loopback = NameServerConfig::udp_and_tcp(IpAddr::V4(Ipv4Addr::LOCALHOST));
            (
                ResolverConfig::from_parts(None, vec![], vec![loopback]),
                ResolverOpts::default(),
            )
        }
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options);
    // The hosts file is ours, looked up first and by the name as given (hickory's would read
    // /etc/hosts whatever path we were given).
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder
        .build()
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `ADDRESS NAME [ALIAS…]` lines; `#` starts a comment; lines without a valid address are
/// skipped. The first line naming a host gives its addresses first.
fn parse_hosts(text: &str) -> HostsTable {
    let mut table = HostsTable::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let Some(Ok(ip)) = words.next().map(|a| a.parse::<IpAddr>()) else {
            continue;
        };
        for name in words {
            let ips = table
                .entry(name.trim_end_matches('.').to_ascii_lowercase())
                .or_default();
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    table
}

/// A tower connector (`Service<Uri>`) for tonic's and hyper's clients: plain TCP through
/// [`system`]'s resolution. Used by the agent's own telemetry export.
#[derive(Clone, Default)]
pub struct TcpConnector;

impl tower::Service<http::Uri> for TcpConnector {
    type Response = hyper_util::rt::TokioIo<TcpStream>;
    type Error = Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        Box::pin(async move {
            let host = uri.host().unwrap_or("").to_string();
            if host.is_empty() {
                return Err(Error::Resolve {
                    host: uri.to_string(),
                    reason: "no host in the URI".into(),
                });
            }
            let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                Some("https") => 443,
                _ => 80,
            });
            let tcp = system().connect(&host, port).await?;
            let _ = tcp.set_nodelay(true);
            Ok(hyper_util::rt::TokioIo::new(tcp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lines_comments_aliases_and_case() {
        let t = parse_hosts(
            "# kubelet-managed\n127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n\
             10.0.0.7  Node-A.example node-a # the node\nnot-an-ip name\n\n127.0.0.1 localhost\n",
        );
        assert_eq!(
            t["localhost"],
            vec![
                "127.0.0.1".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            t["node-a.example"],
            vec!["10.0.0.7".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(t["node-a"], t["node-a.example"]);
        assert!(!t.contains_key("name"));
    }

    #[tokio::test]
    async fn ip_literals_bypass_everything() {
        let r = DnsResolver::from_files(
            Path::new("/nonexistent/resolv.conf"),
            Path::new("/nonexistent/hosts"),
        );
        assert_eq!(
            r.lookup("192.0.2.1").await.unwrap(),
            vec!["192.0.2.1".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            r.lookup("[::1]").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn an_unreadable_resolv_conf_is_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("nst-dns-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, "127.0.0.1 sink.test\n").unwrap();
        // A folder where the file should be: read fails with something else than NotFound.
        let r = DnsResolver::from_files(&dir, &hosts);
        assert_eq!(
            r.lookup("SINK.test.").await.unwrap(),
            vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
        );
        let e = r.lookup("otel-collector.monitoring.svc").await.unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "resolving otel-collector.monitoring.svc: reading {}",
                dir.display()
            )),
            "{e}"
        );
        let empty = dir.join("empty.conf");
        std::fs::write(&empty, "# nothing\n").unwrap();
        let e = DnsResolver::from_files(&empty, &hosts)
            .lookup("x.example")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no nameservers"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
