#!/usr/bin/env python3
"""Plays the kubelet for one node against a real containerd, and checks netshim as deployed.

Run by scripts/e2e-node.sh once per containerd version, inside a mount namespace of its own (so
the runtime's mounts and the tmpfs on /run/containerd never reach the machine's). It:

1. starts the cluster's peers on loopback: a DNS server (dnsmasq, as the cluster DNS), the fake
   API server (the one fake: no kube-apiserver can run here), an OTLP sink (the "collector");
2. starts containerd from the given folder on /run/containerd/containerd.sock (the path the
   shipped `endpoint: auto` finds), with CNI `bridge` (eth0) and `ptp` (eth1) networks, and
   imports the netshim image archive and the sandbox image;
3. turns the rendered DaemonSet's pod template into RunPodSandbox + CreateContainer
   (tests/e2e/podspec.py; an untranslated field fails the run) and probes it as the kubelet does;
4. runs application pods, makes traffic inside them, and checks what netshim reports against the
   kernel, on /metrics and over OTLP; then checks the agent's container from the outside
   (capabilities, read-only root, limits);
5. stops everything it started, by pid or through the runtime, even on failure.

The last stdout line is a JSON summary; progress goes to stderr.
"""
from __future__ import annotations

import argparse
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

import trustme
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import podspec  # noqa: E402
from cri import Cri, netns_path  # noqa: E402
from fake_apiserver import FakeApiServer  # noqa: E402

NODE = "e2e-node"
DNS_IP = "127.0.53.53"          # the "cluster DNS" Service IP, on loopback
OTLP_PORT = 14317               # the port tests/e2e/overlay/otlp.yaml names
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "nse2e0"
METRICS = "https://127.0.0.1:9091/metrics"
# The install serves /metrics over TLS with a certificate it made at start, to callers the API
# server authorizes: the harness scrapes as Prometheus' ServiceMonitor does (no verification of
# the self-signed certificate, a service account's bearer token).
SCRAPER_TOKEN = secrets.token_urlsafe(24)
UNTRUSTED = ssl._create_unverified_context()  # noqa: S323 (the ServiceMonitor's insecureSkipVerify)
CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5,
        "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10,
        "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
        "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "SYS_PACCT": 20,
        "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24, "SYS_TIME": 25,
        "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
        "SETFCAP": 31}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def check(cond, msg: str) -> None:
    if not cond:
        raise Failed(msg)


def wait_for(what: str, fn, timeout: float, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# /metrics


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def fetch_metrics(token: str | None) -> tuple[int, str]:
    """(HTTP status, body) of /metrics, with `token` as bearer token if given; 0 if unreachable."""
    request = urllib.request.Request(METRICS)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=UNTRUSTED) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")
    except OSError:
        return 0, ""


def scrape() -> list[tuple[str, dict, float]] | None:
    code, text = fetch_metrics(SCRAPER_TOKEN)
    if code != 200:
        return None
    out = []
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if m:
            out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def series(samples, name: str, **labels) -> list[tuple[dict, float]]:
    return [(l, v) for n, l, v in samples
            if n == name and all(l.get(k) == v2 for k, v2 in labels.items())]


def pod_interfaces(samples, pod: str) -> set[str]:
    return {l["interface"] for l, _ in series(samples, "netshim_pod_interface_info", pod=pod)}


# ---------------------------------------------------------------------------------------------
# The node


