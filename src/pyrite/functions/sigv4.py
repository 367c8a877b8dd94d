"""AWS Signature Version 4, as botocore signs and AWS verifies (header form,
`Authorization: AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request,
SignedHeaders=..., Signature=...`).

The canonical request is one function used both ways: `sign()` for pyrite's own client,
`verify()` for the service, which recomputes the signature from the request as received
(its raw path and query, the headers the client signed, the body's SHA-256) and compares.
"""
from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

from pyrite.functions.errors import LambdaError, invalid_signature, missing_authentication, unrecognized_client

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "lambda"
MAX_CLOCK_SKEW = timedelta(minutes=15)       # AWS refuses a request older or newer than this
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
AMZ_DATE = "%Y%m%dT%H%M%SZ"
MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.")
_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})\Z")


def canonical_path(raw_path: str) -> str:
    """The path as sent, dot segments removed, URI-encoded once more (every service but S3)."""
    path = posixpath.normpath(raw_path) if raw_path not in ("", "/") else "/"
    if raw_path.endswith("/") and path != "/":
        path += "/"
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    """Parameters decoded, re-encoded with RFC 3986's unreserved set, sorted by name then value."""
    pairs = []
    for part in raw_query.split("&") if raw_query else ():
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_headers(headers: list[tuple[str, str]], signed: list[str]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        values.setdefault(name.lower(), []).append(" ".join(value.split()))
    return "".join(f"{name}:{','.join(values.get(name, []))}\n" for name in signed)


def canonical_request(method: str, raw_path: str, raw_query: str, headers: list[tuple[str, str]],
                      signed: list[str], payload_hash: str) -> str:
    return "\n".join([method.upper(), canonical_path(raw_path), canonical_query(raw_query),
                      canonical_headers(headers, signed), ";".join(signed), payload_hash])


def string_to_sign(amz_date: str, scope: str, request: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(secret: str, amz_date: str, region: str, service: str, request: str) -> str:
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    return hmac.new(signing_key(secret, date, region, service), string_to_sign(amz_date, scope, request).encode(),
                    hashlib.sha256).hexdigest()


def sign(method: str, host: str, raw_path: str, raw_query: str, body: bytes, access_key: str, secret: str,
         region: str, extra_headers: dict[str, str] | None = None, now: datetime | None = None,
         service: str = SERVICE) -> dict[str, str]:
    """The headers to send (Host, X-Amz-Date, Authorization, and `extra_headers`), signed."""
    amz_date = (now or datetime.now(timezone.utc)).strftime(AMZ_DATE)
    headers = {"Host": host, "X-Amz-Date": amz_date, **(extra_headers or {})}
    pairs = list(headers.items())
    signed = sorted({name.lower() for name in headers})
    request = canonical_request(method, raw_path, raw_query, pairs, signed, hashlib.sha256(body).hexdigest())
    sig = signature(secret, amz_date, region, service, request)
    headers["Authorization"] = (f"{ALGORITHM} Credential={access_key}/{amz_date[:8]}/{region}/{service}/aws4_request, "
                                f"SignedHeaders={';'.join(signed)}, Signature={sig}")
    return headers


def verify(method: str, raw_path: str, raw_query: str, headers: list[tuple[str, str]], body: bytes,
           secrets: dict[str, str], now: datetime | None = None) -> str:
    """The access key id of a correctly signed request; else raises LambdaError as AWS answers."""
    lookup = {name.lower(): value for name, value in headers}
    auth = lookup.get("authorization")
    if auth is None:
        raise missing_authentication()
    match = _AUTH.match(auth.strip())
    if not match:
        raise LambdaError(400, "IncompleteSignatureException",
                          f"Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters "
                          f"with the {ALGORITHM} algorithm. Authorization={auth[:100]}")
    credential, signed_text, given = match.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise LambdaError(400, "IncompleteSignatureException", f"Credential {credential!r} is not "
                          "ACCESS_KEY/DATE/REGION/SERVICE/aws4_request")
    access_key, date, region, service, _ = parts
    if access_key not in secrets:
        raise unrecognized_client()
    if service != SERVICE:
        raise invalid_signature(f"Credential should be scoped to correct service: '{SERVICE}'.")
    signed = signed_text.split(";")
    if "host" not in signed:
        raise invalid_signature("'Host' must be a 'SignedHeader' in the AWS Authorization.")
    amz_date = lookup.get("x-amz-date")
    if amz_date is None:
        raise LambdaError(400, "IncompleteSignatureException", "Authorization header requires existence of "
                          "either a 'X-Amz-Date' or a 'Date' header.")
    try:
        when = datetime.strptime(amz_date, AMZ_DATE).replace(tzinfo=timezone.utc)
    except ValueError:
        raise invalid_signature(f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'.") from None
    if date != amz_date[:8]:
        raise invalid_signature(f"Credential should be scoped to a valid date: '{amz_date[:8]}'.")
    now = now or datetime.now(timezone.utc)
    if abs(now - when) > MAX_CLOCK_SKEW:
        raise invalid_signature(f"Signature expired: {amz_date} is now earlier than "
                                f"{(now - MAX_CLOCK_SKEW).strftime(AMZ_DATE)} ({now.strftime(AMZ_DATE)} - 15 min.)"
                                if when < now else f"Signature not yet current: {amz_date} is still later than "
                                f"{(now + MAX_CLOCK_SKEW).strftime(AMZ_DATE)} ({now.strftime(AMZ_DATE)} + 15 min.)")
    body_hash = hashlib.sha256(body).hexdigest()
    payload_hash = lookup.get("x-amz-content-sha256", body_hash)
    if payload_hash not in (body_hash, UNSIGNED_PAYLOAD):
        raise invalid_signature("The provided 'x-amz-content-sha256' header does not match what was computed.")
    request = canonical_request(method, raw_path, raw_query, headers, signed, payload_hash)
    expected = signature(secrets[access_key], amz_date, region, service, request)
    if not hmac.compare_digest(expected, given):
        raise invalid_signature(MISMATCH)
    return access_key
