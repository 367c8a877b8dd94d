"""The function service: Lambda's operations over the store, the builds and the instances.

Each operation takes and returns plain Python data (the JSON bodies Lambda's API carries);
pyrite.functions.http turns HTTP requests into calls here and LambdaError into answers.
"""
from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from pyrite.functions import errors, runtimes
from pyrite.functions.event_queue import EventQueue
from pyrite.functions.guest import InitError, snapshot_function
from pyrite.functions.instances import Build, InstanceManager
from pyrite.functions.metrics import Metrics
from pyrite.functions.protocol import InvokeContext
from pyrite.functions.store import FunctionRecord, Store

ACCOUNT = "000000000000"
LATEST = "$LATEST"
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024            # Lambda's request payload limit, synchronous
ASYNC_PAYLOAD_LIMIT = 256 * 1024                # and asynchronous
ZIP_LIMIT = 50 * 1024 * 1024                    # Lambda's direct upload limit (zipped)
ENV_LIMIT = 4096                                # Lambda's limit on all environment variables
TAIL_BYTES = 4096
JAIL_UID_BASE = 200000                          # functions' jail uids: one each, from here up
NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}\Z")
FUNCTION_REF = re.compile(r"(?:arn:aws[a-zA-Z-]*:lambda:[a-z0-9-]+:\d{12}:function:|\d{12}:function:)?"
                          r"([a-zA-Z0-9_-]{1,64})(?::([a-zA-Z0-9_$-]+))?\Z")
ENV_NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*\Z")


