"""Lambda's REST API over HTTP: the route table, SigV4 authentication, and Lambda's answers
(JSON bodies, `x-amzn-RequestId`, errors as {"Type", "Message"} with `x-amzn-ErrorType`).

Paths are Lambda's (API versions 2015-03-31, 2017-10-31, 2019-09-30); `/metrics` serves
Prometheus' text format without authentication, and `/pyrite/functions/{name}/logs|code`
are pyrite's own (signed like the rest).
"""
from __future__ import annotations

import json
import re
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from pyrite.functions import errors, sigv4
from pyrite.functions.service import SYNC_PAYLOAD_LIMIT, ZIP_LIMIT, FunctionService

BODY_LIMIT = ZIP_LIMIT * 4 // 3 + 4096        # a base64 zip of Lambda's largest upload, in JSON
DISCARD_LIMIT = 64 * 1024 * 1024              # bodies read and dropped to answer 413 cleanly

# (method, path pattern, operation, success status): the protocol table, enumerable by tests.
ROUTES = [
    ("POST", "/2015-03-31/functions", "create_function", 201),
    ("GET", "/2015-03-31/functions", "list_functions", 200),
    ("GET", "/2015-03-31/functions/{name}", "get_function", 200),
    ("DELETE", "/2015-03-31/functions/{name}", "delete_function", 204),
    ("PUT", "/2015-03-31/functions/{name}/code", "update_function_code", 200),
    ("GET", "/2015-03-31/functions/{name}/configuration", "get_function_configuration", 200),
    ("PUT", "/2015-03-31/functions/{name}/configuration", "update_function_configuration", 200),
    ("PUT", "/2017-10-31/functions/{name}/concurrency", "put_function_concurrency", 200),
    ("DELETE", "/2017-10-31/functions/{name}/concurrency", "delete_function_concurrency", 204),
    ("GET", "/2019-09-30/functions/{name}/concurrency", "get_function_concurrency", 200),
    ("POST", "/2015-03-31/functions/{name}/invocations", "invoke", 200),
    ("POST", "/2014-11-13/functions/{name}/invoke-async", "invoke_async", 202),
    ("GET", "/pyrite/functions/{name}/logs", "logs", 200),
    ("GET", "/pyrite/functions/{name}/code", "code", 200),
]
_COMPILED = [(method, re.compile("^" + pattern.replace("{name}", "(?P<name>[^/]+)") + "/?$"), op, status)
             for method, pattern, op, status in ROUTES]


def route(method: str, path: str) -> tuple[str, dict, int] | None:
    """(operation, path parameters, success status) for a request, or None."""
    for m, pattern, op, status in _COMPILED:
        match = pattern.match(path)
        if match and m == method:
            return op, {k: unquote(v) for k, v in match.groupdict().items()}, status
    return None


def _json_body(body: bytes) -> dict:
    if not body:
        return {}
    try:
        value = json.loads(body)
    except ValueError as e:
        raise errors.invalid_request_content(f"Could not parse request body into json: {e}") from None
    if not isinstance(value, dict):
        raise errors.invalid_request_content("Could not parse request body into json: not an object")
    return value


