"""`make image-test`: build the server's container image, run it, and ask it for a prediction.

There is no Docker engine on these machines; Debian's podman and runc build and run the same
Dockerfile as root. The base image is bootstrapped from Debian's packages once
(`mmdebstrap ... bookworm`, then `podman import`) and passed as `--build-arg BASE`. The build
mounts the host's CA certificates and pip configuration read-only, as any build behind a proxy
needs. The container serves a small bundle mounted read-only, on the host's loopback; the test
waits for the image's own HEALTHCHECK (`/health/ready`), posts a photo to `/v1/predict`, and
removes the container whatever happened.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from posevit.core.errors import PosevitError
from posevit.devtools.local_s3 import free_port

BASE_IMAGE = "localhost/posevit-base"
IMAGE = "localhost/posevit-app:test"
STORAGE = ["--storage-driver=vfs", "--runtime", "runc"]
RUNTIME = ["--network=host", "--cgroup-manager=cgroupfs", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
READ_ONLY_HOST_FILES = ["/etc/ssl/certs:/etc/ssl/certs:ro", "/etc/pip.conf:/etc/pip.conf:ro"]


class ImageTestError(PosevitError):
    pass


def podman(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    command = ["podman", *STORAGE, *args]
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, text=True, capture_output=capture)
    if check and result.returncode != 0:
        raise ImageTestError(f"`{' '.join(command)}` failed ({result.returncode}): {result.stderr or ''}")
    return result


def ensure_base() -> None:
    if podman("image", "exists", BASE_IMAGE, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as directory:
        tarball = Path(directory) / "base.tar"
        subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(tarball),
            ],
            check=True,
        )
        podman("import", str(tarball), BASE_IMAGE)


def build(context: Path) -> None:
    volumes = [arg for mount in READ_ONLY_HOST_FILES for arg in ("-v", mount)]
    # --layers=false: one commit at the end (vfs copies the whole tree for every layer it keeps).
    podman(
        "build",
        "--format",
        "docker",
        "--layers=false",
        *RUNTIME,
        *volumes,
        "--build-arg",
        f"BASE={BASE_IMAGE}",
        "-t",
        IMAGE,
        str(context),
    )


def write_tiny_bundle(directory: Path) -> Path:
    from posevit.core.config import ModelConfig
    from posevit.core.labels import ACTION_CLASSES
    from posevit.models.bundle import BundleConfig, save_bundle
    from posevit.models.factory import create_model
    from posevit.models.transforms import model_data_config

    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=len(ACTION_CLASSES)).eval()
    save_bundle(
        directory,
        model,
        BundleConfig(model_name="vit_convstem_tiny", labels=list(ACTION_CLASSES), data_config=model_data_config(model)),
    )
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)  # readable by the image's non-root user
    return directory


def wait_healthy(container: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if podman("healthcheck", "run", container, check=False, capture=True).returncode == 0:
            return
        state = podman("inspect", "--format", "{{.State.Status}}", container, capture=True).stdout.strip()
        if state not in ("running", "created"):
            raise ImageTestError(f"the container stopped ({state}):\n{podman('logs', container, capture=True).stdout}")
        time.sleep(3)
    raise ImageTestError(f"not healthy within {timeout:.0f} s:\n{podman('logs', container, capture=True).stdout}")


def run_and_predict(bundle: Path) -> dict:
    port = free_port()
    container = f"posevit-image-test-{port}"
    podman(
        "run",
        "-d",
        "--name",
        container,
        *RUNTIME,
        "-v",
        f"{bundle}:/models:ro",
        "-e",
        "POSEVIT_MODEL=/models",
        "-e",
        "POSEVIT_HOST=127.0.0.1",
        "-e",
        f"POSEVIT_PORT={port}",
        IMAGE,
    )
    try:
        wait_healthy(container)
        buffer = io.BytesIO()
        Image.new("RGB", (640, 480), (180, 120, 60)).save(buffer, format="JPEG")
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/predict", files={"file": ("photo.jpg", buffer.getvalue())}, timeout=60
        )
        if response.status_code != 200:
            raise ImageTestError(f"/v1/predict answered {response.status_code}: {response.text}")
        return response.json()
    finally:
        podman("rm", "-f", container, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=Path, default=Path("."), help="the build context (the project root)")
    parser.add_argument("--keep", action="store_true", help=f"keep {IMAGE} afterwards (it takes ~7 GB)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        ensure_base()
        build(args.context)
        with tempfile.TemporaryDirectory() as directory:
            Path(directory).chmod(0o755)
            answer = run_and_predict(write_tiny_bundle(Path(directory) / "models"))
    except (PosevitError, subprocess.CalledProcessError) as exc:
        print(f"image test failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:  # vfs storage keeps whole copies: do not let repeated runs fill the disk
            podman("rmi", "-f", IMAGE, check=False)
            podman("image", "prune", "-f", check=False)
    print(json.dumps(answer))
    print(
        f"image test passed in {time.monotonic() - started:.0f} s: built {IMAGE}, healthy, /v1/predict answered "
        f"{answer['predictions'][0]['label']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