def _raise_fd_limit() -> None:
    """Every microVM holds a dozen fds (KVM, eventfds, sockets): take the hard limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class FunctionService:
    def __init__(self, state_dir: Path, region: str = "us-east-1", pool_size: int = 2, max_concurrency: int = 64,
                 async_workers: int = 2, on_report=None, endpoint: str = "", jail: bool | None = None,
                 jail_uid_base: int = JAIL_UID_BASE, max_running: int | None = None):
        """`jail`: run every clone under pyrite-jailer (default: when running as root); each
        function gets its own uid from `jail_uid_base` up."""
        from pyrite import kvm
        kvm.install_kick_handler()          # VMs are built on request threads; the handler needs the main one
        _raise_fd_limit()
        self.region = region
        self.endpoint = endpoint
        self.store = Store(state_dir)
        self.queue = EventQueue(Path(state_dir) / "queue")
        self.metrics = Metrics()
        self.jail = os.geteuid() == 0 if jail is None else jail
        self.jail_uid_base = jail_uid_base
        jail_base = None
        if self.jail:
            from pyrite.functions.jail import check_base, remove_stale_jails
            jail_base = Path(state_dir) / "jails"
            check_base(jail_base)
            jail_base.mkdir(parents=True, exist_ok=True)
            remove_stale_jails(jail_base)
        self.instances = InstanceManager(pool_size=pool_size, max_concurrency=max_concurrency, jail_base=jail_base,
                                         socket_dir=Path(state_dir) / "run", max_running=max_running)
        self.on_report = on_report
        self._lock = threading.Lock()
        self._records: dict[str, FunctionRecord] = {}
        self._updating: set[str] = set()
        self._uids_given: set[int] = set()
        self._stopping = threading.Event()
        for record in self.store.load_all():
            self._restore(record)
        self._workers = [threading.Thread(target=self._async_worker, name=f"functions-async-{i}", daemon=True)
                         for i in range(async_workers)]
        for worker in self._workers:
            worker.start()

    def _restore(self, record: FunctionRecord) -> None:
        """A function found in the state directory: serve its snapshot, remade if it is missing."""
        if not (self._build_of(record).state_path.exists() and self._build_of(record).mem_path.exists()):
            try:
                record = self._build(record, self.store.code_path(record.name).read_bytes())
                self.store.save(record)
            except (OSError, errors.LambdaError):
                return
        self._records[record.name] = record
        self.instances.activate(self._build_of(record))

    def _build_of(self, record: FunctionRecord) -> Build:
        return Build(record.name, record.build_id, self.store.build_dir(record.name, record.build_id),
                     record.jail_uid if self.jail else 0)

    def close(self) -> None:
        self._stopping.set()
        self.queue.wake()
        for worker in self._workers:
            worker.join(timeout=30)
        self.instances.close()

    # --------------------------------------------------------------- names and shapes
    def arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{ACCOUNT}:function:{name}"

    def _resolve(self, ref: str, qualifier: str | None = None) -> FunctionRecord:
        match = FUNCTION_REF.match(ref or "")
        if not match:
            raise errors.validation(f"1 validation error detected: Value '{ref}' at 'functionName' failed to satisfy "
                                    "constraint: Member must satisfy regular expression pattern: "
                                    "(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?"
                                    "(function:)?([a-zA-Z0-9-_]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?")
        name, version = match.group(1), match.group(2) or qualifier
        with self._lock:
            record = self._records.get(name)
        if record is None or version not in (None, "", LATEST):
            raise errors.function_not_found(self.arn(name) + (f":{version}" if version else ""))
        return record

    def configuration(self, r: FunctionRecord) -> dict:
        config = {
            "FunctionName": r.name, "FunctionArn": self.arn(r.name), "Runtime": r.runtime, "Role": r.role,
            "Handler": r.handler, "CodeSize": r.code_size, "Description": r.description, "Timeout": r.timeout,
            "MemorySize": r.memory_size, "LastModified": r.last_modified, "CodeSha256": r.code_sha256,
            "Version": LATEST, "TracingConfig": {"Mode": "PassThrough"}, "RevisionId": r.revision_id,
            "State": "Active", "LastUpdateStatus": "Successful", "PackageType": "Zip",
            "Architectures": ["x86_64"], "EphemeralStorage": {"Size": 512},
            "SnapStart": {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"},
        }
        if r.environment:
            config["Environment"] = {"Variables": dict(r.environment)}
        return config

    # --------------------------------------------------------------- validation
    def _check_settings(self, body: dict, record: FunctionRecord) -> FunctionRecord:
        """`record` with the configuration fields of `body` applied, each checked as Lambda does."""
        changes = {}
        if "Timeout" in body:
            timeout = body["Timeout"]
            if not isinstance(timeout, int) or not 1 <= timeout <= 900:
                raise errors.validation(f"1 validation error detected: Value '{timeout}' at 'timeout' failed to "
                                        "satisfy constraint: Member must have value between 1 and 900")
            changes["timeout"] = timeout
        if "MemorySize" in body:
            memory = body["MemorySize"]
            if not isinstance(memory, int) or not 128 <= memory <= 10240:
                raise errors.validation(f"1 validation error detected: Value '{memory}' at 'memorySize' failed to "
                                        "satisfy constraint: Member must have value between 128 and 10240")
            changes["memory_size"] = memory
        if "Environment" in body:
            variables = (body["Environment"] or {}).get("Variables") or {}
            for key, value in variables.items():
                if not ENV_NAME.match(key):
                    raise errors.validation(f"1 validation error detected: Value at 'environment.variables' failed "
                                            f"to satisfy constraint: Member must satisfy regular expression "
                                            f"pattern: [a-zA-Z]([a-zA-Z0-9_])+ (key {key!r})")
                if not isinstance(value, str) or any(c in value for c in '"\r\n\0'):
                    raise errors.invalid_parameter(f"environment variable {key}: its value cannot contain double "
                                                   "quotes, line breaks or NUL in a pyrite function")
            if len(json.dumps(variables)) > ENV_LIMIT:
                raise errors.invalid_parameter("Lambda was unable to configure your environment variables because "
                                               "the environment variables you have provided exceeded the 4KB limit.")
            changes["environment"] = dict(variables)
        for field, key in (("Description", "description"), ("Role", "role"), ("Handler", "handler")):
            if field in body:
                changes[key] = str(body[field])
        if "Runtime" in body:
            changes["runtime"] = runtimes.check_runtime(body["Runtime"])
        if body.get("PackageType", "Zip") != "Zip":
            raise errors.invalid_parameter("pyrite functions take Zip packages only (PackageType Image is not supported)")
        if body.get("Architectures", ["x86_64"]) != ["x86_64"]:
            raise errors.invalid_parameter("pyrite functions run on x86_64 only")
        return replace(record, **changes)

    @staticmethod
    def _zip_from(code: dict) -> bytes:
        if not isinstance(code, dict) or "ZipFile" not in code:
            other = ", ".join(sorted(code)) if isinstance(code, dict) else type(code).__name__
            raise errors.invalid_parameter(f"pyrite functions take their code as ZipFile (got {other}); "
                                           "S3 locations and container images are not supported")
        try:
            data = base64.b64decode(code["ZipFile"], validate=True)
        except (ValueError, TypeError):
            raise errors.invalid_parameter(runtimes.BAD_ZIP) from None
        if len(data) > ZIP_LIMIT:
            raise errors.LambdaError(413, "RequestEntityTooLargeException",
                                     f"Request must be smaller than {ZIP_LIMIT} bytes for the CreateFunction "
                                     f"operation (zip of {len(data)} bytes)")
        return data

    # --------------------------------------------------------------- builds
    def _build(self, record: FunctionRecord, code: bytes) -> FunctionRecord:
        """Build the image and take its snapshot; returns the record naming the new build."""
        build_id = uuid.uuid4().hex[:12]
        directory = self.store.build_dir(record.name, build_id)
        directory.mkdir(parents=True, exist_ok=True)
        if self.jail:
            record = replace(record, jail_uid=record.jail_uid or self._new_jail_uid())
        jail = None if not self.jail else (self.instances.jail_base, f"boot-{build_id}", record.jail_uid,
                                           record.jail_uid, self.instances.spawner)
        try:
            image = runtimes.build_image_for(record.runtime, record.handler, code, record.name, directory)
            used = snapshot_function(image, directory, record.memory_size, record.environment,
                                     self.instances.socket_path(), jail)
        except InitError as e:
            shutil.rmtree(directory, ignore_errors=True)
            raise errors.invalid_parameter(str(e)) from None
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        shutil.rmtree(directory / "code", ignore_errors=True)
        if self.jail:
            from pyrite.functions.jail import give_to
            give_to(record.jail_uid, record.jail_uid, directory / "vm.state", directory / "vm.mem")
        return replace(record, build_id=build_id, memory_used_mb=used, revision_id=str(uuid.uuid4()),
                       last_modified=_now_iso(), code_sha256=base64.b64encode(hashlib.sha256(code).digest()).decode(),
                       code_size=len(code))

    def _new_jail_uid(self) -> int:
        with self._lock:
            taken = {r.jail_uid for r in self._records.values()} | self._uids_given
            uid = self.jail_uid_base
            while uid in taken:
                uid += 1
            self._uids_given.add(uid)           # a concurrent create must not take it too
            return uid

    def _begin_update(self, name: str, creating: bool = False) -> None:
        with self._lock:
            if creating and name in self._records:
                raise errors.conflict(f"Function already exist: {name}")
            if name in self._updating:
                raise errors.conflict("The operation cannot be performed at this time. An update is in progress for "
                                      f"resource: {self.arn(name)}")
            self._updating.add(name)

    def _finish_update(self, record: FunctionRecord | None, name: str, code: bytes | None = None) -> None:
        with self._lock:
            self._updating.discard(name)
            if record is None:
                return
            self.store.save(record, code)
            self._records[name] = record
        self.instances.activate(self._build_of(record))
        self.store.remove_builds_except(name, record.build_id)

    # --------------------------------------------------------------- operations
    def create_function(self, body: dict) -> dict:
        name = body.get("FunctionName")
        if not isinstance(name, str) or not NAME.match(name):
            match = FUNCTION_REF.match(name or "") if isinstance(name, str) else None
            if not match or match.group(2):
                raise errors.validation(f"1 validation error detected: Value '{name}' at 'functionName' failed to "
                                        "satisfy constraint: Member must satisfy regular expression pattern: "
                                        "[a-zA-Z0-9-_]+ (1 to 64 characters)")
            name = match.group(1)
        if "Runtime" not in body:
            raise errors.invalid_parameter("Runtime is required for .zip deployment packages")
        code = self._zip_from(body.get("Code"))
        self._begin_update(name, creating=True)
        built = None
        try:
            record = self._check_settings(body, FunctionRecord(name=name, runtime=body["Runtime"],
                                                               handler=body.get("Handler", "handler"),
                                                               role=body.get("Role", "")))
            built = self._build(record, code)
        finally:
            self._finish_update(built, name, code)
        return self.configuration(built)

    def get_function(self, ref: str, qualifier: str | None = None) -> dict:
        record = self._resolve(ref, qualifier)
        answer = {"Configuration": self.configuration(record),
                  "Code": {"RepositoryType": "S3", "Location": f"{self.endpoint}/pyrite/functions/{record.name}/code"}}
        if record.reserved_concurrency is not None:
            answer["Concurrency"] = {"ReservedConcurrentExecutions": record.reserved_concurrency}
        return answer

    def get_function_configuration(self, ref: str, qualifier: str | None = None) -> dict:
        return self.configuration(self._resolve(ref, qualifier))

    def list_functions(self, marker: str | None = None, max_items: int | None = None) -> dict:
        with self._lock:
            records = sorted(self._records.values(), key=lambda r: r.name)
        start = int(marker) if marker and marker.isdigit() else 0
        count = max(1, min(max_items or 50, 10000))
        page = records[start:start + count]
        answer = {"Functions": [self.configuration(r) for r in page]}
        if start + count < len(records):
            answer["NextMarker"] = str(start + count)
        return answer

    def update_function_code(self, ref: str, body: dict) -> dict:
        record = self._resolve(ref)
        code = self._zip_from(body)
        self._check_revision(record, body)
        self._begin_update(record.name)
        updated = None
        try:
            updated = self._build(self._resolve(ref), code)
        finally:
            self._finish_update(updated, record.name, code)
        return self.configuration(updated)

    def update_function_configuration(self, ref: str, body: dict) -> dict:
        record = self._resolve(ref)
        self._check_revision(record, body)
        changed = self._check_settings(body, record)
        self._begin_update(record.name)
        updated = None
        try:
            code = self.store.code_path(record.name).read_bytes()
            updated = self._build(changed, code)      # memory, environment and handler are in the snapshot
        finally:
            self._finish_update(updated, record.name)
        return self.configuration(updated)

    @staticmethod
    def _check_revision(record: FunctionRecord, body: dict) -> None:
        if body.get("RevisionId") not in (None, record.revision_id):
            raise errors.LambdaError(412, "PreconditionFailedException", "The Revision Id provided does not match "
                                     "the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the "
                                     "latest Revision Id")

    def delete_function(self, ref: str, qualifier: str | None = None) -> None:
        record = self._resolve(ref, qualifier)
        with self._lock:
            if record.name in self._updating:
                raise errors.conflict(f"The operation cannot be performed at this time. An update is in progress "
                                      f"for resource: {self.arn(record.name)}")
            self._records.pop(record.name, None)
        self.instances.retire(record.name)
        self.metrics.forget(record.name)
        self.store.delete(record.name)

    def put_function_concurrency(self, ref: str, body: dict) -> dict:
        value = body.get("ReservedConcurrentExecutions")
        if not isinstance(value, int) or value < 0:
            raise errors.invalid_parameter(f"ReservedConcurrentExecutions {value!r}: expected an integer >= 0")
        if value > self.instances.max_concurrency:
            raise errors.invalid_parameter(f"Specified ReservedConcurrentExecutions for function exceeds the service's "
                                           f"concurrency limit of {self.instances.max_concurrency}.")
        self._set_concurrency(ref, value)
        return {"ReservedConcurrentExecutions": value}

    def get_function_concurrency(self, ref: str) -> dict:
        record = self._resolve(ref)
        return {} if record.reserved_concurrency is None else {"ReservedConcurrentExecutions": record.reserved_concurrency}

    def delete_function_concurrency(self, ref: str) -> None:
        self._set_concurrency(ref, None)

    def _set_concurrency(self, ref: str, value: int | None) -> None:
        record = self._resolve(ref)
        with self._lock:
            current = self._records.get(record.name, record)
            updated = replace(current, reserved_concurrency=value)
            self._records[record.name] = updated
            self.store.save(updated)

    def code_zip(self, ref: str) -> bytes:
        return self.store.code_path(self._resolve(ref).name).read_bytes()

    def logs(self, ref: str) -> bytes:
        return self.store.read_log(self._resolve(ref).name)

    # --------------------------------------------------------------- invoke
    def invoke(self, ref: str, payload: bytes, invocation_type: str = "RequestResponse", log_type: str = "None",
               qualifier: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of Lambda's Invoke."""
        record = self._resolve(ref, qualifier)
        if invocation_type not in ("RequestResponse", "Event", "DryRun"):
            raise errors.invalid_parameter(f"Unsupported InvocationType: {invocation_type}")
        limit = ASYNC_PAYLOAD_LIMIT if invocation_type == "Event" else SYNC_PAYLOAD_LIMIT
        if len(payload) > limit:
            raise errors.too_large(limit)
        payload = payload or b"{}"
        try:
            json.loads(payload)
        except ValueError as e:
            raise errors.invalid_request_content(f"Could not parse request body into json: {e}") from None
        request_id = str(uuid.uuid4())
        headers = {"x-amzn-RequestId": request_id}
        if invocation_type == "DryRun":
            return 204, headers, b""
        if invocation_type == "Event":
            self.queue.put(record.name, request_id, payload)
            self.metrics.count(record.name, "async_queued")
            return 202, headers, b""
        answer, log = self.run(record, request_id, payload)
        headers.update({"X-Amz-Executed-Version": LATEST, "Content-Type": "application/json"})
        if answer.function_error:
            headers["X-Amz-Function-Error"] = "Unhandled"
        if log_type == "Tail":
            headers["X-Amz-Log-Result"] = base64.b64encode(log[-TAIL_BYTES:]).decode()
        return 200, headers, answer.payload

    def run(self, record: FunctionRecord, request_id: str, payload: bytes):
        """Run one invocation: (Outcome, its log text); raises LambdaError 429 when throttled."""
        ctx = InvokeContext(request_id, record.name, LATEST, self.arn(record.name), record.memory_size,
                            record.timeout * 1_000_000)
        try:
            invocation = self.instances.invoke(record.name, record.reserved_concurrency, ctx, payload,
                                               float(record.timeout))
        except errors.LambdaError as e:
            if e.status == 429:
                self.metrics.count(record.name, "throttles")
            raise
        outcome = invocation.outcome
        self.metrics.invoked(record.name, outcome.duration, outcome.function_error, invocation.warm,
                             outcome.kind == "timeout")
        log = self._log_text(record, request_id, invocation)
        self.store.append_log(record.name, log)
        if self.on_report:
            self.on_report(record.name, log.rsplit(b"\n", 2)[-2].decode(errors="replace"))
        return outcome, log

    @staticmethod
    def _log_text(record: FunctionRecord, request_id: str, invocation) -> bytes:
        outcome = invocation.outcome
        lines = [f"START RequestId: {request_id} Version: {LATEST}\n".encode(), outcome.log]
        if outcome.log and not outcome.log.endswith(b"\n"):
            lines.append(b"\n")
        if outcome.dropped_log:
            lines.append(f"[pyrite: {outcome.dropped_log} bytes of output dropped]\n".encode())
        if outcome.kind in ("timeout", "exit", "too_large", "protocol"):
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            lines.append(f"{stamp} {request_id} {json.loads(outcome.payload)['errorMessage']}\n".encode())
        ms = outcome.duration * 1000
        report = (f"REPORT RequestId: {request_id}\tDuration: {ms:.2f} ms\tBilled Duration: {max(1, math.ceil(ms))} ms"
                  f"\tMemory Size: {record.memory_size} MB\tMax Memory Used: {record.memory_used_mb} MB")
        if not invocation.warm:
            report += f"\tRestore Duration: {invocation.restore_seconds * 1000:.2f} ms"
        lines += [f"END RequestId: {request_id}\n".encode(), (report + "\t\n").encode()]
        return b"".join(lines)

    # --------------------------------------------------------------- asynchronous invocations
    def _async_worker(self) -> None:
        while not self._stopping.is_set():
            item = self.queue.take(timeout=0.5)
            if item is None:
                continue
            name, entry = item
            with self._lock:
                record = self._records.get(entry["function"])
            if record is None:
                self.queue.done(name)               # the function is gone: nothing to run it in
                continue
            try:
                outcome, _ = self.run(record, entry["request_id"], base64.b64decode(entry["payload"]))
            except errors.LambdaError as e:
                if e.status == 429:                 # throttled: the event waits for its turn, uncounted
                    time.sleep(0.05)
                    entry = dict(entry, attempts=entry["attempts"] - 1)
                self.queue.retry(name, entry)
                continue
            except Exception:
                self.queue.retry(name, entry)
                continue
            if outcome.function_error:
                self.queue.retry(name, entry)
            else:
                self.queue.done(name)

