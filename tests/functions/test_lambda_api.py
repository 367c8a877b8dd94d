"""The function service driven with boto3 as a Lambda user drives AWS Lambda: functions in C
(the provided runtime), every invocation in its own clone of the function's snapshot."""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from lambda_service import create, handler_zip, requirements, zip_of

pytestmark = requirements


def invoke(lam, name: str, event, **kw) -> tuple[dict, bytes]:
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(event), **kw)
    return answer, answer["Payload"].read()


def error_code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def fn(lam):
    create(lam, "behaviours", Timeout=20, Environment={"Variables": {"GREETING": "hello"}})
    return "behaviours"


@pytest.fixture(scope="module")
def short(lam):
    """The same code with a 1 s timeout, for handlers that never end."""
    create(lam, "behaviours-short", Timeout=1)
    return "behaviours-short"


def test_create_get_list(lam, fn):
    config = lam.get_function(FunctionName=fn)["Configuration"]
    assert config["FunctionName"] == fn and config["Runtime"] == "provided.al2023"
    assert config["FunctionArn"].endswith(":function:behaviours") and config["State"] == "Active"
    assert config["Timeout"] == 20 and config["MemorySize"] == 128 and config["Version"] == "$LATEST"
    assert config["Environment"] == {"Variables": {"GREETING": "hello"}}
    assert lam.get_function_configuration(FunctionName=config["FunctionArn"])["CodeSha256"] == config["CodeSha256"]
    assert fn in [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    with pytest.raises(ClientError) as e:
        create(lam, fn)
    assert error_code(e) == "ResourceConflictException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


def test_sync_invoke_runs_in_a_fresh_clone(lam, fn):
    answers = []
    for i in range(3):
        answer, body = invoke(lam, fn, {"n": i})
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        assert answer["ExecutedVersion"] == "$LATEST"
        answers.append(json.loads(body))
    # init set calls to 100: every invocation starts from the snapshot, none sees another's state
    assert [a["calls"] for a in answers] == [101, 101, 101]
    assert all(a["function"] == fn and a["memory"] == 128 and 0 < a["remaining_ms"] <= 20000 for a in answers)
    assert len({a["request"] for a in answers}) == 3
    # each clone has its own VM generation ID, and rand() draws differ from one clone to the next
    assert len({a["genid"] for a in answers}) == 3
    assert len({a["rand"] for a in answers}) == 3


def test_environment_reaches_the_handler(lam, fn):
    assert json.loads(invoke(lam, fn, "env")[1]) == {"GREETING": "hello"}


def test_tail_log(lam, fn):
    answer, _ = invoke(lam, fn, {"tail": True}, LogType="Tail")
    log = base64.b64decode(answer["LogResult"]).decode()
    request_id = answer["ResponseMetadata"]["RequestId"]
    assert f"START RequestId: {request_id} Version: $LATEST" in log
    assert f"handling {request_id}" in log
    assert f"END RequestId: {request_id}" in log
    report = next(line for line in log.splitlines() if line.startswith("REPORT"))
    for field in ("Duration:", "Billed Duration:", "Memory Size: 128 MB", "Max Memory Used:"):
        assert field in report


def test_dry_run(lam, fn):
    answer = lam.invoke(FunctionName=fn, InvocationType="DryRun")
    assert answer["StatusCode"] == 204


def test_event_invocation_runs_later(lam, running, fn):
    answer = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps({"async": 1}))
    assert answer["StatusCode"] == 202
    request_id = answer["ResponseMetadata"]["RequestId"]
    deadline = time.monotonic() + 60
    while f"handling {request_id}" not in running.service.logs(fn).decode():
        assert time.monotonic() < deadline, "the Event invocation never ran"
        time.sleep(0.1)


def test_handler_error(lam, fn):
    answer, body = invoke(lam, fn, "fail")
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert json.loads(body) == {"errorMessage": "asked to fail", "errorType": "ValueError"}


def test_timeout_ends_the_vm(lam, short):
    started = time.monotonic()
    answer, body = invoke(lam, short, "spin")
    assert time.monotonic() - started < 30
    error = json.loads(body)
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Sandbox.Timedout"
    assert error["errorMessage"].endswith("Task timed out after 1.00 seconds")
    assert json.loads(invoke(lam, short, {"after": "timeout"})[1])["calls"] == 101     # still serving


