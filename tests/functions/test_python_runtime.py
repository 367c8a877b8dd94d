"""python3.x functions: the MicroPython unikernel with handler.py's def handler(event, context),
driven with boto3 as a Lambda user would."""
from __future__ import annotations

import base64
import json
import time

import pytest
from botocore.exceptions import ClientError

from lambda_service import HANDLERS, create, requirements, zip_of

pytestmark = requirements
SOURCES = HANDLERS / "python"


def python_zip(**replace: str) -> bytes:
    files = {}
    for path in SOURCES.glob("*.py"):
        text = path.read_text()
        for old, new in replace.items():
            text = text.replace(old, new)
        files[path.name] = text
    return zip_of(files)


@pytest.fixture(scope="module")
def pyfn(lam):
    create(lam, "pyfn", python_zip(), Runtime="python3.12", Handler="handler.handler",
           Environment={"Variables": {"GREETING": "hello from python"}})
    return "pyfn"


def invoke(lam, event, **kw):
    answer = lam.invoke(FunctionName="pyfn", Payload=json.dumps(event), **kw)
    return answer, answer["Payload"].read()


def test_sync_invocations_each_from_the_snapshot(lam, pyfn):
    for n in (1, 2):
        answer, body = invoke(lam, {"n": n})
        assert answer["StatusCode"] == 200 and "FunctionError" not in answer
        assert json.loads(body) == {"version": "py1", "calls": 101, "event": {"n": n}, "double": 2 * n,
                                    "function": "pyfn", "memory": 128, "remaining_ok": True}
    assert json.loads(invoke(lam, "env")[1]) == {"GREETING": "hello from python"}


def test_tail_dry_run_and_event(lam, running, pyfn):
    answer, _ = invoke(lam, {"n": 0}, LogType="Tail")
    log = base64.b64decode(answer["LogResult"]).decode()
    assert f"handling {answer['ResponseMetadata']['RequestId']}" in log and "REPORT RequestId:" in log
    assert lam.invoke(FunctionName=pyfn, InvocationType="DryRun")["StatusCode"] == 204
    queued = lam.invoke(FunctionName=pyfn, InvocationType="Event", Payload=b'{"n": 5}')
    assert queued["StatusCode"] == 202
    deadline = time.monotonic() + 60
    while f"handling {queued['ResponseMetadata']['RequestId']}" not in running.service.logs(pyfn).decode():
        assert time.monotonic() < deadline, "the Event invocation never ran"
        time.sleep(0.1)


def test_exception_is_the_function_error(lam, pyfn):
    answer, body = invoke(lam, "fail", LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    assert json.loads(body) == {"errorMessage": "asked to fail", "errorType": "ValueError"}
    log = base64.b64decode(answer["LogResult"]).decode()
    assert "Traceback" in log and 'handler.py", line' in log


def test_update_code(lam, pyfn):
    lam.update_function_code(FunctionName=pyfn, ZipFile=python_zip(**{'"py1"': '"py2"'}))
    assert json.loads(invoke(lam, {"n": 3})[1])["version"] == "py2"


def test_broken_python_is_refused(lam):
    with pytest.raises(ClientError) as e:
        create(lam, "pysyntax", zip_of({"handler.py": "def handler(event, context)\n    return 1\n"}),
               Runtime="python3.11", Handler="handler.handler")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "handler.py" in str(e.value)
    with pytest.raises(ClientError) as e:
        create(lam, "pymissing", zip_of({"other.py": "x = 1\n"}), Runtime="python3.13", Handler="handler.handler")
    assert "no module 'handler'" in str(e.value)
    with pytest.raises(ClientError) as e:
        create(lam, "pyinit", zip_of({"handler.py": "raise RuntimeError('init fails')\n"
                                                     "def handler(event, context):\n    return 1\n"}),
               Runtime="python3.12", Handler="handler.handler")
    assert "did not initialise" in str(e.value) and "init fails" in str(e.value)
