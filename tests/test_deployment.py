"""The Kubernetes manifest (deploy/kubernetes/posevit.yaml) against the server it deploys: its environment
variables are real settings that validate, its probes are real routes, its port, user and volumes match the
image (Dockerfile). `make image-test` runs the same manifest with `podman kube play`."""

from __future__ import annotations

import re

import pytest
import yaml
from fastapi.routing import APIRoute

from posevit.core.config import ServeConfig
from posevit.core.settings import ENV_PREFIX, env_name
from posevit.serve.api import ROUTERS
from posevit.serve.app import parse_args
from posevit.serve.pointer import pointer_of
from posevit.serve.settings import load_settings
from tests.helpers import ROOT

MANIFEST = ROOT / "deploy" / "kubernetes" / "posevit.yaml"
NOT_SETTINGS = {"POSEVIT_API_KEYS", "POSEVIT_CACHE", "POSEVIT_USER", "POSEVIT_PASSWORD"}  # secrets and the cache


@pytest.fixture(scope="module")
def documents() -> dict[str, dict]:
    return {document["kind"]: document for document in yaml.safe_load_all(MANIFEST.read_text())}


@pytest.fixture(scope="module")
def container(documents) -> dict:
    (server,) = documents["Deployment"]["spec"]["template"]["spec"]["containers"]
    return server


def get_routes() -> set[str]:
    routes = [route for router in ROUTERS for route in router.routes if isinstance(route, APIRoute)]
    return {route.path for route in routes if "GET" in route.methods}


def test_the_settings_it_passes_are_the_servers_and_validate(container):
    values = {item["name"]: item.get("value") for item in container["env"]}
    posevit = {name for name in values if name.startswith(ENV_PREFIX)}
    settings_names = {env_name(name) for name in ServeConfig.model_fields}
    assert posevit - NOT_SETTINGS <= settings_names, posevit - NOT_SETTINGS - settings_names
    environ = {name: value for name, value in values.items() if name in settings_names and value is not None}
    settings = load_settings({}, environ=environ)
    assert settings.follow == 30 and settings.host == "0.0.0.0" and settings.backend == "openvino-int8"
    pointer = pointer_of(settings.model)
    assert pointer is not None and pointer.alias == "production"  # it follows an alias, as serve.follow needs
    secrets = [item for item in container["env"] if "valueFrom" in item]
    assert {item["name"] for item in secrets} == {
        "POSEVIT_API_KEYS",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL_S3",
    }
    assert all(item["valueFrom"]["secretKeyRef"]["optional"] for item in secrets)  # an IAM role needs none


def test_the_flags_in_its_comment_are_the_servers():
    args = re.search(r"args: (\[.*\])", MANIFEST.read_text())
    assert args is not None
    command = yaml.safe_load(args.group(1))
    assert command[:2] == ["python", "app.py"] and 'CMD ["python", "app.py"]' in (ROOT / "Dockerfile").read_text()
    _, settings = parse_args(command[2:])
    assert settings.follow == 30 and settings.model.endswith(":production")


def test_probes_ask_the_health_routes_on_the_served_port(container):
    port = {p["name"]: p["containerPort"] for p in container["ports"]}
    values = {item["name"]: item.get("value") for item in container["env"]}
    assert port["http"] == int(values["POSEVIT_PORT"]) == ServeConfig().port
    assert "EXPOSE 7860" in (ROOT / "Dockerfile").read_text()
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"]["path"] == "/health/ready" and probes["livenessProbe"]["path"] == "/health/live"
    assert {probe["path"] for probe in probes.values()} <= get_routes()
    assert {probe["port"] for probe in probes.values()} == {"http"}


def test_resources_user_and_volumes_fit_the_image(documents, container):
    pod = documents["Deployment"]["spec"]["template"]["spec"]
    assert documents["Deployment"]["spec"]["replicas"] >= 2
    assert {"cpu", "memory"} <= set(container["resources"]["requests"]) and "memory" in container["resources"]["limits"]
    assert f"--uid {pod['securityContext']['runAsUser']} posevit" in (ROOT / "Dockerfile").read_text()
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    values = {item["name"]: item.get("value") for item in container["env"]}
    assert values["POSEVIT_CACHE"] in mounts and "/tmp" in mounts  # writable, under a read-only root
    assert set(mounts.values()) <= {volume["name"] for volume in pod["volumes"]}
    labels = documents["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert documents["Service"]["spec"]["selector"].items() <= labels.items()
    assert documents["Service"]["spec"]["ports"][0]["targetPort"] == "http"
