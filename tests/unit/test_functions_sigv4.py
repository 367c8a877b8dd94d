"""SigV4 as AWS defines it: AWS's published examples, and requests signed by botocore (the
reference client) verified by pyrite.functions.sigv4, byte for byte."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pytest

from pyrite.functions import sigv4
from pyrite.functions.errors import LambdaError

KEY, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
WHEN = datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc)


def test_aws_test_suite_get_vanilla():
    headers = sigv4.sign("GET", "example.amazonaws.com", "/", "", b"", KEY, SECRET, "us-east-1", now=WHEN,
                         service="service")
    assert headers["Authorization"].endswith("Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_aws_documentation_iam_list_users():
    headers = sigv4.sign("GET", "iam.amazonaws.com", "/", "Action=ListUsers&Version=2010-05-08", b"", KEY, SECRET,
                         "us-east-1", now=WHEN, service="iam",
                         extra_headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date, "
        "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")


def botocore_signed(method: str, url: str, body: bytes, headers: dict | None = None, secret: str = SECRET):
    pytest.importorskip("botocore", reason="botocore (boto3's core, a test dependency) is the reference")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(KEY, secret), "lambda", "eu-west-3").add_auth(request)
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    headers = list(prepared.headers.items())
    if not any(k.lower() == "host" for k, _ in headers):
        headers.append(("Host", parts.netloc))         # what the HTTP client puts on the wire
    return method, parts.path, parts.query, headers, body


@pytest.mark.parametrize("method,url,body", [
    ("POST", "http://127.0.0.1:9001/2015-03-31/functions/my-fn/invocations", b'{"a": [1, 2, "x y"]}'),
    ("GET", "http://127.0.0.1:9001/2015-03-31/functions/", b""),
    ("GET", "http://127.0.0.1:9001/2015-03-31/functions/?Marker=3&MaxItems=10", b""),
    ("GET", "http://localhost/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Afunction%3Af"
            "?Qualifier=%24LATEST", b""),
    ("DELETE", "http://127.0.0.1:9001/2017-10-31/functions/f/concurrency", b""),
    ("PUT", "http://127.0.0.1:9001/2015-03-31/functions/f/code", b'{"ZipFile": "UEsDBA=="}'),
])
def test_botocore_signatures_verify(method, url, body):
    _, path, query, headers, body = botocore_signed(method, url, body, {"X-Amz-Invocation-Type": "Event",
                                                                        "Content-Type": "application/json"})
    assert sigv4.verify(method, path, query, headers, body, {KEY: SECRET}) == KEY


def refused(method, path, query, headers, body, secrets=None, now=None) -> LambdaError:
    with pytest.raises(LambdaError) as e:
        sigv4.verify(method, path, query, headers, body, secrets or {KEY: SECRET}, now=now)
    return e.value


def test_tampering_is_refused():
    _, path, query, headers, body = botocore_signed("POST", "http://h/2015-03-31/functions/f/invocations", b"{}")
    for changed in [("POST", path, query, headers, b'{"x":1}'),                      # body
                    ("PUT", path, query, headers, body),                             # method
                    ("POST", path.replace("/f/", "/g/"), query, headers, body),      # path
                    ("POST", path, "Qualifier=1", headers, body),                    # query
                    ("POST", path, query, [(k, "other" if k.lower() == "host" else v) for k, v in headers], body)]:
        e = refused(*changed)
        assert (e.status, e.code) == (403, "InvalidSignatureException")
        assert "does not match" in e.message


def test_wrong_secret_unknown_key_missing_and_stale():
    signed = botocore_signed("GET", "http://h/2015-03-31/functions/", b"", secret="wrong")
    assert refused(*signed).code == "InvalidSignatureException"
    signed = botocore_signed("GET", "http://h/2015-03-31/functions/", b"")
    assert refused(*signed, secrets={"OTHERKEY": SECRET}).code == "UnrecognizedClientException"
    unsigned = [(k, v) for k, v in signed[3] if k.lower() != "authorization"]
    e = refused(*signed[:3], unsigned, b"")
    assert (e.status, e.code) == (403, "MissingAuthenticationTokenException")
    e = refused(*signed, now=datetime.now(timezone.utc) + timedelta(minutes=20))
    assert e.code == "InvalidSignatureException" and "Signature expired" in e.message
    garbled = [(k, "AWS4-HMAC-SHA256 Credential=x") if k.lower() == "authorization" else (k, v) for k, v in signed[3]]
    assert refused(*signed[:3], garbled, b"").code == "IncompleteSignatureException"


def test_canonical_forms():
    assert sigv4.canonical_path("/a/./b/../c") == "/a/c"
    assert sigv4.canonical_path("/functions/arn%3Aaws") == "/functions/arn%253Aaws"   # encoded again
    assert sigv4.canonical_query("b=2&a=1&a=0&c=x%20y") == "a=0&a=1&b=2&c=x%20y"
    assert sigv4.canonical_headers([("Host", "h"), ("X-Amz-Date", " a   b ")], ["host", "x-amz-date"]) == \
        "host:h\nx-amz-date:a b\n"
