"""Spans leave over OTLP/HTTP when an endpoint is set, and their trace ids are in the log lines."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.client import call_tool
from tests.support.repos import make_repos, standard_specs
from tests.support.server import base_env, start_server


class Collector:
    """A real OTLP/HTTP receiver: decodes what the exporter posts to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []  # (name, trace id hex)
        self.records: list[Span] = []  # the spans whole: ids, parents, times, attributes
        self.services: list[tuple[str, str]] = []  # (the exporter's service.name, span name)
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        collector.spans.extend((s.name, s.trace_id.hex()) for s in scope_spans.spans)
                        collector.records.extend(scope_spans.spans)
                        collector.services.extend(
                            (resource.get("service.name", ""), s.name) for s in scope_spans.spans
                        )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_spans_are_exported_and_correlated_with_logs(tmp_path: Path, collector: Collector) -> None:
    manifest = make_repos(tmp_path, standard_specs())
    env = base_env(tmp_path, manifest, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    server = start_server(tmp_path, env)
    try:
        assert call_tool(server.url, "list_repos").status_code == 200
    finally:
        assert server.stop() == 0  # a graceful stop flushes the exporter
    names = {name for name, _ in collector.spans}
    assert "POST /mcp" in names
    assert "tools/call list_repos" in names  # the SDK's span, annotated by the tool wrapper
    line = next(json.loads(line) for line in server.log_lines() if '"tool": "list_repos"' in line)
    assert line["tool_outcome"] == "ok"
    tool_traces = {trace for name, trace in collector.spans if name == "tools/call list_repos"}
    http_traces = {trace for name, trace in collector.spans if name == "POST /mcp"}
    assert line["trace_id"] in tool_traces & http_traces, "log line, HTTP span and tool span share one trace"


def test_a_callers_traceparent_is_continued_and_a_malformed_one_ignored(
    tmp_path: Path, collector: Collector
) -> None:
    """Another service's call (Mahavishnu's pushers, a client) carries a W3C `traceparent`: the
    server's spans join that trace under the caller's span, so one trace crosses services. A
    malformed header starts a trace of its own and changes nothing else."""
    manifest = make_repos(tmp_path, standard_specs())
    env = base_env(tmp_path, manifest, {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url})
    trace_id, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    server = start_server(tmp_path, env)
    try:
        continued = {"traceparent": f"00-{trace_id}-{caller_span}-01"}
        assert call_tool(server.url, "list_repos", headers=continued).status_code == 200
        malformed = {"traceparent": f"00-{trace_id}-not-a-span"}
        assert call_tool(server.url, "list_repos", headers=malformed).status_code == 200
    finally:
        assert server.stop() == 0  # a graceful stop flushes the exporter
    first, second = sorted(
        (s for s in collector.records if s.name == "POST /mcp"), key=lambda s: s.start_time_unix_nano
    )
    assert (first.trace_id.hex(), first.parent_span_id.hex()) == (trace_id, caller_span)
    tools = [s.trace_id for s in collector.records if s.name == "tools/call list_repos"]
    assert tools.count(first.trace_id) == 1, "the tool's span is in the caller's trace too"
    assert second.trace_id.hex() != trace_id
    assert second.parent_span_id == b""