class Node:
    def __init__(self, args) -> None:
        self.args = args
        self.work = os.path.realpath(args.work)
        self.procs: list[subprocess.Popen] = []
        self.sandboxes: list[str] = []
        self.cri: Cri | None = None
        self.api: FakeApiServer | None = None
        self.ip_forward = open("/proc/sys/net/ipv4/ip_forward").read().strip()
        self.summary: dict = {"runtime": args.label, "passed": []}
        self.dummies: list[str] = []

    def passed(self, what: str) -> None:
        log(f"passed: {what}")
        self.summary["passed"].append(what)

    def spawn(self, name: str, argv: list[str], env=None) -> subprocess.Popen:
        out = open(os.path.join(self.work, f"{name}.log"), "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                             start_new_session=True)
        self.procs.append(p)
        return p

    # -- peers ------------------------------------------------------------------------------

    def start_peers(self) -> None:
        host = f"otel-collector.monitoring.svc.{CLUSTER_DOMAIN}"
        dns = self.spawn("dnsmasq", ["dnsmasq", "--keep-in-foreground", "--no-daemon", "--log-queries",
                                     f"--listen-address={DNS_IP}", "--bind-interfaces", "--port=53",
                                     "--no-resolv", "--no-hosts", "--pid-file=", "--user=root",
                                     # Authoritative for the cluster's zone, as CoreDNS is: a
                                     # name there that does not exist is NXDOMAIN.
                                     f"--local=/{CLUSTER_DOMAIN}/",
                                     f"--host-record={host},127.0.0.1"])
        wait_for("dnsmasq", lambda: dns.poll() is None and self.dns_answers(host), 10, 0.05)
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "kubernetes.default.svc")
        cert.private_key_and_cert_chain_pem.write_to_path(os.path.join(self.work, "api.pem"))
        self.ca_pem = ca.cert_pem.bytes()
        self.token = secrets.token_urlsafe(32)
        pem = os.path.join(self.work, "api.pem")
        self.api = FakeApiServer("127.0.0.1", pem, pem, self.token).start()
        self.api.add_scraper(SCRAPER_TOKEN, "system:serviceaccount:monitoring:prometheus", True)
        self.nosy_token = secrets.token_urlsafe(24)
        self.api.add_scraper(self.nosy_token, "system:serviceaccount:apps:nosy", False)
        self.sink_out = os.path.join(self.work, "otlp.jsonl")
        self.spawn("otlp-sink", [sys.executable, self.args.otlp_sink, "--grpc", f"127.0.0.1:{OTLP_PORT}",
                                 "--out", self.sink_out])
        wait_for("the OTLP sink", lambda: self.port_open(OTLP_PORT), 20, 0.05)
        log(f"peers: dnsmasq on {DNS_IP}:53, fake API on 127.0.0.1:{self.api.port}, OTLP sink on :{OTLP_PORT}")

    @staticmethod
    def port_open(port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    @staticmethod
    def dns_answers(name: str) -> bool:
        """One A query to the cluster DNS (so the agent is not the first thing to ask it)."""
        q = secrets.token_bytes(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            try:
                s.sendto(q, (DNS_IP, 53))
                answer = s.recv(512)
            except OSError:
                return False
        return answer[:2] == q[:2] and int.from_bytes(answer[6:8], "big") > 0

    # -- the runtime --------------------------------------------------------------------------

    def start_containerd(self) -> None:
        bin_dir = os.path.realpath(self.args.containerd_bin)
        root = os.path.join(self.work, "containerd-root")
        netd = os.path.join(self.work, "net.d")
        os.makedirs(netd, exist_ok=True)
        ipam = os.path.join(self.work, "ipam")
        bridge = {"cniVersion": "1.0.0", "name": "e2e-bridge", "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.10.0/24"}]], "dataDir": ipam}}]}
        ptp = {"cniVersion": "1.0.0", "name": "e2e-ptp", "plugins": [{
            "type": "ptp", "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.20.0/24"}]], "dataDir": ipam}}]}
        for name, conf in (("10-bridge.conflist", bridge), ("20-ptp.conflist", ptp)):
            with open(os.path.join(netd, name), "w") as f:
                json.dump(conf, f)
        major = int(self.args.label.split(".")[0])
        config = os.path.join(self.work, "containerd.toml")
        with open(config, "w") as f:
            f.write(containerd_config(major, root, netd, self.args.pause_image))
        env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
        self.containerd = self.spawn("containerd", [os.path.join(bin_dir, "containerd"), "--config", config],
                                     env=env)
        self.cri = Cri(self.args.cri_stubs, "/run/containerd/containerd.sock")
        version = self.cri.wait_ready()
        self.summary["version"] = version
        check(self.args.label in version, f"asked for containerd {self.args.label}, got {version}")
        ctr = os.path.join(bin_dir, "ctr")
        for archive in (self.args.pause_archive, self.args.image_archive):
            subprocess.run([ctr, "--address", "/run/containerd/containerd.sock", "-n", "k8s.io",
                            "images", "import", archive], check=True, env=env,
                           stdout=subprocess.DEVNULL)
        log(f"containerd up: {version}")

    # -- pods ---------------------------------------------------------------------------------

    def node_model(self) -> podspec.Node:
        mem = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal"))
        return podspec.Node(name=NODE, labels={"kubernetes.io/os": "linux",
                                               "kubernetes.io/hostname": NODE},
                            ip="127.0.0.1", dns_server=DNS_IP, cluster_domain=CLUSTER_DOMAIN,
                            memory_capacity=mem, api_host="127.0.0.1", api_port=self.api.port)

    def run_plan(self, plan: podspec.PodPlan) -> tuple[str, list[str]]:
        podspec.write_files(plan.files)
        pod_id = self.cri.run_pod(plan.sandbox)
        self.sandboxes.append(pod_id)
        ids = []
        for c in plan.containers:
            cid = self.cri.create_container(pod_id, c, plan.sandbox)
            self.cri.start_container(cid)
            ids.append(cid)
        return pod_id, ids

    def api_pod(self, name: str, namespace: str, uid: str, labels: dict, pod_id: str,
                host_network: bool, owner: dict | None = None) -> dict:
        status, _ = self.cri.pod_status(pod_id)
        ip = status.network.ip if not host_network else "127.0.0.1"
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace, "uid": uid, "labels": labels},
               "spec": {"nodeName": NODE, "hostNetwork": host_network, "containers": [{"name": "app"}]},
               "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1"}}
        if owner:
            pod["metadata"]["ownerReferences"] = [owner]
        self.api.store.put(pod)
        return pod

    def app_pod(self, name: str, host_network: bool = False) -> dict:
        uid = str(uuid.uuid4())
        labels = {"app": "e2e", "io.kubernetes.pod.name": name,
                  "io.kubernetes.pod.namespace": "apps", "io.kubernetes.pod.uid": uid}
        sandbox = {
            "metadata": {"name": name, "uid": uid, "namespace": "apps", "attempt": 0},
            "hostname": "" if host_network else name,
            "log_directory": os.path.join(self.work, "pods", uid),
            "labels": labels,
            "linux": {"security_context": {"namespace_options": {
                "network": "NODE" if host_network else "POD", "pid": "CONTAINER", "ipc": "POD"}},
                # The pod asks for IPv6 off (spec.securityContext.sysctls) so router and neighbour
                # solicitations do not move its counters between two reads.
                "sysctls": {} if host_network else {"net.ipv6.conf.all.disable_ipv6": "1",
                                                      "net.ipv6.conf.default.disable_ipv6": "1"}},
        }
        os.makedirs(sandbox["log_directory"], exist_ok=True)
        pod_id = self.cri.run_pod(sandbox)
        sandbox_started = time.monotonic()
        self.sandboxes.append(pod_id)
        container = {"metadata": {"name": "app", "attempt": 0},
                     "image": {"image": self.pause_id}, "log_path": "app/0.log",
                     "labels": {"io.kubernetes.container.name": "app"},
                     "linux": {"security_context": {"namespace_options":
                                                    sandbox["linux"]["security_context"]["namespace_options"]}}}
        cid = self.cri.create_container(pod_id, container, sandbox)
        self.cri.start_container(cid)
        self.api_pod(name, "apps", uid, {"app": "e2e"}, pod_id, host_network)
        _, info = self.cri.pod_status(pod_id)
        return {"name": name, "uid": uid, "id": pod_id, "container": cid,
                "netns": netns_path(info), "host_network": host_network, "started": sandbox_started}

    def remove(self, pod: dict) -> None:
        self.cri.stop_pod(pod["id"])
        self.cri.remove_pod(pod["id"])
        self.sandboxes.remove(pod["id"])
        self.api.store.delete("apps", pod["name"])

    # -- the agent ----------------------------------------------------------------------------

    def deploy_agent(self) -> None:
        docs = [d for d in yaml.safe_load_all(open(self.args.manifests)) if d]
        ds = [d for d in docs if d["kind"] == "DaemonSet"]
        check(len(ds) == 1, f"the rendered install has {len(ds)} DaemonSets")
        ds = ds[0]
        self.namespace = ds["metadata"]["namespace"]
        config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        template = ds["spec"]["template"]
        check(all(template["metadata"]["labels"].get(k) == v
                  for k, v in ds["spec"]["selector"]["matchLabels"].items()),
              "the DaemonSet's selector does not match its template")
        images = {c["image"] for c in template["spec"]["containers"]}
        image_ids = {i: self.cri.image_id(i) for i in images}
        check(all(image_ids.values()), f"images not in the runtime: {image_ids}")
        self.pause_id = self.cri.image_id(self.args.pause_image)
        self.agent_uid = str(uuid.uuid4())
        name = f"{ds['metadata']['name']}-{secrets.token_hex(3)}"
        pod_dir = os.path.join(self.work, "pods", self.agent_uid)
        plan = podspec.plan_pod(template, config_maps, name=name, namespace=self.namespace,
                                uid=self.agent_uid, node=self.node_model(), pod_dir=pod_dir,
                                log_dir=pod_dir, token=self.token, ca_pem=self.ca_pem,
                                image_ids=image_ids)
        self.summary["translated_fields"] = plan.translated
        self.plan = plan
        owner = {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": ds["metadata"]["name"],
                 "uid": str(uuid.uuid4()), "controller": True}
        started = time.monotonic()
        self.agent_pod, (self.agent,) = self.run_plan(plan)
        self.api_pod(name, self.namespace, self.agent_uid, template["metadata"]["labels"],
                     self.agent_pod, True, owner)
        self.agent_started = started
        status, info = self.cri.container_status(self.agent)
        self.agent_pid = int(info["pid"])
        log(f"agent container {self.agent[:12]} pid {self.agent_pid}: "
            f"{len(plan.translated)} pod-template fields translated")
        self.prober = Prober(plan.probes[template["spec"]["containers"][0]["name"]], started)
        self.prober.start()

    # -- checks -------------------------------------------------------------------------------

    def kernel_counters(self, pod: dict) -> dict[str, dict]:
        out = subprocess.run(["nsenter", f"--net={pod['netns']}", "ip", "-s", "-j", "link", "show"],
                             check=True, capture_output=True, text=True).stdout
        return {l["ifname"]: l["stats64"] for l in json.loads(out) if l["ifname"] != "lo"}

    def traffic(self, pods: list[dict]) -> None:
        """UDP from each pod to the next one over the bridge (eth0) and to its ptp gateway
        (eth1): addresses the CNI put on interfaces this run made."""
        addrs = {}
        for p in pods:
            out = subprocess.run(["nsenter", f"--net={p['netns']}", "ip", "-j", "-4", "addr", "show"],
                                 check=True, capture_output=True, text=True).stdout
            addrs[p["name"]] = {a["ifname"]: a["addr_info"][0]["local"] for a in json.loads(out)
                                if a["ifname"] != "lo" and a.get("addr_info")}
        for i, p in enumerate(pods):
            peer = pods[(i + 1) % len(pods)]
            eth1 = ipaddress.ip_interface(addrs[p["name"]]["eth1"] + "/24")
            gateway = str(next(eth1.network.hosts()))
            code = ("import socket,sys\n"
                    "for dst, n in ((sys.argv[1], 5 + int(sys.argv[3])), (sys.argv[2], 3)):\n"
                    "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                    "    for _ in range(n): s.sendto(b'x' * 100, (dst, 9))\n")
            subprocess.run(["nsenter", f"--net={p['netns']}", sys.executable, "-c", code,
                            addrs[peer["name"]]["eth0"], gateway, str(i)], check=True)

    def agent_cpu_ticks(self) -> int:
        fields = open(f"/proc/{self.agent_pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])

    def agent_status(self) -> dict:
        return dict(l.split(":", 1) for l in open(f"/proc/{self.agent_pid}/status").read().splitlines()
                    if ":" in l)

    def check_container(self) -> None:
        expected = next(iter(self.plan.expected.values()))
        st = {k: v.strip() for k, v in self.agent_status().items()}
        want = 0
        for cap in expected["add"]:
            want |= 1 << CAPS[cap]
        for key in ("CapEff", "CapPrm", "CapBnd"):
            check(int(st[key], 16) == want, f"{key} {st[key]}, want {want:016x} ({expected['add']})")
        check(int(st["CapInh"], 16) == 0 and int(st.get("CapAmb", "0"), 16) == 0,
              f"inheritable/ambient capabilities: {st['CapInh']}/{st.get('CapAmb')}")
        self.passed(f"CapEff {st['CapEff']} = exactly {'+'.join(expected['add'])} (bounding set too)")
        check(st["NoNewPrivs"] == ("1" if expected["no_new_privs"] else "0"), f"NoNewPrivs {st['NoNewPrivs']}")
        check(st["Seccomp"] == "2", f"Seccomp {st['Seccomp']} (want 2: filtered by RuntimeDefault)")
        check(st["Uid"].split()[0] == str(expected["uid"]), f"Uid {st['Uid']}")
        self.passed("NoNewPrivs 1, seccomp filter on (RuntimeDefault), uid 0")
        mounts = {}
        for line in open(f"/proc/{self.agent_pid}/mountinfo"):
            f = line.split()
            sep = f.index("-")
            mounts[f[4]] = {"options": f[5].split(","), "optional": f[6:sep]}
        check("ro" in mounts["/"]["options"], f"root filesystem mounted {mounts['/']['options']}")
        try:
            with open(f"/proc/{self.agent_pid}/root/netshim-e2e-write", "w"):
                pass
            raise Failed("the agent's root filesystem is writable")
        except OSError as e:
            check(e.errno == 30, f"writing to the agent's root: {e} (want EROFS)")
        for path in ("/host/run", "/host/var/run", "/host/proc", "/etc/netshim",
                     "/var/run/secrets/kubernetes.io/serviceaccount"):
            check(path in mounts and "ro" in mounts[path]["options"], f"{path} not mounted read-only")
        for path in ("/host/run", "/host/var/run"):
            check(any(o.startswith("master:") for o in mounts[path]["optional"]),
                  f"{path} is not a slave mount (HostToContainer): {mounts[path]['optional']}")
        self.passed("root filesystem read-only (EROFS), host mounts read-only, /run HostToContainer")
        env = open(f"/proc/{self.agent_pid}/environ", "rb").read().split(b"\0")
        check(f"K8S_NODE_NAME={NODE}".encode() in env, "K8S_NODE_NAME not from the downward API")
        res = expected["resources"]
        for controller, fname, value in (("memory", "memory.limit_in_bytes", res.get("memory_limit_in_bytes")),
                                         ("cpu", "cpu.cfs_quota_us", res.get("cpu_quota")),
                                         ("cpu", "cpu.shares", res.get("cpu_shares"))):
            if value is None:
                continue
            got = read_cgroup(self.agent_pid, controller, fname)
            check(got == value, f"{controller} {fname} = {got}, want {value}")
        self.passed(f"cgroup limits: memory {res.get('memory_limit_in_bytes')}, "
                    f"cpu quota {res.get('cpu_quota')}/100000, shares {res.get('cpu_shares')}")

    def run(self) -> None:
        self.start_peers()
        self.start_containerd()
        self.passed("images imported (netshim image archive, sandbox image)")
        self.deploy_agent()
        self.passed(f"DaemonSet pod created from {len(self.plan.translated)} translated fields")
        pods = [self.app_pod(f"app-{i}") for i in range(self.args.pods)]
        host_pod = self.app_pod("host-app", host_network=True)
        self.prober.wait_ready(60)
        self.passed(f"readiness probe passed {self.prober.ready_after:.1f} s after start")

        def all_seen():
            s = scrape()
            return s if s and all(pod_interfaces(s, p["name"]) == {"eth0", "eth1"} for p in pods) \
                and series(s, "pod_interface_shim", pod="host-app") == [] else None
        samples = wait_for("every app pod on /metrics", all_seen, 60)
        # Nobody reads the pod inventory without leave: no token 401, a token RBAC does not
        # allow 403, a forged one 401, plain HTTP refused; none of them gets the data.
        for token, want in ((None, 401), (self.nosy_token, 403), ("forged", 401)):
            code, body = fetch_metrics(token)
            check(code == want and "pod_interface_shim" not in body,
                  f"/metrics with token {token!r}: {code}, want {want}")
        try:
            with urllib.request.urlopen(METRICS.replace("https:", "http:"), timeout=2) as r:
                check(False, f"plain HTTP answered {r.status}")
        except (urllib.error.HTTPError, OSError, http.client.HTTPException):
            pass  # a TLS alert, not an HTTP answer
        check(self.api.reviews >= 2, f"no token or access review reached the API ({self.api.reviews})")
        self.passed(f"/metrics over HTTPS to the authorized scraper only: 401 without a token, "
                    f"403 for a user RBAC does not allow; {self.api.reviews} reviews")
        # Runtime identity: the sandbox id and container on the older shim's series.
        for p in pods:
            shim = series(samples, "pod_interface_shim", pod=p["name"], namespace="apps", node=NODE)
            check(shim and all(l["id"] == p["container"] or l["id"] == p["id"] for l, _ in shim),
                  f"{p['name']}: pod_interface_shim {shim}")
            info = series(samples, "netshim_pod_interface_info", pod=p["name"])
            check(all(l["pod_uid"] == p["uid"] for l, _ in info), f"{p['name']}: uid {info}")
            hosts = {l["interface"]: l["host_interface"] for l, _ in info}
            check(hosts["eth0"].startswith("veth") and hosts["eth1"].startswith("veth"),
                  f"{p['name']}: host peers {hosts}")
        check(not series(samples, "netshim_pod_interface_info", pod="host-app"),
              "the hostNetwork pod was given interfaces")
        # Host-network pods (the agent's own and host-app) have no series of their own; they are
        # still reported: netshim_pods counts every sandbox the runtime lists (and any namespace
        # no runtime knows, so at least).
        listed = len(self.cri.list_pods())
        reported = sum(v for _, v in series(samples, "netshim_pods"))
        check(reported >= listed, f"netshim_pods {reported}, but the runtime lists {listed} sandboxes")
        self.passed(f"{len(pods)} pods mapped (eth0 bridge, eth1 ptp, uid and runtime ids); hostNetwork pod has no interfaces")

        # Counters: traffic inside each pod, then a cycle (the next pod's arrival starts one),
        # then the agent's numbers must be the kernel's, read before and after the scrape.
        self.traffic(pods)
        time.sleep(0.3)
        before = {p["name"]: self.kernel_counters(p) for p in pods}
        fresh = self.app_pod("app-fresh")
        samples = wait_for("the new pod on /metrics",
                           lambda: (s := scrape()) and pod_interfaces(s, "app-fresh") == {"eth0", "eth1"} and s,
                           40, 0.01)
        fresh_ms = (time.monotonic() - fresh["started"]) * 1000
        after = {p["name"]: self.kernel_counters(p) for p in pods}
        compared = 0
        for p in pods:
            for ifname in ("eth0", "eth1"):
                k0, k1 = before[p["name"]][ifname], after[p["name"]][ifname]
                for direction, key in (("receive", "rx"), ("transmit", "tx")):
                    for what, field in (("bytes", "bytes"), ("packets", "packets")):
                        got = series(samples, f"netshim_pod_network_{direction}_{what}_total",
                                     pod=p["name"], interface=ifname)
                        check(len(got) == 1, f"{p['name']} {ifname} {direction} {what}: {got}")
                        value = got[0][1]
                        check(k0[key][field] <= value <= k1[key][field],
                              f"{p['name']} {ifname} {direction}_{what}: agent {value}, kernel "
                              f"{k0[key][field]} before and {k1[key][field]} after")
                        compared += 1
                check(k0["tx"]["packets"] >= 3, f"{p['name']} {ifname}: no traffic made")
        self.passed(f"{compared} pod-side counters equal the kernel's after traffic")
        self.summary["fresh_pod_ms"] = round(fresh_ms)
        self.passed(f"new pod on /metrics {fresh_ms:.0f} ms after RunPodSandbox returned "
                    f"(collection_interval 30s)")

        t0 = time.monotonic()
        gone = pods.pop()
        self.remove(gone)
        removed = time.monotonic() - t0
        wait_for("the removed pod gone", lambda: (s := scrape()) and not pod_interfaces(s, gone["name"]), 35, 0.01)
        gone_ms = (time.monotonic() - t0 - removed) * 1000
        self.summary["removed_pod_ms"] = round(gone_ms)
        self.passed(f"removed pod gone {gone_ms:.0f} ms after StopPodSandbox+RemovePodSandbox returned")

        def otlp_has_pods():
            if not os.path.exists(self.sink_out):
                return False
            names = set()
            for line in open(self.sink_out):
                if not line.endswith("\n"):
                    break  # the sink is still writing it
                r = json.loads(line)["resource"]
                if r.get("k8s.node.name") == NODE and r.get("k8s.namespace.name") == "apps":
                    names.add(r.get("k8s.pod.name"))
            return {p["name"] for p in pods} | {"app-fresh"} <= names
        wait_for("OTLP points for every pod at otel-collector.monitoring.svc", otlp_has_pods, 40, 0.2)
        # The name went through the cluster DNS by the search path of the resolv.conf the
        # runtime wrote from the kubelet's DNSConfig, and the container has exactly that file.
        resolv = open(f"/proc/{self.agent_pid}/root/etc/resolv.conf").read().split("\n")
        dns = self.plan.sandbox["dns_config"]
        check(f"nameserver {dns['servers'][0]}" in resolv and f"search {' '.join(dns['searches'])}" in resolv
              and "options ndots:5" in resolv, f"the agent's /etc/resolv.conf: {resolv}")
        queries = open(os.path.join(self.work, "dnsmasq.log")).read()
        check(f"query[A] otel-collector.monitoring.svc.{CLUSTER_DOMAIN} from 127.0.0.1" in queries
              and f"otel-collector.monitoring.svc.{self.namespace}.svc.{CLUSTER_DOMAIN}" in queries,
              "the agent's lookups did not walk the search path through the cluster DNS")
        self.passed("OTLP pushed to otel-collector.monitoring.svc, resolved by the agent through the "
                    "cluster DNS and the search path of the resolv.conf the runtime wrote")

        self.check_container()
        check(self.prober.liveness_runs > 0 or time.monotonic() - self.agent_started < 10,
              "no liveness probe ran")
        self.measure(pods + [fresh])
        self.prober.stop()
        check(not self.prober.failures, f"probe failures: {self.prober.failures}")
        self.passed(f"liveness probe passed {self.prober.liveness_runs} times, readiness "
                    f"{self.prober.readiness_runs} times, no failure")
        # SIGTERM as the kubelet stops a pod: the agent must exit 0 within the grace period.
        t0 = time.monotonic()
        self.cri.stop_container(self.agent, self.plan.grace_seconds)
        status, _ = self.cri.container_status(self.agent)
        check(status.exit_code == 0, f"agent exit code {status.exit_code} after SIGTERM")
        self.passed(f"SIGTERM: agent exited 0 in {(time.monotonic() - t0) * 1000:.0f} ms")

    def measure(self, pods: list[dict]) -> None:
        """RSS and CPU per cycle of the agent in its container, with `--scale` pods in all."""
        while len(pods) < self.args.scale:
            pods.append(self.app_pod(f"scale-{len(pods)}"))
        wait_for(f"{len(pods)} pods on /metrics",
                 lambda: (s := scrape()) and all(pod_interfaces(s, p["name"]) for p in pods), 60, 0.2)
        time.sleep(1)
        cycles0 = cycles()
        cpu0 = self.agent_cpu_ticks()
        # Host link events start cycles without changing any pod: a veth pair made and removed
        # in the host namespace, ten times.
        for i in range(10):
            name = f"nse2e-t{i}"
            subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
            self.dummies.append(name)
            time.sleep(0.4)
            subprocess.run(["ip", "link", "del", name], check=True)
            self.dummies.remove(name)
            time.sleep(0.4)
        time.sleep(0.5)
        cpu = (self.agent_cpu_ticks() - cpu0) * 1000 / os.sysconf("SC_CLK_TCK")
        n = cycles() - cycles0
        check(n >= 5, f"only {n} cycles from 20 host link events")
        rss = int(self.agent_status()["VmRSS"].split()[0]) / 1024
        self.summary.update(pods=len(pods), rss_mib=round(rss, 1), cpu_ms_per_cycle=round(cpu / n, 2),
                            cycles=n)
        self.passed(f"{len(pods)} pods: RSS {rss:.1f} MiB, CPU {cpu / n:.2f} ms per cycle over {n} cycles")

    # -- teardown -----------------------------------------------------------------------------

    def teardown(self) -> None:
        for name in self.dummies:
            subprocess.run(["ip", "link", "del", name], stderr=subprocess.DEVNULL)
        if self.cri:
            for pod_id in list(self.sandboxes):
                for step in (self.cri.stop_pod, self.cri.remove_pod):
                    try:
                        step(pod_id)
                    except Exception as e:  # keep going: everything else must still go
                        log(f"teardown: {step.__name__} {pod_id[:12]}: {e}")
        for p in reversed(self.procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()
        if self.api:
            self.api.stop()
        subprocess.run(["ip", "link", "del", BRIDGE], stderr=subprocess.DEVNULL)
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write(self.ip_forward)


def cycles() -> int:
    s = scrape() or []
    return int(sum(v for _, v in series(s, "netshim_cycles_total")))


def read_cgroup(pid: int, controller: str, name: str) -> int:
    for line in open(f"/proc/{pid}/cgroup"):
        _, controllers, path = line.strip().split(":", 2)
        if controller in controllers.split(","):
            mount = f"/sys/fs/cgroup/{controller}"
            for candidate in (os.path.join(mount, path.lstrip("/"), name),):
                if os.path.exists(candidate):
                    return int(open(candidate).read())
    raise Failed(f"no {controller} cgroup file {name} for pid {pid}")


class Prober(threading.Thread):
    """The kubelet's prober for one container: readiness and liveness, each on its own period,
    an HTTP GET that passes with a status from 200 to 399 within timeoutSeconds."""

    def __init__(self, probes: dict, started: float) -> None:
        super().__init__(daemon=True)
        self.probes, self.started = probes, started
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.failures: list[str] = []
        self.ready_after = 0.0
        self.liveness_runs = self.readiness_runs = 0

    @staticmethod
    def probe(p: dict) -> tuple[bool, str]:
        get = p["httpGet"]
        url = f"{get.get('scheme', 'HTTP').lower()}://127.0.0.1:{p['resolved_port']}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=p.get("timeoutSeconds", 1)) as r:
                return 200 <= r.status < 400, f"{r.status}"
        except urllib.error.HTTPError as e:
            return False, f"{e.code} {e.read()[:200]!r}"
        except OSError as e:
            return False, str(e)

    def run(self) -> None:
        next_at = {k: self.started + p.get("initialDelaySeconds", 0) for k, p in self.probes.items()}
        failing = {k: 0 for k in self.probes}
        while not self.stopping.is_set():
            now = time.monotonic()
            for kind, p in self.probes.items():
                if now < next_at[kind]:
                    continue
                next_at[kind] = now + p.get("periodSeconds", 10)
                ok, why = self.probe(p)
                if kind == "livenessProbe":
                    self.liveness_runs += 1
                else:
                    self.readiness_runs += 1
                if ok:
                    failing[kind] = 0
                    if kind == "readinessProbe" and not self.ready.is_set():
                        self.ready_after = now - self.started
                        self.ready.set()
                    continue
                failing[kind] += 1
                log(f"{kind} failed ({failing[kind]}/{p.get('failureThreshold', 3)}): {why}")
                if failing[kind] >= p.get("failureThreshold", 3):
                    self.failures.append(f"{kind}: {why}")
            self.stopping.wait(0.05)

    def wait_ready(self, timeout: float) -> None:
        if not self.ready.wait(timeout):
            raise Failed(f"readiness probe did not pass within {timeout:.0f} s; failures: {self.failures}")
        check(not self.failures, f"probe failures: {self.failures}")

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def containerd_config(major: int, root: str, netd: str, sandbox_image: str) -> str:
    """A private containerd: its own root, state on the tmpfs the script mounted at
    /run/containerd, the default socket path, no debug/metrics listeners, no NRI."""
    if major >= 2:
        cri = f"""
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"
[plugins."io.containerd.cri.v1.runtime"]
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
    max_conf_num = 2
[plugins."io.containerd.nri.v1.nri"]
  disable = true
"""
        version = 3
    else:
        cri = f"""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
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
    max_conf_num = 2
"""
        if major == 1:
            cri += '[plugins."io.containerd.nri.v1.nri"]\n  disable = true\n'
        version = 2
    return f"""version = {version}
root = "{root}"
state = "/run/containerd"
[grpc]
  address = "/run/containerd/containerd.sock"
[ttrpc]
  address = "/run/containerd/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
{cri}"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="containerd version expected, e.g. 1.7.24")
    ap.add_argument("--containerd-bin", required=True)
    ap.add_argument("--manifests", required=True, help="kubectl kustomize output")
    ap.add_argument("--image-archive", required=True)
    ap.add_argument("--pause-archive", required=True)
    ap.add_argument("--pause-image", default="localhost/netshim-pause:test")
    ap.add_argument("--cri-stubs", required=True)
    ap.add_argument("--otlp-sink", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--pods", type=int, default=4)
    ap.add_argument("--scale", type=int, default=0, help="pods in all for the RSS/CPU measurement")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    node = Node(args)
    code = 0
    try:
        node.run()
    except Exception as e:  # report, then clean up whatever happened
        node.summary["failed"] = f"{type(e).__name__}: {e}"
        if not isinstance(e, Failed):
            traceback.print_exc()
        for name in ("containerd", "dnsmasq"):
            path = os.path.join(node.work, f"{name}.log")
            if os.path.exists(path):
                log(f"--- last lines of {path}")
                print("".join(open(path, errors="replace").readlines()[-15:]), file=sys.stderr)
        if getattr(node, "agent", None) and node.cri:
            try:
                _, info = node.cri.container_status(node.agent)
                log_path = info.get("config", {}).get("log_path") or ""
                full = os.path.join(node.plan.sandbox["log_directory"], log_path)
                if os.path.exists(full):
                    log(f"--- agent log {full}")
                    print("".join(open(full, errors="replace").readlines()[-30:]), file=sys.stderr)
            except Exception:
                pass
        code = 1
    finally:
        node.teardown()
    s = node.summary
    figures = ", ".join(f"{k} {s[k]}" for k in ("fresh_pod_ms", "removed_pod_ms", "pods", "rss_mib",
                                                "cpu_ms_per_cycle") if k in s)
    s["line"] = (f"containerd {args.label} ({s.get('version', '?')}): "
                 + (f"FAILED: {s['failed']}" if "failed" in s else "passed")
                 + f"; {len(s['passed'])} checks passed" + (f"; {figures}" if figures else "")
                 + ("" if "failed" in s else ": " + "; ".join(s["passed"])))
    print(json.dumps(s))
    return code


if __name__ == "__main__":
    sys.exit(main())
