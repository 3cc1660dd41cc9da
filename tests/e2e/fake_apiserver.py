"""A fake Kubernetes API server for the node harness: the one fake of the end-to-end run, since no
kube-apiserver can be installed here.

It serves what netshim's `k8s_attributes` resolver asks of a real one, over HTTPS with a CA the
agent trusts through its mounted service-account `ca.crt`, and only to callers presenting the
service-account token the harness mounted (anything else is a 401 `Status`):

* `GET /api/v1/pods` as a list (`fieldSelector=spec.nodeName=NODE` honoured, one page, the
  current `resourceVersion`) or as a watch (`watch=true`): chunked newline-delimited JSON events of
  every change after the asked `resourceVersion`, ended after `timeoutSeconds`;
* `POST /apis/authentication.k8s.io/v1/tokenreviews` and
  `/apis/authorization.k8s.io/v1/subjectaccessreviews`: the Prometheus exporter's checks of a
  scraper's token, answered from the scrapers the harness registered (`add_scraper`: a token,
  its user, whether RBAC lets that user `get` the non-resource URL `/metrics`), counted in
  `reviews`;
* every other path: a 404 `Status`.

The harness adds and deletes pods as the scheduler and the kubelet would (`add_pod`,
`delete_pod`); each change raises a global resourceVersion.
"""
from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class PodStore:
    """Pods by (namespace, name), and the log of changes watches stream from."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.version = 1
        self.pods: dict[tuple[str, str], dict] = {}
        self.events: list[tuple[int, str, dict]] = []  # (resourceVersion, type, pod)

    def _change(self, kind: str, pod: dict) -> None:
        self.version += 1
        pod = json.loads(json.dumps(pod))
        pod["metadata"]["resourceVersion"] = str(self.version)
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        if kind == "DELETED":
            self.pods.pop(key, None)
        else:
            self.pods[key] = pod
        self.events.append((self.version, kind, pod))
        self.lock.notify_all()

    def put(self, pod: dict) -> None:
        with self.lock:
            key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
            self._change("MODIFIED" if key in self.pods else "ADDED", pod)

    def delete(self, namespace: str, name: str) -> None:
        with self.lock:
            pod = self.pods.get((namespace, name))
            if pod is not None:
                self._change("DELETED", pod)


def selected(pod: dict, field_selector: str) -> bool:
    """The field selectors the resolver uses: `spec.nodeName=NODE` (and `!=`), comma-joined."""
    for term in filter(None, field_selector.split(",")):
        negate = "!=" in term
        field, _, value = term.partition("!=" if negate else "=")
        value = value.lstrip("=")
        node = pod.get("spec", {}).get("nodeName", "")
        if field != "spec.nodeName":
            raise ValueError(f"field selector {field!r} is not supported by the fake API")
        if (node == value) == negate:
            return False
    return True


def status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "FakeApiServer"

    def log_message(self, fmt, *args):  # quiet: the harness prints what matters
        self.server.requests.append(f"{self.command} {self.path}")

    def send_json(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append(f"POST {self.path}")
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        try:
            review = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        except ValueError as e:
            return self.send_json(400, status(400, "BadRequest", str(e)))
        path = urllib.parse.urlsplit(self.path).path
        scrapers = self.server.scrapers
        if path == "/apis/authentication.k8s.io/v1/tokenreviews":
            found = scrapers.get(review.get("spec", {}).get("token", ""))
            review["status"] = ({"authenticated": True,
                                 "user": {"username": found[0], "groups": ["system:authenticated"]}}
                                if found else {"authenticated": False})
        elif path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
            spec = review.get("spec", {})
            asked = spec.get("nonResourceAttributes") or {}
            review["status"] = {"allowed": asked.get("path") == "/metrics"
                                and asked.get("verb") == "get"
                                and any(u == spec.get("user") and ok for u, ok in scrapers.values())}
        else:
            return self.send_json(404, status(404, "NotFound", f"the fake API serves no POST {path}"))
        self.server.reviews += 1
        self.send_json(201, review)

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.server.requests.append(f"GET {self.path}")
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path != "/api/v1/pods":
            return self.send_json(404, status(404, "NotFound", f"the fake API serves no {url.path}"))
        selector = query.get("fieldSelector", "")
        try:
            if query.get("watch") in ("true", "1"):
                return self.watch(selector, int(query.get("resourceVersion") or 0),
                                  float(query.get("timeoutSeconds") or 300))
            store = self.server.store
            with store.lock:
                items = [p for p in store.pods.values() if selected(p, selector)]
                version = store.version
        except ValueError as e:
            return self.send_json(400, status(400, "BadRequest", str(e)))
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(version)}, "items": items})

    def watch(self, selector: str, since: int, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        store = self.server.store
        deadline = time.monotonic() + min(timeout, 300)
        sent = since
        try:
            while not self.server.stopping and time.monotonic() < deadline:
                with store.lock:
                    fresh = [e for e in store.events if e[0] > sent]
                    if not fresh:
                        store.lock.wait(timeout=0.5)
                        continue
                for version, kind, pod in fresh:
                    sent = version
                    if selected(pod, selector):
                        line = json.dumps({"type": kind, "object": pod}).encode() + b"\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                        self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        self.close_connection = True


class FakeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, cert_file: str, key_file: str, token: str) -> None:
        super().__init__((host, 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.store = PodStore()
        self.token = token
        self.scrapers: dict[str, tuple[str, bool]] = {}
        self.reviews = 0
        self.requests: list[str] = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def add_scraper(self, token: str, user: str, allowed: bool) -> None:
        """A bearer token the authenticator knows as `user`, who may get /metrics if `allowed`."""
        self.scrapers[token] = (user, allowed)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "FakeApiServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping = True
        self.shutdown()
        self.server_close()
