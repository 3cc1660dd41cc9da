//! A real containerd for the end-to-end tests, on a private socket and state folder, with the
//! CNI plugins from Debian and an offline sandbox image (see `scripts/cri-test-assets.sh`):
//! Debian 12's 1.6 from `/usr/bin`, or any version unpacked by `scripts/containerd-versions.sh`
//! (`versions()`, from `NETSHIM_CONTAINERD_VERSIONS`).
//! Started and stopped by pid; on drop every sandbox it ran is stopped and removed, then
//! containerd stops, its bridge goes and `ip_forward` is restored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::cri_api::{
    self, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, PodSandboxConfig,
    RuntimeServiceClient,
};
use netshim::receivers::cri::proto::{
    ListPodSandboxRequest, NamespaceMode, NamespaceOption, PodSandboxMetadata,
};
use tonic::transport::{Channel, Endpoint};

use super::{Process, ip_quiet, wait_until};

const IMAGE: &str = "localhost/netshim-pause:test";

/// The folder `scripts/cri-test-assets.sh` prepared, or `None` when the tests run without it
/// (plain `cargo test`): then the CRI tests are skipped, loudly, unless
/// `NETSHIM_REQUIRE_CRI=1` (set by `scripts/test.sh`) makes that a failure.
pub fn assets() -> Option<PathBuf> {
    match std::env::var_os("NETSHIM_CRI_ASSETS") {
        Some(dir) => Some(PathBuf::from(dir)),
        None => {
            assert!(
                std::env::var("NETSHIM_REQUIRE_CRI").as_deref() != Ok("1"),
                "NETSHIM_REQUIRE_CRI=1 but NETSHIM_CRI_ASSETS is not set"
            );
            eprintln!(
                "SKIPPED: NETSHIM_CRI_ASSETS not set; run scripts/test.sh for the containerd tests"
            );
            None
        }
    }
}

/// One containerd build: its version (`1.7.24`) and the folder with its `containerd`,
/// `containerd-shim-runc-v2` and `ctr`. `runc` is always the system's (Debian 12's 1.1.5).
#[derive(Debug, Clone, PartialEq)]
pub struct Runtime {
    pub version: String,
    pub bin_dir: PathBuf,
}

impl Runtime {
    /// Debian 12's containerd in `/usr/bin` (1.6), as `scripts/cri-test-assets.sh` installs it.
    pub fn system() -> Runtime {
        let out = Command::new("/usr/bin/containerd")
            .arg("--version")
            .output();
        // "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
        let version = out
            .ok()
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                text.split_whitespace().nth(2).map(upstream)
            })
            .unwrap_or_else(|| "1.6".into());
        Runtime {
            version,
            bin_dir: PathBuf::from("/usr/bin"),
        }
    }

    /// (major, minor): `(1, 7)` for 1.7.24.
    pub fn series(&self) -> (u32, u32) {
        let mut parts = self.version.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    pub fn ctr(&self) -> PathBuf {
        self.bin_dir.join("ctr")
    }

    /// `PATH` for its containerd: its own folder first (containerd looks for
    /// `containerd-shim-runc-v2` on `PATH` before its own folder), then the system's.
    pub fn path_env(&self) -> String {
        let rest = std::env::var("PATH").unwrap_or_else(|_| {
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
        });
        format!("{}:{rest}", self.bin_dir.display())
    }
}

/// "v1.6.20~ds1" -> "1.6.20".
fn upstream(v: &str) -> String {
    let v = v.trim_start_matches('v');
    v.split(['~', '+', '-']).next().unwrap_or(v).to_string()
}

/// The containerd versions to test, from `NETSHIM_CONTAINERD_VERSIONS`: what
/// `scripts/containerd-versions.sh` prints (lines `VERSION BIN_DIR`), the path of a file holding
/// that, or `VERSION=BIN_DIR` words (`1.6.20=/usr/bin 1.7.24=/x/usr/bin`). `None` when it is not
/// set (plain `cargo test`): the tests are skipped, loudly, unless `NETSHIM_REQUIRE_CRI=1`.
pub fn versions() -> Option<Vec<Runtime>> {
    let Some(value) = std::env::var_os("NETSHIM_CONTAINERD_VERSIONS") else {
        assert!(
            std::env::var("NETSHIM_REQUIRE_CRI").as_deref() != Ok("1"),
            "NETSHIM_REQUIRE_CRI=1 but NETSHIM_CONTAINERD_VERSIONS is not set \
             (scripts/containerd-versions.sh prints it)"
        );
        eprintln!(
            "SKIPPED: NETSHIM_CONTAINERD_VERSIONS not set; run scripts/test.sh for the containerd 1.7 and 2.x tests"
        );
        return None;
    };
    let value = value.to_string_lossy().into_owned();
    let path = Path::new(value.trim());
    let text = if !value.contains('=') && path.is_file() {
        std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!(
                "NETSHIM_CONTAINERD_VERSIONS: reading {}: {e}",
                path.display()
            )
        })
    } else {
        value.clone()
    };
    let runtimes = parse_versions(&text)
        .unwrap_or_else(|e| panic!("NETSHIM_CONTAINERD_VERSIONS={value:?}: {e}"));
    for r in &runtimes {
        for bin in ["containerd", "containerd-shim-runc-v2", "ctr"] {
            assert!(
                r.bin_dir.join(bin).is_file(),
                "NETSHIM_CONTAINERD_VERSIONS: no {bin} in {} (for {})",
                r.bin_dir.display(),
                r.version
            );
        }
    }
    Some(runtimes)
}

