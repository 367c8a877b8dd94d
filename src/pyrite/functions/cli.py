"""`pyrite functions`: the service (serve) and its clients (deploy, invoke, ls, logs, rm)."""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import signal
import sys
import threading
import zipfile
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:9001"
DEFAULT_STATE = Path(os.environ.get("PYRITE_FUNCTIONS_STATE", Path.home() / ".pyrite" / "functions"))
DEFAULT_ENDPOINT = os.environ.get("PYRITE_FUNCTIONS_ENDPOINT", f"http://{DEFAULT_LISTEN}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrite functions", description="A Lambda-compatible function service: each "
                                "invocation in its own microVM, restored from the function's snapshot.")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service (Lambda's REST API)")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HOST:PORT (default {DEFAULT_LISTEN}, loopback)")
    serve.add_argument("--state-dir", type=Path, default=DEFAULT_STATE, help=f"default {DEFAULT_STATE}")
    serve.add_argument("--credentials", type=Path, help="AWS shared-credentials file with the accepted keys "
                       "(default: STATE_DIR/credentials, made on first start)")
    serve.add_argument("--region", default="us-east-1")
    serve.add_argument("--pool-size", type=int, default=2, help="warm clones kept per function (default 2)")
    serve.add_argument("--max-concurrency", type=int, default=64, help="invocations at once, all functions")
    serve.add_argument("--max-running", type=int, default=None,
                       help="microVMs running at once (default: 2 per CPU); admitted invocations wait their turn")
    serve.add_argument("--async-workers", type=int, default=2,
                       help="threads running queued Event invocations (0: queue only)")
    serve.add_argument("--quiet", action="store_true", help="do not print REPORT lines")
    serve.add_argument("--jail", action=argparse.BooleanOptionalAction, default=None,
                       help="run every microVM under pyrite-jailer (default: when running as root)")
    for name, text in (("deploy", "create a function, or update its code"), ("invoke", "invoke a function"),
                       ("ls", "list functions"), ("logs", "print a function's log"), ("rm", "delete a function")):
        c = sub.add_parser(name, help=text)
        c.add_argument("--endpoint", default=DEFAULT_ENDPOINT, help=f"default {DEFAULT_ENDPOINT}")
        c.add_argument("--credentials", type=Path, help="AWS shared-credentials file (default: the service's, "
                       f"{DEFAULT_STATE}/credentials, else ~/.aws/credentials)")
        c.add_argument("--profile", default="default")
        c.add_argument("--region", default="us-east-1")
        if name == "deploy":
            c.add_argument("path", type=Path, help="a directory, a .zip, or one .c file")
            c.add_argument("--name", required=True)
            c.add_argument("--runtime", default=None, help="provided (default for C) or python3.x")
            c.add_argument("--handler", default="handler")
            c.add_argument("--memory", type=int, default=128, help="MiB")
            c.add_argument("--timeout", type=int, default=3, help="seconds")
            c.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
        elif name in ("invoke", "logs", "rm"):
            c.add_argument("name")
        if name == "invoke":
            c.add_argument("--payload", default="{}", help="the event (JSON)")
            c.add_argument("--async", dest="event", action="store_true", help="InvocationType Event")
            c.add_argument("--tail", action="store_true", help="print the invocation's log too")
    return p


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    from pyrite.functions.client import ClientError
    try:
        return COMMANDS[args.command](_client(args), args)
    except ClientError as e:
        print(f"pyrite functions {args.command}: {e}", file=sys.stderr)
        return 1


def _credentials(path: Path | None, profile: str) -> tuple[str, str]:
    from pyrite.functions.credentials import CredentialsError, load
    candidates = [path] if path else [DEFAULT_STATE / "credentials", Path.home() / ".aws" / "credentials"]
    for candidate in candidates:
        if candidate.exists() or path:
            try:
                profiles = load(candidate)
            except CredentialsError as e:
                raise SystemExit(f"pyrite functions: {e}")
            if profile not in profiles:
                raise SystemExit(f"pyrite functions: {candidate}: no profile [{profile}]")
            return profiles[profile]["aws_access_key_id"], profiles[profile]["aws_secret_access_key"]
    raise SystemExit("pyrite functions: no credentials: give --credentials FILE (the service says where it made one)")


def _client(args):
    from pyrite.functions.client import Client
    key, secret = _credentials(args.credentials, args.profile)
    return Client(args.endpoint, key, secret, args.region)


def serve(args) -> int:
    from pyrite.functions import credentials
    from pyrite.functions.rest import Api, make_server
    from pyrite.functions.service import FunctionService
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"pyrite functions serve: --listen {args.listen!r}: expected HOST:PORT", file=sys.stderr)
        return 2
    args.state_dir.mkdir(parents=True, exist_ok=True)
    creds_path = args.credentials or args.state_dir / "credentials"
    if args.credentials is None and not creds_path.exists():
        credentials.create(creds_path)
        print(f"pyrite functions: made credentials in {creds_path} (profile [default]); point your clients at it, "
              f"e.g. AWS_SHARED_CREDENTIALS_FILE={creds_path}", flush=True)
    try:
        secrets = credentials.secrets_by_key(credentials.load(creds_path))
    except credentials.CredentialsError as e:
        print(f"pyrite functions serve: {e}", file=sys.stderr)
        return 2
    report = None if args.quiet else (lambda name, line: print(f"[{name}] {line}", flush=True))
    endpoint = f"http://{host}:{port}"
    service = FunctionService(args.state_dir, region=args.region, pool_size=args.pool_size,
                              max_concurrency=args.max_concurrency, async_workers=args.async_workers,
                              on_report=report, endpoint=endpoint, jail=args.jail, max_running=args.max_running)
    try:
        server = make_server(Api(service, secrets), host, int(port))
    except OSError as e:
        service.close()
        print(f"pyrite functions serve: cannot listen on {args.listen}: {e}", file=sys.stderr)
        return 2
    print(f"pyrite functions: serving Lambda's API on http://{host}:{server.server_address[1]} "
          f"(state in {args.state_dir})", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    import faulthandler
    faulthandler.register(signal.SIGUSR2, all_threads=True)     # `kill -USR2 PID`: every thread's stack
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        service.close()
    return 0


def _zip(path: Path) -> bytes:
    if path.is_file() and path.suffix == ".zip":
        return path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if path.is_file():
            archive.write(path, path.name)
        elif path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                archive.write(file, file.relative_to(path).as_posix())
        else:
            raise SystemExit(f"pyrite functions deploy: {path}: no such file or directory")
    return buffer.getvalue()


def _guess_runtime(path: Path) -> str:
    files = [path] if path.is_file() else list(path.rglob("*"))
    return "python3.12" if any(f.suffix == ".py" for f in files) else "provided"


def cmd_deploy(client, args) -> int:
    from pyrite.functions.client import ClientError
    code = base64.b64encode(_zip(args.path)).decode()
    env = dict(item.split("=", 1) for item in args.env if "=" in item)
    settings = {"Runtime": args.runtime or _guess_runtime(args.path), "Handler": args.handler,
                "MemorySize": args.memory, "Timeout": args.timeout, "Environment": {"Variables": env}}
    try:
        config = client.call("POST", "/2015-03-31/functions", {"FunctionName": args.name, "Role": "pyrite",
                                                               "Code": {"ZipFile": code}, **settings})
        action = "created"
    except ClientError as e:
        if e.code != "ResourceConflictException":
            raise
        client.call("PUT", client.function_path(args.name, "/configuration"), settings)
        config = client.call("PUT", client.function_path(args.name, "/code"), {"ZipFile": code})
        action = "updated"
    print(f"{action} {config['FunctionArn']} ({config['Runtime']}, {config['CodeSize']} bytes, "
          f"sha256 {config['CodeSha256']})")
    return 0


def cmd_invoke(client, args) -> int:
    headers = {"X-Amz-Invocation-Type": "Event" if args.event else "RequestResponse"}
    if args.tail:
        headers["X-Amz-Log-Type"] = "Tail"
    status, answer, body = client.request("POST", client.function_path(args.name, "/invocations"),
                                          args.payload.encode(), headers)
    if args.tail and "x-amz-log-result" in answer:
        sys.stderr.write(base64.b64decode(answer["x-amz-log-result"]).decode(errors="replace"))
    if status == 202:
        print(f"queued (request {answer.get('x-amzn-requestid')})")
        return 0
    sys.stdout.write(body.decode(errors="replace") + "\n")
    return 1 if "x-amz-function-error" in answer else 0


def cmd_ls(client, args) -> int:
    marker = ""
    while True:
        _, _, data = client.request("GET", "/2015-03-31/functions/", query=f"Marker={marker}" if marker else "")
        page = json.loads(data)
        for f in page.get("Functions", []):
            print(f"{f['FunctionName']:<32} {f['Runtime']:<16} {f['MemorySize']:>6} MB {f['Timeout']:>4} s  "
                  f"{f['LastModified']}")
        marker = page.get("NextMarker")
        if not marker:
            return 0


def cmd_logs(client, args) -> int:
    _, _, data = client.request("GET", client.function_path(args.name, "/logs", version="pyrite"))
    sys.stdout.write(data.decode(errors="replace"))
    return 0


def cmd_rm(client, args) -> int:
    client.request("DELETE", client.function_path(args.name))
    print(f"deleted {args.name}")
    return 0


COMMANDS = {"deploy": cmd_deploy, "invoke": cmd_invoke, "ls": cmd_ls, "logs": cmd_logs, "rm": cmd_rm}
