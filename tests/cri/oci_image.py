#!/usr/bin/env python3
"""Writes an OCI image layout archive holding one static binary as its only layer, so the test
containerd can import a sandbox image with no registry.

usage: oci_image.py BINARY IMAGE_REF OUT.tar      (import: ctr -n k8s.io images import OUT.tar)
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def archive(files) -> bytes:
    """A reproducible tar of (name, bytes, mode) entries."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def main() -> None:
    binary, ref, out = sys.argv[1:4]
    name = os.path.basename(binary)
    with open(binary, "rb") as f:
        layer = archive([(name, f.read(), 0o755)])
    layer_gz = gzip.compress(layer, mtime=0)
    config = compact({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/" + name]},
        "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
    })
    manifest = compact({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer_gz), "size": len(layer_gz)}],
    })
    tag = ref.rsplit(":", 1)[-1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = compact({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": digest(manifest), "size": len(manifest),
                       "platform": {"architecture": "amd64", "os": "linux"},
                       "annotations": {"io.containerd.image.name": ref,
                                       "org.opencontainers.image.ref.name": tag}}],
    })
    files = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644), ("index.json", index, 0o644)]
    for blob in (layer_gz, config, manifest):
        files.append(("blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob, 0o644))
    with open(out, "wb") as f:
        f.write(archive(files))


if __name__ == "__main__":
    main()
