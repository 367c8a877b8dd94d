# A python3.x function for the service's tests. Module-level code is the init phase: it runs
# once, before the snapshot, so every invocation starts with calls == 100.
import os

import helper

calls = 100
VERSION = "py1"


def handler(event, context):
    global calls
    calls += 1
    print("handling", context.aws_request_id)
    if event == "fail":
        raise ValueError("asked to fail")
    if event == "env":
        return {"GREETING": os.environ.get("GREETING")}
    return {"version": VERSION, "calls": calls, "event": event, "double": helper.double(event.get("n", 0)),
            "function": context.function_name, "memory": context.memory_limit_in_mb,
            "remaining_ok": 0 < context.get_remaining_time_in_millis() <= context_timeout_ms()}


def context_timeout_ms():
    return int(os.environ.get("TIMEOUT_MS", "3000"))
