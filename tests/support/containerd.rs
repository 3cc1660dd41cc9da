//! A real containerd for the end-to-end tests, on a private socket and state folder, with the
//! CNI plugins from Debian and an offline sandbox image (see `scripts/cri-test-assets.sh`).
//! Started and stopped by pid; on drop every sandbox it ran is stopped and removed, then
//! containerd stops, its bridge goes and `ip_forward` is restored.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use netshim::receivers::cri::proto::{
    self, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RuntimeServiceClient,
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
    process: Option<Process>,
    bridge: Option<&'static str>,
    ip_forward: String,
}

impl Containerd {
    /// Writes the configuration, starts containerd and imports the sandbox image.
    pub fn start(name: &str, cni: Cni, assets: &Path) -> Self {
        let base = std::env::temp_dir().join(format!("nst-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        for dir in ["root", "state", "net.d", "ipam", "logs"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        let socket = base.join("containerd.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
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
"#,
            root = base.join("root").display(),
            state = base.join("state").display(),
            socket = socket.display(),
            netd = base.join("net.d").display(),
        );
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
            process: None,
            bridge,
            ip_forward: ip_forward.trim().to_string(),
        };
        c.run();
        let out = Command::new("ctr")
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
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.base.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn containerd (installed by scripts/cri-test-assets.sh)");
        self.process = Some(Process { child });
        let socket = self.socket.clone();
        let up = wait_until(Duration::from_secs(20), || {
            Command::new("ctr")
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
            "containerd did not come up; see {}",
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
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = client
            .run_pod_sandbox(proto::RunPodSandboxRequest {
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
            .stop_pod_sandbox(proto::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .expect("StopPodSandbox");
    }

    /// Stops and removes every sandbox this containerd knows.
    async fn remove_all(&self) {
        let mut client = self.client().await;
        let Ok(list) = client
            .list_pod_sandbox(proto::ListPodSandboxRequest::default())
            .await
        else {
            return;
        };
        for sb in list.into_inner().items {
            let _ = client
                .stop_pod_sandbox(proto::StopPodSandboxRequest {
                    pod_sandbox_id: sb.id.clone(),
                })
                .await;
            let _ = client
                .remove_pod_sandbox(proto::RemovePodSandboxRequest {
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