@pytest.mark.parametrize("event", ["crash", "oom"])
def test_guest_crash_and_memory_blow_up(lam, fn, event):
    answer, body = invoke(lam, fn, event, LogType="Tail")
    error = json.loads(body)
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 142" in error["errorMessage"]     # the page fault's status
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "page fault" in log.lower() or "#PF" in log
    if event == "oom":
        assert "before malloc failed" in log
    assert json.loads(invoke(lam, fn, {"after": event})[1])["calls"] == 101


def test_output_flood_is_bounded(lam, running, short):
    answer, body = invoke(lam, short, "flood", LogType="Tail")
    assert json.loads(body)["errorType"] == "Sandbox.Timedout"
    assert len(base64.b64decode(answer["LogResult"])) <= 4096
    assert "bytes of output dropped" in running.service.logs(short).decode(errors="replace")
    assert json.loads(invoke(lam, short, {"after": "flood"})[1])["calls"] == 101


def test_response_over_6_mb(lam, fn):
    answer, body = invoke(lam, fn, "big")
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(body)["errorType"] == "Function.ResponseSizeTooLarge"


def test_payload_over_6_mb(lam, fn):
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=fn, Payload=json.dumps({"pad": "x" * (6 * 1024 * 1024)}))
    assert error_code(e) == "RequestEntityTooLargeException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert json.loads(invoke(lam, fn, {"after": "413"})[1])["calls"] == 101


def test_payload_not_json(lam, fn):
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=fn, Payload=b"{not json")
    assert error_code(e) == "InvalidRequestContentException"


def test_unknown_function(lam):
    for call in (lambda: lam.invoke(FunctionName="nope"), lambda: lam.get_function(FunctionName="nope"),
                 lambda: lam.delete_function(FunctionName="nope")):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "ResourceNotFoundException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        assert "Function not found: arn:aws:lambda:us-east-1:000000000000:function:nope" in str(e.value)


def test_bad_zip_and_bad_code(lam):
    with pytest.raises(ClientError) as e:
        create(lam, "badzip", b"this is not a zip file")
    assert error_code(e) == "InvalidParameterValueException" and "Could not unzip" in str(e.value)
    with pytest.raises(ClientError) as e:
        create(lam, "badc", zip_of({"handler.c": "int handler( { syntax error"}))
    assert error_code(e) == "InvalidParameterValueException" and "does not build" in str(e.value)
    with pytest.raises(ClientError) as e:
        create(lam, "nocode", zip_of({"README": "no sources"}))
    assert error_code(e) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        create(lam, "badruntime", Runtime="nodejs20.x")
    assert error_code(e) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        create(lam, "badtimeout", Timeout=901)
    assert error_code(e) == "ValidationException"
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert not {"badzip", "badc", "nocode", "badruntime", "badtimeout"} & set(names)


def test_update_code_and_configuration(lam):
    create(lam, "updated")
    assert json.loads(invoke(lam, "updated", {})[1])["version"] == "v1"
    config = lam.update_function_code(FunctionName="updated",
                                      ZipFile=handler_zip(**{'version = "v1"': 'version = "v2"'}))
    assert config["LastUpdateStatus"] == "Successful"
    assert json.loads(invoke(lam, "updated", {})[1])["version"] == "v2"
    lam.update_function_configuration(FunctionName="updated", Environment={"Variables": {"GREETING": "bonjour"}},
                                      MemorySize=256)
    assert json.loads(invoke(lam, "updated", "env")[1]) == {"GREETING": "bonjour"}
    assert json.loads(invoke(lam, "updated", {})[1])["memory"] == 256
    lam.delete_function(FunctionName="updated")
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="updated")
    assert error_code(e) == "ResourceNotFoundException"


