"""A CRI v1 client for the node harness, from Kubernetes' own `api.proto` (compiled by
`scripts/e2e-node.sh` with grpcio-tools into the folder named by `--cri-stubs`): the requests the
kubelet makes, and nothing netshim itself needs.
"""
from __future__ import annotations

import importlib
import json
import sys
import time

import grpc
from google.protobuf import json_format


class Cri:
    def __init__(self, stubs_dir: str, socket: str) -> None:
        sys.path.insert(0, stubs_dir)
        self.pb = importlib.import_module("api_pb2")
        grpc_mod = importlib.import_module("api_pb2_grpc")
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = grpc_mod.RuntimeServiceStub(self.channel)
        self.images = grpc_mod.ImageServiceStub(self.channel)

    def msg(self, name: str, body: dict):
        return json_format.ParseDict(body, getattr(self.pb, name)())

    def wait_ready(self, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = self.runtime.Version(self.pb.VersionRequest(), timeout=2)
                return f"{v.runtime_name} {v.runtime_version}"
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def image_id(self, ref: str) -> str | None:
        r = self.images.ImageStatus(self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=ref)))
        return r.image.id if r.HasField("image") else None

    def run_pod(self, config: dict, handler: str = "") -> str:
        req = self.pb.RunPodSandboxRequest(config=self.msg("PodSandboxConfig", config),
                                           runtime_handler=handler)
        return self.runtime.RunPodSandbox(req, timeout=60).pod_sandbox_id

    def create_container(self, pod_id: str, config: dict, sandbox_config: dict) -> str:
        req = self.pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=self.msg("ContainerConfig", config),
            sandbox_config=self.msg("PodSandboxConfig", sandbox_config))
        return self.runtime.CreateContainer(req, timeout=60).container_id

    def start_container(self, container_id: str) -> None:
        self.runtime.StartContainer(self.pb.StartContainerRequest(container_id=container_id), timeout=60)

    def stop_container(self, container_id: str, timeout: int) -> None:
        self.runtime.StopContainer(self.pb.StopContainerRequest(container_id=container_id, timeout=timeout),
                                   timeout=timeout + 30)

    def container_status(self, container_id: str) -> tuple[object, dict]:
        r = self.runtime.ContainerStatus(
            self.pb.ContainerStatusRequest(container_id=container_id, verbose=True), timeout=10)
        return r.status, json.loads(r.info.get("info", "{}"))

    def pod_status(self, pod_id: str) -> tuple[object, dict]:
        r = self.runtime.PodSandboxStatus(
            self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True), timeout=10)
        return r.status, json.loads(r.info.get("info", "{}"))

    def stop_pod(self, pod_id: str) -> None:
        self.runtime.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)

    def remove_pod(self, pod_id: str) -> None:
        self.runtime.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)

    def list_pods(self) -> list:
        return list(self.runtime.ListPodSandbox(self.pb.ListPodSandboxRequest(), timeout=10).items)


def netns_path(info: dict) -> str:
    """The sandbox's network namespace path, from its verbose info (runtime spec)."""
    for ns in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
        if ns.get("type") == "network":
            return ns.get("path", "")
    return ""
