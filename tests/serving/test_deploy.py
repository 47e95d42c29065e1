"""deploy/: the Kubernetes manifests are valid against the Kubernetes schemas (offline, with the
`kubernetes-validate` package), and the container's command, port, probes and variables agree with
`pretrained serve`'s flags and endpoints."""

from __future__ import annotations

import glob
import os
import re

import pytest

yaml = pytest.importorskip("yaml")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFESTS = sorted(glob.glob(os.path.join(ROOT, "deploy", "kubernetes", "*.yaml")))


def load(name: str) -> dict:
    with open(os.path.join(ROOT, "deploy", "kubernetes", name)) as f:
        return yaml.safe_load(f)


def serve_args(argv: list[str], env: dict | None = None):
    from pretrained.cli import build_parser

    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        return build_parser().parse_args(["serve", *argv])
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize("path", MANIFESTS, ids=os.path.basename)
def test_manifest_is_valid_kubernetes(path):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    with open(path) as f:
        for document in yaml.safe_load_all(f):
            kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_manifests_cover_the_deployment_pieces():
    kinds = {load(os.path.basename(p))["kind"] for p in MANIFESTS}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"}


def test_container_agrees_with_the_server_flags_and_endpoints():
    deployment = load("deployment.yaml")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    args = serve_args(container["args"])
    port = container["ports"][0]
    assert port["containerPort"] == args.port == 8000 and args.host == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert container["startupProbe"]["httpGet"] == {"path": "/ready", "port": port["name"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(args.port)
    service = load("service.yaml")
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert load("hpa.yaml")["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    # every variable the manifests set is one the server reads, and it takes effect
    config, secret = load("configmap.yaml")["data"], load("secret.yaml")["stringData"]
    env = {**config, **secret}
    parsed = serve_args([], env)
    for key, value in env.items():
        flag = key.removeprefix("PRETRAINED_SERVE_").lower()
        assert str(getattr(parsed, flag)) == value, key
    assert pod["spec"]["terminationGracePeriodSeconds"] > parsed.drain_timeout


def test_dockerfile_runs_the_serve_command_on_the_same_port():
    with open(os.path.join(ROOT, "deploy", "Dockerfile")) as f:
        text = f.read()
    assert re.search(r'^ENTRYPOINT \["pretrained", "serve"\]$', text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M).group(1)
    args = serve_args(yaml.safe_load(cmd))
    assert re.search(r"^EXPOSE (\d+)$", text, re.M).group(1) == str(args.port)
    assert f"127.0.0.1:{args.port}/health" in text
    assert re.search(r"^USER \d+$", text, re.M)  # not root
    assert "torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text


def test_the_schema_check_catches_a_mistake():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = load("deployment.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/health"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
