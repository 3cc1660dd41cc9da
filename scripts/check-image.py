#!/usr/bin/env python3
"""Checks an OCI image archive against the final stage of the Dockerfile it was built from, and
fails on any difference. Standard library only.

  check-image.py ARCHIVE --dockerfile deploy/Dockerfile --context DIR --image NAME \
      [--build-arg K=V ...]
  check-image.py --annotate NAME ARCHIVE

What is compared: the index (one manifest, named NAME for containerd and by ref.name), every
blob's digest and size, the config's diff_ids against the layers, and, from the final stage:
ENTRYPOINT, CMD, USER, ENV, EXPOSE, LABEL (with ARG values), and the files: exactly those the
stage COPYs (no other file, link or device; folders only as their parents), each with the bytes
of its source in the context (a `COPY --from=STAGE` source followed through that stage's own
COPYs, and through `FROM ${ARG} AS STAGE`). /netshim must be executable and `file` must call it
static. The last line gives the compressed size of the layers.

--annotate adds io.containerd.image.name=NAME (and ref.name when absent) to the index's manifest:
`ctr images import` names the image from it.
"""
import argparse
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
# Added by the builders whatever the Dockerfile says: buildah's identity label (turned off by
# build-image.sh, allowed in case) and the default PATH both BuildKit and buildah set.
BUILDER_LABELS = {"io.buildah.version"}
BUILDER_ENV = {"PATH"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# ---- the Dockerfile ---------------------------------------------------------------------------

def instructions(path):
    """(KEYWORD, rest) per instruction: comments dropped, continuation lines joined."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            line = (pending + line).strip()
            pending = ""
            if line:
                word, _, rest = line.partition(" ")
                out.append((word.upper(), rest.strip()))
    return out


def substitute(text, args):
    def one(m):
        name = m.group(1) or m.group(2)
        return args.get(name, "")
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, text)


def stages(path, build_args):
    """[(name, base, [(KEYWORD, rest, args)])] with ARG values in force at each instruction."""
    global_args, result = {}, []
    for word, rest in instructions(path):
        if word == "ARG" and not result:
            name, _, default = rest.partition("=")
            global_args[name] = build_args.get(name, default.strip('"'))
            continue
        if word == "FROM":
            parts = substitute(rest, global_args).split()
            flags = [p for p in parts if p.startswith("--")]
            parts = [p for p in parts if not p.startswith("--")]
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append([name, parts[0], [], dict()])
            del flags
            continue
        stage = result[-1]
        if word == "ARG":
            name, _, default = rest.partition("=")
            stage[3][name] = build_args.get(name, global_args.get(name, default.strip('"')))
        stage[2].append((word, rest, dict(stage[3])))
    return [(n, b, body) for n, b, body, _ in result]


def copy_parts(rest, args):
    words = shlex.split(substitute(rest, args))
    flags = {w[2:].split("=", 1)[0]: w.split("=", 1)[-1] for w in words if w.startswith("--")}
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def source_of(stage_name, path, all_stages, context):
    """The context file that `path` of stage `stage_name` comes from."""
    by_name = {n: (b, body) for n, b, body in all_stages if n}
    seen = set()
    while True:
        if stage_name in seen or stage_name not in by_name:
            raise SystemExit(f"check-image: cannot follow {path} into stage {stage_name}")
        seen.add(stage_name)
        base, body = by_name[stage_name]
        if base in by_name and not body:  # FROM other-stage AS alias
            stage_name = base
            continue
        if base != "scratch":
            raise SystemExit(f"check-image: stage {stage_name} is FROM {base}, not followed")
        for word, rest, args in reversed(body):
            if word != "COPY":
                continue
            flags, srcs, dest = copy_parts(rest, args)
            if "from" in flags or len(srcs) != 1:
                continue
            src = srcs[0]
            if dest.endswith("/") and src.endswith("/"):
                if path.startswith(dest):
                    return os.path.join(context, src, path[len(dest):])
            elif dest == path:
                return os.path.join(context, src)
        raise SystemExit(f"check-image: stage {stage_name} does not COPY {path}")


def expected(dockerfile, context, build_args):
    all_stages = stages(dockerfile, build_args)
    final = all_stages[-1]
    if final[1] != "scratch":
        raise SystemExit(f"check-image: the final stage is FROM {final[1]}, not scratch")
    want = {"Labels": {}, "Env": {}, "ExposedPorts": set(), "files": {}}
    for word, rest, args in final[2]:
        if word == "ARG":
            continue
        elif word == "LABEL" or word == "ENV":
            for kv in shlex.split(substitute(rest, args)):
                k, _, v = kv.partition("=")
                want["Labels" if word == "LABEL" else "Env"][k] = v
        elif word == "EXPOSE":
            for p in rest.split():
                want["ExposedPorts"].add(p if "/" in p else p + "/tcp")
        elif word in ("ENTRYPOINT", "CMD"):
            want["Entrypoint" if word == "ENTRYPOINT" else "Cmd"] = json.loads(rest)
        elif word == "USER":
            want["User"] = substitute(rest, args)
        elif word == "COPY":
            flags, srcs, dest = copy_parts(rest, args)
            if len(srcs) != 1 or dest.endswith("/"):
                raise SystemExit(f"check-image: COPY {rest}: one file to one path expected")
            if "from" in flags:
                src = source_of(flags["from"], srcs[0], all_stages, context)
            else:
                src = os.path.join(context, srcs[0])
            want["files"][dest.lstrip("/")] = src
        else:
            raise SystemExit(f"check-image: {word} in the final stage: not known to this check")
    return want


# ---- the archive ------------------------------------------------------------------------------

class Archive:
    def __init__(self, path):
        self.tar = tarfile.open(path)
        self.names = {m.name.lstrip("./"): m for m in self.tar.getmembers()}

    def read(self, name):
        member = self.names.get(name)
        if member is None:
            raise SystemExit(f"check-image: {name} missing from the archive")
        return self.tar.extractfile(member).read()

    def blob(self, desc):
        data = self.read("blobs/" + desc["digest"].replace(":", "/", 1))
        if sha256(data) != desc["digest"] or len(data) != desc["size"]:
            raise SystemExit(f"check-image: blob {desc['digest']}: digest or size differs")
        return data


def annotate(name, path):
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None)
                   for m in tar.getmembers()]
    for m, data in members:
        if m.name.lstrip("./") == "index.json":
            index = json.loads(data)
            if len(index.get("manifests", [])) != 1:
                raise SystemExit("check-image: index.json: one manifest expected")
            ann = index["manifests"][0].setdefault("annotations", {})
            ann["io.containerd.image.name"] = name
            ann.setdefault("org.opencontainers.image.ref.name", name)
            new = json.dumps(index, separators=(",", ":")).encode()
            m.size = len(new)
            members[members.index((m, data))] = (m, new)
            break
    else:
        raise SystemExit("check-image: no index.json in the archive")
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        for m, data in members:
            out.addfile(m, io.BytesIO(data) if data is not None else None)
    os.replace(tmp, path)
    print(f"check-image: {path}: io.containerd.image.name={name}")


def check(a):
    build_args = dict(kv.split("=", 1) for kv in a.build_arg)
    want = expected(a.dockerfile, a.context, build_args)
    problems = []

    def expect(ok, msg):
        if not ok:
            problems.append(msg)

    ar = Archive(a.archive)
    expect(json.loads(ar.read("oci-layout")).get("imageLayoutVersion") == "1.0.0", "oci-layout")
    index = json.loads(ar.read("index.json"))
    manifests = index.get("manifests", [])
    if len(manifests) != 1 or manifests[0].get("mediaType") != MANIFEST:
        raise SystemExit(f"check-image: index.json: one OCI manifest expected: {manifests}")
    ann = manifests[0].get("annotations", {})
    expect(ann.get("io.containerd.image.name") == a.image,
           f"io.containerd.image.name is {ann.get('io.containerd.image.name')!r}, not {a.image!r}")
    expect(ann.get("org.opencontainers.image.ref.name") in (a.image, a.image.rsplit(":", 1)[-1]),
           f"org.opencontainers.image.ref.name is {ann.get('org.opencontainers.image.ref.name')!r}")
    manifest = json.loads(ar.blob(manifests[0]))
    expect(manifest.get("config", {}).get("mediaType") == CONFIG, "config media type")
    config = json.loads(ar.blob(manifest["config"]))
    expect(config.get("os") == "linux", f"os {config.get('os')}")
    c = config.get("config", {})

    for key in ("Entrypoint", "Cmd", "User"):
        expect(c.get(key) == want.get(key), f"{key}: image {c.get(key)!r}, Dockerfile "
                                            f"{want.get(key)!r}")
    env = dict(e.split("=", 1) for e in c.get("Env") or [])
    extra_env = {k for k in env if k not in want["Env"]} - BUILDER_ENV
    expect(all(env.get(k) == v for k, v in want["Env"].items()) and not extra_env,
           f"Env: image {env}, Dockerfile {want['Env']}")
    expect(set(c.get("ExposedPorts") or {}) == want["ExposedPorts"],
           f"ExposedPorts: image {sorted(c.get('ExposedPorts') or {})}, Dockerfile "
           f"{sorted(want['ExposedPorts'])}")
    labels = dict(c.get("Labels") or {})
    for k in BUILDER_LABELS:
        labels.pop(k, None)
    expect(labels == want["Labels"], f"Labels: image {labels}, Dockerfile {want['Labels']}")
    for k in ("org.opencontainers.image.version", "org.opencontainers.image.revision"):
        expect(bool(labels.get(k)), f"label {k} is empty")

    layers = manifest.get("layers", [])
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    expect(len(layers) == len(diff_ids) and layers, "layers and diff_ids differ in number")
    size = 0
    files = {}
    for desc, diff_id in zip(layers, diff_ids):
        expect(desc.get("mediaType") == LAYER_GZ, f"layer media type {desc.get('mediaType')}")
        gz = ar.blob(desc)
        size += len(gz)
        import gzip
        raw = gzip.decompress(gz)
        expect(sha256(raw) == diff_id, f"layer {desc['digest']}: diff_id differs")
        with tarfile.open(fileobj=io.BytesIO(raw)) as layer:
            for m in layer.getmembers():
                name = m.name.lstrip("./").rstrip("/")
                if not name:
                    continue
                if m.isdir():
                    files.setdefault(name, ("dir", None, m.mode))
                elif m.isfile():
                    files[name] = ("file", layer.extractfile(m).read(), m.mode)
                else:
                    files[name] = ("other", None, m.mode)
    parents = {os.path.dirname(p) for p in want["files"]}
    parents = {"/".join(p.split("/")[:i]) for p in parents for i in range(1, len(p.split("/")) + 1)}
    for name, (kind, data, mode) in sorted(files.items()):
        if kind == "dir":
            expect(name in parents, f"folder /{name} in the image, no COPY puts a file in it")
        elif kind == "other" or name not in want["files"]:
            expect(False, f"/{name} in the image, not in the Dockerfile's final stage")
    for name, src in sorted(want["files"].items()):
        got = files.get(name)
        if got is None or got[0] != "file":
            expect(False, f"/{name}: in the Dockerfile, not a file in the image")
            continue
        with open(src, "rb") as f:
            expect(f.read() == got[1], f"/{name}: differs from {src}")
    netshim = files.get("netshim")
    if netshim and netshim[0] == "file":
        expect(netshim[2] & 0o111 == 0o111, f"/netshim mode {oct(netshim[2])}: not executable")
        with tempfile.NamedTemporaryFile() as t:
            t.write(netshim[1])
            t.flush()
            kind = subprocess.run(["file", "-b", t.name], capture_output=True, text=True).stdout
        expect("statically linked" in kind or "static-pie" in kind, f"/netshim: {kind.strip()}")
        print(f"check-image: /netshim: {kind.strip()}")

    for p in problems:
        print(f"check-image: FAIL: {p}")
    print(f"check-image: {len(layers)} layer(s), {size} bytes compressed "
          f"({size / 1048576:.2f} MiB); files: {', '.join('/' + f for f in sorted(want['files']))}")
    if problems:
        sys.exit(1)
    print("check-image: the archive matches the Dockerfile's final stage")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("archive", nargs="?")
    p.add_argument("--annotate", metavar="NAME")
    p.add_argument("--dockerfile")
    p.add_argument("--context")
    p.add_argument("--image")
    p.add_argument("--build-arg", action="append", default=[])
    a = p.parse_args()
    if a.annotate:
        annotate(a.annotate, a.archive)
    else:
        for need in ("archive", "dockerfile", "context", "image"):
            if getattr(a, need) is None:
                p.error(f"--{need} is needed")
        check(a)


if __name__ == "__main__":
    main()
