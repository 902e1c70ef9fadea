"""`make image-test`: build the server's container image, run it, and ask it for a prediction.

There is no Docker engine on these machines; Debian's podman and runc build and run the same
Dockerfile as root. The base image is bootstrapped from Debian's packages once
(`mmdebstrap ... bookworm`, then `podman import`) and passed as `--build-arg BASE`. The build
mounts the host's CA certificates and pip configuration read-only, as any build behind a proxy
needs. The image is the default one (posevit[serve] from requirements/serve.txt: ONNX Runtime, no
PyTorch); the test checks that torch and params.yaml are indeed absent. Two versions of a small bundle
and their ONNX exports are published to a SeaweedFS on the host's loopback, the first one promoted to
`production`. The server then runs as a cluster would run it: `podman kube play` on the Kubernetes
manifest itself (deploy/kubernetes/posevit.yaml), changed only where one machine differs from a
cluster (the image's local name, host networking since the S3 server listens on loopback, one replica
on a free port, a 1 s follow, the credentials as values instead of a Secret's; the file holding them is
private and never logged). It waits for the image's own HEALTHCHECK command (`/health/ready`), posts a
photo to `/v1/predict`, checks the version it served, promotes the second version and waits for the
pod to swap it in with no restart, and removes the pod and the S3 server whatever happened.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from PIL import Image

from posevit.core.errors import PosevitError
from posevit.core.hashing import hash_directory
from posevit.devtools.local_s3 import LocalS3, free_port
from posevit.publish.aliases import move_alias, read_pointer
from posevit.publish.registry import ModelAddress, publish

BASE_IMAGE = "localhost/posevit-base"
IMAGE = "localhost/posevit-app:test"
STORAGE = ["--storage-driver=vfs", "--runtime", "runc"]
RUNTIME = ["--network=host", "--cgroup-manager=cgroupfs", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]
READ_ONLY_HOST_FILES = ["/etc/ssl/certs:/etc/ssl/certs:ro", "/etc/pip.conf:/etc/pip.conf:ro"]
ADDRESS = ModelAddress("posevit-models", "registry", "posevit")  # the image's default POSEVIT_MODEL's
MANIFEST = Path("deploy/kubernetes/posevit.yaml")
ALIAS = "production"  # what the manifest's pods follow
# `podman run --ulimit` for the pods of `kube play`, which has no such flag: podman reads it from this file.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'


class ImageTestError(PosevitError):
    pass


def podman(
    *args: str, check: bool = True, capture: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`env`: variables for podman itself (`-e NAME` passes one through without its value on the command line)."""
    command = ["podman", *STORAGE, *args]
    print("+", " ".join(command), flush=True)
    result = subprocess.run(command, text=True, capture_output=capture, env={**os.environ, **(env or {})})
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
    """models/ (a small bundle) and exports/ (its ONNX files and OpenVINO IRs: the image serves openvino-int8) in
    `directory`, readable by any user."""
    import numpy as np

    from posevit.core.config import ExportConfig, ModelConfig
    from posevit.core.labels import ACTION_CLASSES
    from posevit.export.onnx import FP32_FILE, INT8_FILE, export_onnx, quantize_int8
    from posevit.export.openvino_ir import FP32_IR, INT8_IR, quantize_static_int8, write_fp32_ir
    from posevit.models.bundle import load_bundle, save_bundle
    from posevit.models.bundle_config import BundleConfig
    from posevit.models.factory import create_model
    from posevit.models.transforms import model_data_config

    model = create_model(ModelConfig(name="vit_convstem_tiny"), num_classes=len(ACTION_CLASSES)).eval()
    models = directory / "models"
    save_bundle(
        models,
        model,
        BundleConfig(model_name="vit_convstem_tiny", labels=list(ACTION_CLASSES), data_config=model_data_config(model)),
    )
    exports = directory / "exports"
    exports.mkdir()
    bundle, cfg = load_bundle(models), ExportConfig()
    fp32 = export_onnx(bundle, exports / FP32_FILE, cfg.opset)
    quantize_int8(fp32, exports / INT8_FILE)
    write_fp32_ir(bundle, fp32, ir := exports / FP32_IR, cfg.opset, cfg.openvino_token_split)
    side = model_data_config(model)["input_size"][-1]
    noise = [np.random.default_rng(i).standard_normal((1, 3, side, side), dtype=np.float32) for i in range(8)]
    quantize_static_int8(ir, exports / INT8_IR, noise, np.asarray, len(noise), cfg.smooth_quant_alpha)
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the image's non-root user
    return directory


