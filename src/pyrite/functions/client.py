"""A small Lambda API client for the `pyrite functions` commands: SigV4-signed requests over
http.client (no dependency on botocore)."""
from __future__ import annotations

import http.client
import json
from urllib.parse import quote, urlsplit

from pyrite.functions import sigv4


class ClientError(Exception):
    """The service answered an error (its x-amzn-ErrorType and message) or could not be reached."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{code}: {message}" if code else message)
        self.status, self.code = status, code


class Client:
    def __init__(self, endpoint: str, access_key: str, secret: str, region: str = "us-east-1", timeout: float = 960):
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(0, "", f"endpoint {endpoint!r}: expected http://HOST:PORT")
        self.endpoint, self.parts = endpoint, parts
        self.access_key, self.secret, self.region, self.timeout = access_key, secret, region, timeout

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                query: str = "") -> tuple[int, dict[str, str], bytes]:
        signed = sigv4.sign(method, self.parts.netloc, path, query, body, self.access_key, self.secret, self.region,
                            extra_headers=headers)
        cls = http.client.HTTPSConnection if self.parts.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.parts.hostname, self.parts.port, timeout=self.timeout)
        try:
            conn.request(method, path + (f"?{query}" if query else ""), body=body, headers=signed)
            response = conn.getresponse()
            data = response.read()
            answer = {k.lower(): v for k, v in response.getheaders()}
        except OSError as e:
            raise ClientError(0, "", f"cannot reach the function service at {self.endpoint}: {e}") from None
        finally:
            conn.close()
        if response.status >= 400:
            try:
                message = json.loads(data).get("Message", data.decode(errors="replace"))
            except ValueError:
                message = data.decode(errors="replace")
            raise ClientError(response.status, answer.get("x-amzn-errortype", ""), message)
        return response.status, answer, data

    def call(self, method: str, path: str, document: dict | None = None) -> dict:
        body = json.dumps(document).encode() if document is not None else b""
        _, _, data = self.request(method, path, body, {"Content-Type": "application/json"} if body else None)
        return json.loads(data) if data else {}

    @staticmethod
    def function_path(name: str, suffix: str = "", version: str = "2015-03-31") -> str:
        return f"/{version}/functions/{quote(name, safe='')}{suffix}"
