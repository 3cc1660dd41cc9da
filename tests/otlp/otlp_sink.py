#!/usr/bin/env python3
"""A recording OTLP metrics sink for netshim's tests.

Listens for OTLP/gRPC (MetricsService/Export) and/or OTLP/HTTP (binary protobuf POSTed to
/v1/metrics, gzip or not) and appends one JSON line per data point to --out:

  {"transport": "http", "request": 3, "request_points": 18, "content_encoding": "gzip",
   "resource": {...}, "resource_index": 0,
   "scope": {"name": ..., "version": ...}, "metric": "k8s.pod.network.io", "kind": "sum",
   "unit": "By", "temporality": "cumulative", "monotonic": true, "attributes": {...},
   "value": 123, "start": <unix ns>, "time": <unix ns>}

`content_encoding` is the HTTP Content-Encoding (`identity` when none), null over gRPC
(grpcio hides it). `request_points` is how many points (lines) that request has in all.

Each request's lines are appended together by one write(2) on an O_APPEND descriptor, so they
are never interleaved with another request's. A reader may still catch a write half done (the
kernel copies a page at a time): a last line without its newline is not written yet, and a
request with fewer lines than its `request_points` is not complete yet. Once listening it prints one line, `ready grpc=PORT http=PORT` (0 for a
listener not asked for), so a test can bind port 0 and learn the port. `--fail-first N`
answers the first N export requests (counted over both listeners) with gRPC UNAVAILABLE /
HTTP 503 and records nothing for them; refused requests are still counted in the `request`
numbers. With --tls-cert and --tls-key both listeners speak TLS.

Needs `grpcio` and `opentelemetry-proto` (scripts/otlp-test-env.sh installs them).
"""

import argparse
import gzip
import json
import os
import ssl
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as pb_grpc
from opentelemetry.proto.metrics.v1 import metrics_pb2

TEMPORALITY = {
    metrics_pb2.AGGREGATION_TEMPORALITY_UNSPECIFIED: "unspecified",
    metrics_pb2.AGGREGATION_TEMPORALITY_DELTA: "delta",
    metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE: "cumulative",
}


def any_value(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Recorder:
    def __init__(self, out_path, fail_first):
        self.out = os.open(out_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()
        self.requests = 0
        self.fail_left = fail_first

    def admit(self):
        """Numbers the request; False when it is to be refused."""
        with self.lock:
            self.requests += 1
            number = self.requests
            if self.fail_left > 0:
                self.fail_left -= 1
                return number, False
            return number, True

    def record(self, request, transport, number, encoding):
        points = []
        for index, rm in enumerate(request.resource_metrics):
            resource = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                scope = {"name": sm.scope.name, "version": sm.scope.version}
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    temporality = TEMPORALITY.get(
                        getattr(data, "aggregation_temporality", 0), "unspecified"
                    )
                    monotonic = getattr(data, "is_monotonic", False)
                    for p in data.data_points:
                        which = p.WhichOneof("value") if kind in ("sum", "gauge") else None
                        value = getattr(p, which) if which else None
                        points.append(
                            {
                                "transport": transport,
                                "request": number,
                                "content_encoding": encoding,
                                "resource": resource,
                                "resource_index": index,
                                "scope": scope,
                                "metric": m.name,
                                "kind": kind,
                                "unit": m.unit,
                                "temporality": temporality,
                                "monotonic": monotonic,
                                "attributes": attributes(p.attributes),
                                "value": value,
                                "start": p.start_time_unix_nano,
                                "time": p.time_unix_nano,
                            }
                        )
        if not points:
            return
        for point in points:
            point["request_points"] = len(points)
        data = memoryview(
            "".join(json.dumps(point, sort_keys=True) + "\n" for point in points).encode("utf-8")
        )
        # One write for the whole request; the loop only covers a short write (a full disk),
        # and the lock keeps even that from interleaving with another request.
        with self.lock:
            while data:
                data = data[os.write(self.out, data) :]


class MetricsService(pb_grpc.MetricsServiceServicer):
    def __init__(self, recorder):
        self.recorder = recorder

    def Export(self, request, context):
        number, ok = self.recorder.admit()
        if not ok:
            context.abort(grpc.StatusCode.UNAVAILABLE, "sink told to fail this request")
        # grpcio decompresses before the handler and hides grpc-encoding: unknown here.
        self.recorder.record(request, "grpc", number, None)
        return pb.ExportMetricsServiceResponse()


def http_handler(recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, code, body=b"", content_type="text/plain"):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path != "/v1/metrics":
                return self.reply(404, b"no such path")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.reply(415, b"expected application/x-protobuf")
            number, ok = recorder.admit()
            if not ok:
                return self.reply(503, b"sink told to fail this request")
            encoding = self.headers.get("Content-Encoding", "identity")
            if encoding == "gzip":
                body = gzip.decompress(body)
            request = pb.ExportMetricsServiceRequest()
            try:
                request.ParseFromString(body)
            except Exception as e:  # noqa: BLE001 - any parse failure is a bad request
                return self.reply(400, str(e).encode())
            recorder.record(request, "http", number, encoding)
            self.reply(
                200,
                pb.ExportMetricsServiceResponse().SerializeToString(),
                "application/x-protobuf",
            )

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grpc", metavar="HOST:PORT", help="OTLP/gRPC listener (port 0: any)")
    ap.add_argument("--http", metavar="HOST:PORT", help="OTLP/HTTP listener (port 0: any)")
    ap.add_argument("--out", required=True, help="JSON lines file, appended to")
    ap.add_argument("--fail-first", type=int, default=0, metavar="N")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    if not args.grpc and not args.http:
        ap.error("give --grpc, --http or both")

    recorder = Recorder(args.out, args.fail_first)
    grpc_port = http_port = 0
    if args.grpc:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        pb_grpc.add_MetricsServiceServicer_to_server(MetricsService(recorder), server)
        if args.tls_cert:
            with open(args.tls_cert, "rb") as c, open(args.tls_key, "rb") as k:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            grpc_port = server.add_secure_port(args.grpc, creds)
        else:
            grpc_port = server.add_insecure_port(args.grpc)
        if grpc_port == 0:
            sys.exit(f"cannot listen on {args.grpc}")
        server.start()
    if args.http:
        host, port = args.http.rsplit(":", 1)
        httpd = ThreadingHTTPServer((host, int(port)), http_handler(recorder))
        if args.tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        http_port = httpd.server_address[1]
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    print(f"ready grpc={grpc_port} http={http_port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