def check_image() -> str:
    """The default image serves ONNX alone and is told its model by URI: neither torch nor a params.yaml may be in
    it. Returns the image's size."""
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)"
    if podman("run", "--rm", *RUNTIME, IMAGE, "python", "-c", probe, check=False).returncode != 0:
        raise ImageTestError(f"{IMAGE} has torch installed: the default image must install requirements/serve.txt")
    find = ("find", "/", "-xdev", "-name", "params.yaml")
    found = podman("run", "--rm", "--user", "0", *RUNTIME, IMAGE, *find, capture=True)
    if found.stdout.strip():
        raise ImageTestError(f"{IMAGE} holds {found.stdout.split()}: serving must not need the pipeline's config")
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE, capture=True).stdout.strip())
    return f"{size / 1e9:.2f} GB"


def publish_tiny_model(s3: LocalS3, directory: Path) -> str:
    """A small bundle (new random weights each time) and its exports, published to `s3` as the push stage would;
    returns its version."""
    directory.mkdir(parents=True)
    published = write_tiny_bundle(directory)
    version = hash_directory(published / "models")
    files = {
        p.relative_to(published).as_posix(): p
        for folder in ("models", "exports")
        for p in (published / folder).rglob("*")
        if p.is_file()
    }
    s3.create_buckets([ADDRESS.bucket])
    publish(s3.client(), ADDRESS, version, files, progress=False)
    return version


def promote(s3: LocalS3, version: str) -> None:
    _, etag = read_pointer(s3.client(), ADDRESS, ALIAS)
    move_alias(s3.client(), ADDRESS, ALIAS, version, by="image-test", message="image test", expected_etag=etag)


