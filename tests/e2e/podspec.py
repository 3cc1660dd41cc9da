"""The kubelet's part for one pod: a pod template, as the DaemonSet ships it, turned into the CRI
requests a kubelet makes (RunPodSandbox, CreateContainer), plus the files it writes for the pod
(the ConfigMap volume, /etc/hosts, the service-account token, /etc/resolv.conf's contents).

Every field of the template must be one this module translates: `check_fields` walks the whole
template against `POD_FIELDS` and fails naming the first field it does not know, so a manifest
change that the harness would silently ignore fails the run instead.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

ANY = object()  # a value taken whole (a map of labels, a string, a number)


def each(schema):
    """A list whose every item follows `schema`."""
    return ("list", schema)


PROBE = {
    "httpGet": {"path": ANY, "port": ANY, "scheme": ANY},
    "initialDelaySeconds": ANY, "periodSeconds": ANY, "failureThreshold": ANY,
    "successThreshold": ANY, "timeoutSeconds": ANY,
}
CONTAINER = {
    "name": ANY, "image": ANY, "imagePullPolicy": ANY, "command": ANY, "args": ANY,
    "env": each({"name": ANY, "value": ANY, "valueFrom": {"fieldRef": {"fieldPath": ANY,
                                                                       "apiVersion": ANY}}}),
    "ports": each({"name": ANY, "containerPort": ANY, "protocol": ANY}),
    "readinessProbe": PROBE, "livenessProbe": PROBE,
    "resources": {"requests": {"cpu": ANY, "memory": ANY}, "limits": {"cpu": ANY, "memory": ANY}},
    "securityContext": {
        "privileged": ANY, "allowPrivilegeEscalation": ANY, "readOnlyRootFilesystem": ANY,
        "runAsUser": ANY, "runAsNonRoot": ANY, "seccompProfile": {"type": ANY, "localhostProfile": ANY},
        "capabilities": {"add": ANY, "drop": ANY},
    },
    "volumeMounts": each({"name": ANY, "mountPath": ANY, "readOnly": ANY, "mountPropagation": ANY}),
}
POD_FIELDS = {
    "metadata": {"labels": ANY, "annotations": ANY},
    "spec": {
        "serviceAccountName": ANY, "hostNetwork": ANY, "dnsPolicy": ANY, "nodeSelector": ANY,
        "tolerations": each({"operator": ANY, "key": ANY, "value": ANY, "effect": ANY}),
        "terminationGracePeriodSeconds": ANY,
        "containers": each(CONTAINER),
        "volumes": each({"name": ANY, "configMap": {"name": ANY, "defaultMode": ANY},
                         "hostPath": {"path": ANY, "type": ANY}}),
    },
}


class Untranslated(Exception):
    """A pod-spec field the harness does not turn into CRI."""


def check_fields(value, schema, path: str) -> list[str]:
    """Every path under `value` that `schema` names, depth first; raises on the first unknown."""
    seen = []
    if schema is ANY:
        return [path]
    if isinstance(schema, tuple):
        if not isinstance(value, list):
            raise Untranslated(f"{path}: expected a list")
        for i, item in enumerate(value):
            seen += check_fields(item, schema[1], f"{path}[{i}]")
        return seen
    if not isinstance(value, dict):
        raise Untranslated(f"{path}: expected a map")
    for key, item in value.items():
        if key not in schema:
            raise Untranslated(f"pod template field `{path}.{key}` is not translated by the "
                               "harness: teach tests/e2e/podspec.py what a kubelet does with it")
        seen += check_fields(item, schema[key], f"{path}.{key}")
    return seen


def cpu_millis(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    m = re.fullmatch(r"(\d+)([KMG]i?)?", str(quantity))
    if not m:
        raise Untranslated(f"memory quantity {quantity!r}")
    return int(m.group(1)) * units.get(m.group(2) or "", 1)


# The kubelet's defaults for a container without `procMount: Unmasked` (pkg/securitycontext).
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
PROPAGATION = {None: "PROPAGATION_PRIVATE", "None": "PROPAGATION_PRIVATE",
               "HostToContainer": "PROPAGATION_HOST_TO_CONTAINER",
               "Bidirectional": "PROPAGATION_BIDIRECTIONAL"}


@dataclass
class Node:
    """The node the pod runs on, as the harness plays it."""
    name: str
    labels: dict
    ip: str
    dns_server: str
    cluster_domain: str
    memory_capacity: int
    api_host: str
    api_port: int


@dataclass
class PodPlan:
    """What the kubelet asks of the runtime for one pod, and what it then checks."""
    sandbox: dict
    containers: list[dict]
    probes: dict[str, dict]            # container name -> {"readiness": probe, "liveness": probe}
    files: dict[str, bytes] = field(default_factory=dict)   # host path -> contents it must write
    translated: list[str] = field(default_factory=list)     # the template fields, by path
    grace_seconds: int = 30
    expected: dict = field(default_factory=dict)           # what the container must end up with


def plan_pod(template: dict, config_maps: dict[str, dict], *, name: str, namespace: str,
             uid: str, node: Node, pod_dir: str, log_dir: str, token: str, ca_pem: bytes,
             image_ids: dict[str, str]) -> PodPlan:
    """The CRI requests for `template` on `node`; files go under `pod_dir`."""
    translated = check_fields(template, POD_FIELDS, "template")
    spec, meta = template["spec"], template.get("metadata", {})
    for key, value in spec.get("nodeSelector", {}).items():
        if node.labels.get(key) != value:
            raise Untranslated(f"nodeSelector {key}={value}: the node would not be chosen")
    # tolerations: the harness's node has no taints, so any set of them lets the pod on.
    host_network = bool(spec.get("hostNetwork", False))
    dns_policy = spec.get("dnsPolicy", "ClusterFirst")
    labels = dict(meta.get("labels", {}))
    labels.update({"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
                   "io.kubernetes.pod.uid": uid})
    annotations = dict(meta.get("annotations", {}))
    annotations["kubernetes.io/config.source"] = "api"

    # DNS as the kubelet writes it (pkg/kubelet/network/dns): the cluster's server and search path
    # for ClusterFirst (and ClusterFirstWithHostNet on a host-network pod), else the node's.
    if dns_policy == "ClusterFirstWithHostNet" or (dns_policy == "ClusterFirst" and not host_network):
        d = node.cluster_domain
        dns = {"servers": [node.dns_server],
               "searches": [f"{namespace}.svc.{d}", f"svc.{d}", d], "options": ["ndots:5"]}
    elif dns_policy in ("ClusterFirst", "Default"):
        dns = None  # the node's resolv.conf
    else:
        raise Untranslated(f"template.spec.dnsPolicy: {dns_policy!r}")

    ports = {}
    port_mappings = []
    for c in spec["containers"]:
        for p in c.get("ports", []):
            if "name" in p:
                ports[p["name"]] = p["containerPort"]
            port_mappings.append({"protocol": p.get("protocol", "TCP"),
                                  "container_port": p["containerPort"],
                                  "host_port": p["containerPort"] if host_network else 0,
                                  "host_ip": ""})
    cgroup_parent = ""  # see README: cgroup v1 under a foreign hierarchy here; limits go on the container
    sandbox = {
        "metadata": {"name": name, "uid": uid, "namespace": namespace, "attempt": 0},
        # Empty for a host-network pod: it shares the node's UTS namespace (runc refuses a name).
        "hostname": "" if host_network else name,
        "log_directory": log_dir,
        "dns_config": dns,
        "port_mappings": port_mappings,
        "labels": labels,
        "annotations": annotations,
        "linux": {"cgroup_parent": cgroup_parent, "security_context": {
            "namespace_options": {"network": "NODE" if host_network else "POD",
                                  "pid": "CONTAINER", "ipc": "POD"},
            "seccomp": {"profile_type": "RuntimeDefault"},
        }},
    }

    # Volumes: a ConfigMap as files (the kubelet's atomic writer: ..data -> a timestamped folder),
    # hostPath as is, checked against its `type`.
    files: dict[str, bytes] = {}
    volume_paths = {}
    for v in spec.get("volumes", []):
        if "configMap" in v:
            cm = config_maps.get(v["configMap"]["name"])
            if cm is None:
                raise Untranslated(f"volume {v['name']}: ConfigMap {v['configMap']['name']} not rendered")
            base = os.path.join(pod_dir, "volumes", "kubernetes.io~configmap", v["name"])
            for key, text in cm.get("data", {}).items():
                files[os.path.join(base, "..data_1", key)] = text.encode()
            volume_paths[v["name"]] = base
        elif "hostPath" in v:
            path, kind = v["hostPath"]["path"], v["hostPath"].get("type", "")
            if kind == "Directory" and not os.path.isdir(path):
                raise Untranslated(f"volume {v['name']}: hostPath {path} is not a directory")
            if kind not in ("", "Directory"):
                raise Untranslated(f"volume {v['name']}: hostPath type {kind!r}")
            volume_paths[v["name"]] = path
    # The service-account token the kubelet projects into every pod (automountServiceAccountToken
    # defaults to true) and the node's /etc/hosts for a host-network pod (kubelet-managed file).
    sa_dir = os.path.join(pod_dir, "volumes", "kubernetes.io~projected", "kube-api-access")
    files[os.path.join(sa_dir, "token")] = token.encode()
    files[os.path.join(sa_dir, "ca.crt")] = ca_pem
    files[os.path.join(sa_dir, "namespace")] = namespace.encode()
    hosts_file = os.path.join(pod_dir, "etc-hosts")
    with open("/etc/hosts", "rb") as f:
        node_hosts = f.read()
    files[hosts_file] = (b"# Kubernetes-managed hosts file (host network).\n" + node_hosts
                         if host_network else
                         b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n")

    containers, probes, expected = [], {}, {}
    for c in spec["containers"]:
        image = c["image"]
        if c.get("imagePullPolicy", "IfNotPresent") != "IfNotPresent" or image not in image_ids:
            raise Untranslated(f"container {c['name']}: image {image} must be present (no registry here)")
        env = [{"key": "KUBERNETES_SERVICE_HOST", "value": node.api_host},
               {"key": "KUBERNETES_SERVICE_PORT", "value": str(node.api_port)},
               {"key": "KUBERNETES_SERVICE_PORT_HTTPS", "value": str(node.api_port)},
               {"key": "KUBERNETES_PORT", "value": f"tcp://{node.api_host}:{node.api_port}"}]
        field_values = {"spec.nodeName": node.name, "metadata.name": name,
                        "metadata.namespace": namespace, "metadata.uid": uid,
                        "status.hostIP": node.ip, "spec.serviceAccountName":
                        spec.get("serviceAccountName", "default")}
        for e in c.get("env", []):
            if "value" in e:
                env.append({"key": e["name"], "value": str(e["value"])})
            else:
                path = e["valueFrom"]["fieldRef"]["fieldPath"]
                if path not in field_values:
                    raise Untranslated(f"env {e['name']}: fieldRef {path}")
                env.append({"key": e["name"], "value": field_values[path]})
        mounts = []
        for m in c.get("volumeMounts", []):
            if m["name"] not in volume_paths:
                raise Untranslated(f"volumeMount {m['name']}: no such volume")
            propagation = m.get("mountPropagation")
            if propagation not in PROPAGATION:
                raise Untranslated(f"volumeMount {m['name']}: mountPropagation {propagation!r}")
            mounts.append({"container_path": m["mountPath"], "host_path": volume_paths[m["name"]],
                           "readonly": bool(m.get("readOnly", False)),
                           "propagation": PROPAGATION[propagation]})
        mounts += [
            {"container_path": "/var/run/secrets/kubernetes.io/serviceaccount", "host_path": sa_dir,
             "readonly": True, "propagation": "PROPAGATION_PRIVATE"},
            {"container_path": "/etc/hosts", "host_path": hosts_file, "readonly": False,
             "propagation": "PROPAGATION_PRIVATE"},
        ]
        res = c.get("resources", {})
        limits, requests = res.get("limits", {}), res.get("requests", {})
        resources = {}
        cpu_request = requests.get("cpu", limits.get("cpu"))
        if cpu_request:  # milliCPUToShares
            resources["cpu_shares"] = max(2, cpu_millis(cpu_request) * 1024 // 1000)
        if "cpu" in limits:  # milliCPUToQuota with the default 100 ms period
            resources["cpu_period"] = 100_000
            resources["cpu_quota"] = max(1000, cpu_millis(limits["cpu"]) * 100_000 // 1000)
        if "memory" in limits:
            resources["memory_limit_in_bytes"] = memory_bytes(limits["memory"])
        # The QoS class decides oom_score_adj (pkg/kubelet/qos): Burstable here.
        mem_request = memory_bytes(requests.get("memory", limits.get("memory", "0")))
        guaranteed = bool(limits) and requests == limits
        resources["oom_score_adj"] = (-997 if guaranteed else
                                      min(999, max(2, 1000 - 1000 * mem_request // node.memory_capacity)))
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            raise Untranslated("securityContext.privileged: true is not what netshim ships")
        run_as = sc.get("runAsUser")
        if sc.get("runAsNonRoot") and run_as in (None, 0):
            raise Untranslated("runAsNonRoot with uid 0: the kubelet would refuse to start it")
        seccomp = sc.get("seccompProfile", {"type": "Unconfined"})
        profile = {"RuntimeDefault": {"profile_type": "RuntimeDefault"},
                   "Unconfined": {"profile_type": "Unconfined"},
                   "Localhost": {"profile_type": "Localhost",
                                 "localhost_ref": seccomp.get("localhostProfile", "")}}.get(seccomp["type"])
        if profile is None:
            raise Untranslated(f"seccompProfile.type {seccomp['type']!r}")
        caps = sc.get("capabilities", {})
        security = {
            "capabilities": {"add_capabilities": list(caps.get("add", [])),
                             "drop_capabilities": list(caps.get("drop", []))},
            "privileged": False,
            "readonly_rootfs": bool(sc.get("readOnlyRootFilesystem", False)),
            "no_new_privs": not sc.get("allowPrivilegeEscalation", True),
            "seccomp": profile,
            "masked_paths": MASKED_PATHS, "readonly_paths": READONLY_PATHS,
            "namespace_options": sandbox["linux"]["security_context"]["namespace_options"],
        }
        if run_as is not None:
            security["run_as_user"] = {"value": int(run_as)}
        container = {
            "metadata": {"name": c["name"], "attempt": 0},
            "image": {"image": image_ids[image], "user_specified_image": image},
            "command": list(c.get("command", [])),
            "args": list(c.get("args", [])),
            "envs": env,
            "mounts": mounts,
            "labels": {"io.kubernetes.container.name": c["name"], "io.kubernetes.pod.name": name,
                       "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": uid},
            "annotations": {"io.kubernetes.container.restartCount": "0",
                            "io.kubernetes.container.terminationMessagePath": "/dev/termination-log"},
            "log_path": f"{c['name']}/0.log",
            "linux": {"resources": resources, "security_context": security},
        }
        containers.append(container)
        probes[c["name"]] = {}
        for kind in ("readinessProbe", "livenessProbe"):
            if kind in c:
                p = dict(c[kind])
                port = p["httpGet"]["port"]
                p["resolved_port"] = ports[port] if isinstance(port, str) else int(port)
                probes[c["name"]][kind] = p
        expected[c["name"]] = {"add": caps.get("add", []), "drop": caps.get("drop", []),
                               "readonly_rootfs": security["readonly_rootfs"],
                               "no_new_privs": security["no_new_privs"], "uid": run_as,
                               "seccomp": seccomp["type"], "resources": resources}
    return PodPlan(sandbox=sandbox, containers=containers, probes=probes, files=files,
                   translated=translated, grace_seconds=int(spec.get("terminationGracePeriodSeconds", 30)),
                   expected=expected)


def write_files(files: dict[str, bytes]) -> None:
    """Writes the pod's files. A ConfigMap folder is laid out as the kubelet's atomic writer does:
    `KEY -> ..data/KEY`, `..data -> ..data_1` (the folder a Secret or ConfigMap update swaps)."""
    for path, data in files.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        parent = os.path.dirname(path)
        if os.path.basename(parent) == "..data_1":
            base = os.path.dirname(parent)
            for link, target in ((os.path.join(base, "..data"), "..data_1"),
                                 (os.path.join(base, os.path.basename(path)),
                                  os.path.join("..data", os.path.basename(path)))):
                if not os.path.islink(link):
                    os.symlink(target, link)