/// Lines `VERSION BIN_DIR`, or words `VERSION=BIN_DIR`.
pub fn parse_versions(text: &str) -> Result<Vec<Runtime>, String> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let pairs: Vec<(String, String)> = if line.contains('=') {
            line.split_whitespace()
                .map(|w| {
                    w.split_once('=')
                        .map(|(v, d)| (v.to_string(), d.to_string()))
                        .ok_or_else(|| format!("`{w}` is not VERSION=BIN_DIR"))
                })
                .collect::<Result<_, _>>()?
        } else {
            match line.split_whitespace().collect::<Vec<_>>()[..] {
                [v, d] => vec![(v.to_string(), d.to_string())],
                _ => return Err(format!("`{line}` is not `VERSION BIN_DIR`")),
            }
        };
        for (version, dir) in pairs {
            let runtime = Runtime {
                version: upstream(&version),
                bin_dir: PathBuf::from(dir),
            };
            if runtime.series().0 == 0 {
                return Err(format!("`{version}` is not a containerd version"));
            }
            found.push(runtime);
        }
    }
    if found.is_empty() {
        return Err("names no containerd".into());
    }
    Ok(found)
}

/// A configuration each version accepts, private to the test: its own `root`, `state`, gRPC and
/// ttrpc sockets, no debug or metrics listener, NRI off, the offline sandbox image, runc with
/// cgroupfs (no systemd here), the CNI folders of this instance. 1.x reads format 2; 2.x gets
/// format 3, which it reads without migrating (it would take format 2 too, migrating it in
/// memory at every start with a warning), under the plugin ids 2.x documents.
fn config_for(runtime: &Runtime, base: &Path, socket: &Path) -> String {
    let root = base.join("root").display().to_string();
    let state = base.join("state").display().to_string();
    let netd = base.join("net.d").display().to_string();
    let socket = socket.display().to_string();
    let common = format!(
        r#"root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.nri.v1.nri"]
  disable = true
"#
    );
    if runtime.series().0 >= 2 {
        format!(
            r#"version = 3
{common}[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{IMAGE}"
[plugins."io.containerd.cri.v1.runtime"]
  # No CAP_SYS_RESOURCE in this sandbox: runc would fail to write oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "{netd}"
    max_conf_num = 1
"#
        )
    } else {
        format!(
            r#"version = 2
{common}[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  # No CAP_SYS_RESOURCE in this sandbox: runc would fail to write oom_score_adj.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{netd}"
    max_conf_num = 1
"#
        )
    }
}

/// Which CNI plugin gives the pods their network.
pub enum Cni {
    /// Host ends `veth…` enslaved to this bridge (no gateway, no masquerade).
    Bridge {
        bridge: &'static str,
        subnet: &'static str,
    },
    /// Un-bridged host veths, like Cilium's. The plugin turns `ip_forward` on.
    Ptp { subnet: &'static str },
}

pub struct Containerd {
    pub base: PathBuf,
    pub socket: PathBuf,
    pub runtime: Runtime,
    process: Option<Process>,
    bridge: Option<&'static str>,
    ip_forward: String,
}

impl Containerd {
    /// Debian 12's containerd (`/usr/bin`): writes the configuration, starts containerd and
    /// imports the sandbox image.
    pub fn start(name: &str, cni: Cni, assets: &Path) -> Self {
        Self::start_version(name, cni, assets, &Runtime::system())
    }

    /// The containerd of `runtime` (its `bin_dir` first on its `PATH`, so that its own
    /// `containerd-shim-runc-v2` runs; `runc` is the system's), with a configuration that
    /// version reads: format 2 for 1.x, format 3 for 2.x.
    pub fn start_version(name: &str, cni: Cni, assets: &Path, runtime: &Runtime) -> Self {
        let base = std::env::temp_dir().join(format!("nst-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for dir in ["root", "state", "net.d", "ipam", "logs"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        // Absolute: `ctr --address` of 2.x takes nothing else.
        let socket = base.join("containerd.sock");
        let config = config_for(runtime, &base, &socket);
        std::fs::write(base.join("config.toml"), config).unwrap();
        let ipam = base.join("ipam");
        let (plugin, subnet, bridge) = match cni {
            Cni::Bridge { bridge, subnet } => (
                format!(
                    r#""type": "bridge", "bridge": "{bridge}", "isGateway": false, "ipMasq": false"#
                ),
                subnet,
                Some(bridge),
            ),
            Cni::Ptp { subnet } => (
                r#""type": "ptp", "ipMasq": false"#.to_string(),
                subnet,
                None,
            ),
        };
        let conflist = format!(
            r#"{{"cniVersion": "1.0.0", "name": "nst-{name}", "plugins": [{{ {plugin},
              "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]], "dataDir": "{}"}} }}]}}"#,
            ipam.display()
        );
        std::fs::write(base.join("net.d/10-test.conflist"), conflist).unwrap();
        let ip_forward =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_else(|_| "0".into());

        let mut c = Containerd {
            base,
            socket,
            runtime: runtime.clone(),
            process: None,
            bridge,
            ip_forward: ip_forward.trim().to_string(),
        };
        c.run();
        let out = Command::new(c.runtime.ctr())
            .arg("--address")
            .arg(&c.socket)
            .args(["-n", "k8s.io", "images", "import"])
            .arg(assets.join("pause-oci.tar"))
            .output()
            .expect("run ctr");
        assert!(
            out.status.success(),
            "ctr import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    /// Starts the containerd process and waits until its CRI answers.
    fn run(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.base.join("containerd.log"))
            .unwrap();
        let child = Command::new(self.runtime.bin_dir.join("containerd"))
            .arg("--config")
            .arg(self.base.join("config.toml"))
            .env("PATH", self.runtime.path_env())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawn {}/containerd (scripts/cri-test-assets.sh, scripts/containerd-versions.sh): {e}",
                    self.runtime.bin_dir.display()
                )
            });
        self.process = Some(Process { child });
        let socket = self.socket.clone();
        let ctr = self.runtime.ctr();
        let up = wait_until(Duration::from_secs(20), || {
            Command::new(&ctr)
                .arg("--address")
                .arg(&socket)
                .arg("version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        assert!(
            up,
            "containerd {} did not come up; see {}",
            self.runtime.version,
            self.base.join("containerd.log").display()
        );
    }

    /// Stops containerd (SIGTERM by pid) and waits for it to exit; its sandboxes keep running.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &p.pid().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if p.child.try_wait().ok().flatten().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(p); // kills if still running
        }
    }

    /// Starts it again with the same configuration and state.
    pub fn restart(&mut self) {
        self.run();
    }

    /// A CRI client on this containerd's socket.
    pub async fn client(&self) -> RuntimeServiceClient<Channel> {
        let path = self.socket.clone();
        let channel = Endpoint::try_from("http://[::1]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(hyper_util::rt::TokioIo::new)
                }
            }))
            .await
            .expect("connect to containerd");
        RuntimeServiceClient::new(channel)
    }

    /// Runs a pod sandbox and returns its id.
    pub async fn run_pod(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        host_network: bool,
    ) -> String {
        let mut client = self.client().await;
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // The kubelet leaves it empty for host-network pods: they share the node's UTS.
            hostname: if host_network {
                String::new()
            } else {
                name.into()
            },
            log_directory: self.base.join("logs").join(name).display().to_string(),
            labels: [("app".to_string(), name.to_string())].into(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: if host_network {
                            NamespaceMode::Node
                        } else {
                            NamespaceMode::Pod
                        } as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = client
            .run_pod_sandbox(cri_api::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"));
        response.into_inner().pod_sandbox_id
    }

    /// Stops a pod sandbox (it stays listed, not ready).
    pub async fn stop_pod(&self, id: &str) {
        let mut client = self.client().await;
        client
            .stop_pod_sandbox(cri_api::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("StopPodSandbox");
    }

    /// Removes a pod sandbox (stopping it first if it still runs).
    pub async fn remove_pod(&self, id: &str) {
        let mut client = self.client().await;
        client
            .remove_pod_sandbox(cri_api::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("RemovePodSandbox");
    }

    /// Stops and removes every sandbox this containerd knows.
    async fn remove_all(&self) {
        let mut client = self.client().await;
        let Ok(list) = client
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await
        else {
            return;
        };
        for sb in list.into_inner().items {
            let _ = client
                .stop_pod_sandbox(cri_api::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            let _ = client
                .remove_pod_sandbox(cri_api::RemovePodSandboxRequest {
                    pod_sandbox_id: sb.id,
                })
                .await;
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.process.is_some() {
            // Drop may run inside a test's runtime: clean up on a thread with its own.
            let this = &*self;
            std::thread::scope(|s| {
                s.spawn(|| {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        rt.block_on(async {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(30), this.remove_all())
                                    .await;
                        });
                    }
                });
            });
        }
        self.stop();
        if let Some(bridge) = self.bridge {
            ip_quiet(&["link", "del", bridge]);
        }
        let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        let _ = std::fs::remove_dir_all(&self.base);
    }
}