def local_manifest(manifest: Path, port: int, s3: LocalS3) -> tuple[str, str]:
    """The manifest as this one machine can run it: (its YAML, the server container's name in podman)."""
    documents = list(yaml.safe_load_all(manifest.read_text()))
    deployment = next(document for document in documents if document["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1  # on the host's network two pods would want the same port
    pod = deployment["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    (server,) = pod["containers"]
    server["image"] = IMAGE
    del server["ports"]  # host networking maps no ports
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        server[probe]["httpGet"]["port"] = port
    key, secret = s3.credentials()
    values = {
        "POSEVIT_HOST": "127.0.0.1",
        "POSEVIT_PORT": str(port),
        "POSEVIT_FOLLOW": "1",
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
    }
    server["env"] = [
        {"name": item["name"], "value": values[item["name"]]} if item["name"] in values else item
        for item in server["env"]
        if item["name"] in values or "valueFrom" not in item  # no Secret here (the API keys stay unset)
    ]
    return yaml.safe_dump_all(documents), f"{deployment['metadata']['name']}-pod-0-{server['name']}"


def container_log(container: str) -> str:
    """What the container printed: the server logs to stderr, so both streams."""
    logs = podman("logs", container, check=False, capture=True)
    return logs.stdout + logs.stderr


def wait_healthy(container: str, timeout: float = 300) -> None:
    """The image's own HEALTHCHECK command, run in the container until it passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if podman("exec", container, "python", "app.py", "--healthcheck", check=False, capture=True).returncode == 0:
            return
        state = podman("inspect", "--format", "{{.State.Status}}", container, check=False, capture=True).stdout.strip()
        if state not in ("running", "created"):
            raise ImageTestError(f"the container stopped ({state}):\n{container_log(container)}")
        time.sleep(3)
    raise ImageTestError(f"not healthy within {timeout:.0f} s:\n{container_log(container)}")


def predict(port: int) -> httpx.Response:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (180, 120, 60)).save(buffer, format="JPEG")
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/predict", files={"file": ("photo.jpg", buffer.getvalue())}, timeout=60
    )
    if response.status_code != 200:
        raise ImageTestError(f"/v1/predict answered {response.status_code}: {response.text}")
    return response


def wait_for_version(port: int, version: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        card = httpx.get(f"http://127.0.0.1:{port}/v1/model", timeout=10).json()
        if card["version"] == version:
            return card
        if time.monotonic() > deadline:
            raise ImageTestError(f"the pod did not swap in version {version} within {timeout:.0f} s: {card['follow']}")
        time.sleep(0.5)


def play_and_predict(s3: LocalS3, context: Path, versions: list[str]) -> dict:
    """The manifest's pod on the first version; a promotion of the second one reaches it with no restart."""
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        manifest, container = local_manifest(context / MANIFEST, port, s3)
        kube_file = Path(directory) / "posevit.yaml"
        kube_file.touch(mode=0o600)  # it holds the test S3 server's credentials
        kube_file.write_text(manifest)
        (Path(directory) / "containers.conf").write_text(CONTAINERS_CONF)
        conf = {"CONTAINERS_CONF": str(Path(directory) / "containers.conf")}
        podman("--cgroup-manager=cgroupfs", "kube", "play", "--network", "host", str(kube_file), env=conf)
        try:
            wait_healthy(container)
            answer = predict(port).json()
            card = wait_for_version(port, versions[0], timeout=0)
            promote(s3, versions[1])
            swapped = wait_for_version(port, versions[1])
            after = predict(port)
            if after.headers.get("x-model-version") != versions[1]:
                raise ImageTestError(f"after the promotion /v1/predict was answered by {after.headers}")
            restarts = podman("inspect", "--format", "{{.RestartCount}}", container, capture=True).stdout.strip()
        finally:
            podman("--cgroup-manager=cgroupfs", "kube", "down", str(kube_file), check=False, env=conf)
    served = {name: card.get(name) for name in ("version", "alias", "source", "backend")}
    return {**answer, "served": served, "swapped": swapped["follow"]["last_swap"], "restarts": restarts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context", type=Path, default=Path("."), help="the build context (the project root)")
    parser.add_argument("--keep", action="store_true", help=f"keep {IMAGE} afterwards (~1 GB)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        ensure_base()
        build(args.context)
        size = check_image()
        with tempfile.TemporaryDirectory() as directory:
            s3 = LocalS3(Path(directory) / "s3", free_port())
            s3.start()
            try:
                versions = [publish_tiny_model(s3, Path(directory) / f"published-{i}") for i in (1, 2)]
                promote(s3, versions[0])
                answer = play_and_predict(s3, args.context, versions)
            finally:
                s3.stop()
        if (answer["served"]["version"], answer["served"]["alias"]) != (versions[0], ALIAS):
            raise ImageTestError(f"the pod served {answer['served']}, not {ALIAS} = {versions[0]}")
        if answer["restarts"] != "0":
            raise ImageTestError(f"the pod restarted {answer['restarts']} times")
    except (PosevitError, subprocess.CalledProcessError) as exc:
        print(f"image test failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:  # vfs storage keeps whole copies: do not let repeated runs fill the disk
            podman("rmi", "-f", IMAGE, check=False)
            podman("image", "prune", "-f", check=False)
    print(json.dumps(answer))
    print(
        f"image test passed in {time.monotonic() - started:.0f} s: built {IMAGE} ({size}, no torch, no params.yaml), "
        f"ran {MANIFEST} with podman kube play, healthy, served {answer['served']['source']} ({ALIAS}), "
        f"/v1/predict answered {answer['predictions'][0]['label']}, then swapped in the promoted "
        f"{answer['swapped']['to']} with no restart"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