class Api:
    """Requests in, (status, headers, body) out: no sockets (the HTTP handler below owns them)."""

    def __init__(self, service: FunctionService, secrets: dict[str, str]):
        self.service = service
        self.secrets = secrets

    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict, bytes]:
        parts = urlsplit(target)
        try:
            if method == "GET" and parts.path == "/metrics":
                return 200, {"Content-Type": "text/plain; version=0.0.4"}, self.service.metrics.render().encode()
            found = route(method, parts.path)
            sigv4.verify(method, parts.path, parts.query, headers, body, self.secrets)
            if found is None:
                raise errors.unknown_operation(method, parts.path)
            op, params, status = found
            query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
            lookup = {k.lower(): v for k, v in headers}
            return self._call(op, params, status, query, lookup, body)
        except errors.LambdaError as e:
            return e.status, {"x-amzn-ErrorType": e.code, "Content-Type": "application/json",
                              "x-amzn-RequestId": str(uuid.uuid4())}, json.dumps(e.body()).encode()
        except Exception as e:                     # a bug must not take the service down
            import traceback
            traceback.print_exc()
            error = errors.service_error(f"{type(e).__name__}: {e}")
            return 500, {"x-amzn-ErrorType": error.code, "Content-Type": "application/json"}, \
                json.dumps(error.body()).encode()

    def _call(self, op: str, params: dict, status: int, query: dict, headers: dict, body: bytes):
        s = self.service
        name = params.get("name")
        qualifier = query.get("Qualifier")
        if op == "invoke":
            code, extra, payload = s.invoke(name, body, headers.get("x-amz-invocation-type", "RequestResponse"),
                                            headers.get("x-amz-log-type", "None"), qualifier)
            return code, extra, payload
        if op == "invoke_async":
            code, extra, _ = s.invoke(name, body, "Event")
            return code, extra, json.dumps({"Status": 202}).encode()
        if op == "logs":
            return status, {"Content-Type": "text/plain; charset=utf-8"}, s.logs(name)
        if op == "code":
            return status, {"Content-Type": "application/zip"}, s.code_zip(name)
        calls = {
            "create_function": lambda: s.create_function(_json_body(body)),
            "list_functions": lambda: s.list_functions(query.get("Marker"),
                                                       int(query["MaxItems"]) if query.get("MaxItems", "").isdigit()
                                                       else None),
            "get_function": lambda: s.get_function(name, qualifier),
            "delete_function": lambda: s.delete_function(name, qualifier),
            "update_function_code": lambda: s.update_function_code(name, _json_body(body)),
            "get_function_configuration": lambda: s.get_function_configuration(name, qualifier),
            "update_function_configuration": lambda: s.update_function_configuration(name, _json_body(body)),
            "put_function_concurrency": lambda: s.put_function_concurrency(name, _json_body(body)),
            "delete_function_concurrency": lambda: s.delete_function_concurrency(name),
            "get_function_concurrency": lambda: s.get_function_concurrency(name),
        }
        result = calls[op]()
        headers_out = {"x-amzn-RequestId": str(uuid.uuid4())}
        if result is None:
            return status, headers_out, b""
        headers_out["Content-Type"] = "application/json"
        return status, headers_out, json.dumps(result).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "pyrite-functions"
    disable_nagle_algorithm = True      # headers and body leave at once, not after a delayed ACK
    api: Api

    def log_message(self, format, *args):         # the service logs REPORT lines, not every request
        pass

    def _serve(self) -> None:
        length_text = self.headers.get("Content-Length", "0")
        try:
            length = int(length_text)
        except ValueError:
            length = -1
        if length < 0 or self.headers.get("Transfer-Encoding"):
            return self._answer(411, {"x-amzn-ErrorType": "LengthRequiredException"},
                                b'{"Type":"User","Message":"a request body needs a Content-Length"}', close=True)
        limit = SYNC_PAYLOAD_LIMIT if self.path.split("?")[0].endswith("/invocations") else BODY_LIMIT
        if length > limit:
            if length > DISCARD_LIMIT:
                return self._answer(*self._too_large(limit), close=True)
            self._discard(length)
            return self._answer(*self._too_large(limit))
        body = self.rfile.read(length)
        status, headers, payload = self.api.handle(self.command, self.path, list(self.headers.items()), body)
        self._answer(status, headers, payload)

    @staticmethod
    def _too_large(limit: int) -> tuple[int, dict, bytes]:
        e = errors.too_large(limit)
        return e.status, {"x-amzn-ErrorType": e.code, "Content-Type": "application/json"}, json.dumps(e.body()).encode()

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _answer(self, status: int, headers: dict, body: bytes, close: bool = False) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def make_server(api: Api, host: str, port: int) -> Server:
    handler = type("Handler", (_Handler,), {"api": api})
    return Server((host, port), handler)