def test_concurrency_limit(lam, running):
    create(lam, "limited", Timeout=10)
    answer = lam.put_function_concurrency(FunctionName="limited", ReservedConcurrentExecutions=1)
    assert answer["ReservedConcurrentExecutions"] == 1
    assert lam.get_function(FunctionName="limited")["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    first = {}
    # "spin" holds the function's only slot until its 10 s timeout ends it
    slow = threading.Thread(target=lambda: first.update(answer=invoke(lam, "limited", "spin")))
    slow.start()
    deadline = time.monotonic() + 30
    while running.service.instances.running("limited") == 0:       # the slow one holds the only slot
        assert time.monotonic() < deadline and slow.is_alive(), first
        time.sleep(0.005)
    while time.monotonic() < deadline:
        try:
            invoke(lam, "limited", {"probe": 1})
        except ClientError as e:
            assert e.response["Error"]["Code"] == "TooManyRequestsException"
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            assert e.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
            break
        time.sleep(0.01)
    else:
        pytest.fail("a second invocation beyond ReservedConcurrentExecutions=1 was never refused")
    slow.join(60)
    assert json.loads(first["answer"][1])["errorType"] == "Sandbox.Timedout"
    lam.put_function_concurrency(FunctionName="limited", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as e:
        invoke(lam, "limited", {})
    assert error_code(e) == "TooManyRequestsException"
    lam.delete_function_concurrency(FunctionName="limited")
    assert json.loads(invoke(lam, "limited", {})[1])["calls"] == 101


def test_bad_signatures(running, fn):
    with pytest.raises(ClientError) as e:
        running.client(secret="not-the-secret").invoke(FunctionName=fn)
    assert error_code(e) == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as e:
        running.client(key="AKIAUNKNOWNKEY000000").list_functions()
    assert error_code(e) == "UnrecognizedClientException"
    request = urllib.request.Request(f"{running.endpoint}/2015-03-31/functions/{fn}/invocations", data=b"{}",
                                     method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 403 and e.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"


def test_two_functions_are_isolated(lam):
    secret_a, secret_b = "pyrite-secret-of-A-7f3a91", "pyrite-secret-of-B-0c22d4"
    create(lam, "iso-a", handler_zip("probe.c"), Timeout=20, Environment={"Variables": {"SECRET": secret_a}})
    create(lam, "iso-b", handler_zip("probe.c"), Timeout=20, Environment={"Variables": {"SECRET": secret_b}})
    a_answer = json.loads(invoke(lam, "iso-a", secret_a.encode().hex())[1])
    b_looks_for_a = json.loads(invoke(lam, "iso-b", secret_a.encode().hex())[1])
    b_looks_for_b = json.loads(invoke(lam, "iso-b", secret_b.encode().hex())[1])
    assert a_answer["own_secret"] == secret_a and a_answer["found"] >= 1      # the scan finds what is there
    assert b_looks_for_b["found"] >= 1
    assert b_looks_for_a["found"] == 0                                         # A's memory is not in B's
    # no guest reaches another guest, or a host socket it was not given, over vsock
    assert b_looks_for_a["peer_connect"] < 0 and b_looks_for_a["host_connect"] < 0


def test_metrics(running, lam, fn):
    invoke(lam, fn, {"metrics": 1})
    text = urllib.request.urlopen(f"{running.endpoint}/metrics", timeout=30).read().decode()
    lines = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line and not line.startswith("#")}
    assert lines[f'pyrite_function_invocations_total{{function="{fn}"}}'] >= 1
    assert lines[f'pyrite_function_errors_total{{function="{fn}"}}'] >= 1
    assert lines[f'pyrite_function_cold_starts_total{{function="{fn}"}}'] + \
        lines[f'pyrite_function_warm_starts_total{{function="{fn}"}}'] == \
        lines[f'pyrite_function_invocations_total{{function="{fn}"}}']
    assert lines[f'pyrite_function_duration_seconds{{function="{fn}",quantile="0.5"}}'] > 0
    assert f'pyrite_function_duration_seconds{{function="{fn}",quantile="0.99"}}' in lines


def test_failed_event_is_retried_twice(lam, running, fn):
    """As Lambda: an asynchronous invocation that fails runs twice more, then is dropped."""
    answer = lam.invoke(FunctionName=fn, InvocationType="Event", Payload=b'"fail"')
    request_id = answer["ResponseMetadata"]["RequestId"]
    deadline = time.monotonic() + 90
    while running.service.logs(fn).decode().count(f"START RequestId: {request_id}") < 3 \
            or running.service.queue.pending():
        assert time.monotonic() < deadline, "the failed Event invocation was not retried twice"
        time.sleep(0.1)
    time.sleep(0.5)
    assert running.service.logs(fn).decode().count(f"START RequestId: {request_id}") == 3
