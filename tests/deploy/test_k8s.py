"""deploy/k8s rendered with kustomize (kubectl kustomize) and validated against the Kubernetes schemas."""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib

import kubernetes_validate
import pytest
import yaml

from gateway.routes import build_table, load_table
from gateway.settings import DEFAULT_ROUTES_FILE
from tests.conftest import require_service
from tests.deploy.checks import ROOT

KUBERNETES_VERSION = "1.30.0"


def render(overlay: str) -> list[dict]:
    kubectl = shutil.which("kubectl")
    require_service(kubectl is not None, "kubectl (for kubectl kustomize)")
    result = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "deploy" / "k8s" / overlay)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module", params=["base", "overlays/production"])
def rendered(request) -> list[dict]:
    return render(request.param)


def test_every_resource_is_valid_for_the_pinned_kubernetes(rendered):
    for document in rendered:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_deployments_are_production_shaped(rendered):
    by_kind: dict[str, dict[str, dict]] = {}
    for document in rendered:
        by_kind.setdefault(document["kind"], {})[document["metadata"]["name"]] = document
    deployments = by_kind["Deployment"]
    assert set(deployments) == {
        "gateway",
        "legacy",
        "reviews",
        "recommendations",
        "payments",
        "catalog",
        "relay",
        "catalog-consumer",
    }
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"] and container["livenessProbe"], name
        assert container["resources"]["requests"], name
        assert deployment["spec"]["template"]["spec"]["topologySpreadConstraints"], name
        assert name in by_kind["PodDisruptionBudget"], name
        secrets = {
            e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e
        }
        assert secrets == {"shop-secrets"}, name
    assert deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"][
        "path"
    ] == ("/_gateway/ready")
    assert {"gateway", "reviews", "recommendations"} <= set(by_kind["HorizontalPodAutoscaler"])
    policy = by_kind["NetworkPolicy"]["backends-only-from-gateway"]["spec"]
    assert policy["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "gateway"
    }
    payments = by_kind["NetworkPolicy"]["payments-only-from-legacy"]["spec"]
    assert payments["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "payments"}
    assert payments["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "legacy"
    }
    assert "StatefulSet" not in by_kind, "Redis and PostgreSQL are external services"


def test_the_route_table_config_map_is_the_shipped_route_table(rendered):
    """kustomize's configMapGenerator reads only files inside its directory (a symlink out is refused),
    so deploy/k8s/base/routes.toml is a copy of gateway/routes.toml: it must stay byte for byte the same,
    so the route table has one source. The cluster urls in it are never used in Kubernetes: the
    shop-config ConfigMap sets LEGACY_URL, REVIEWS_URL and RECOMMENDATIONS_URL, which override them."""
    by_name = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "ConfigMap"}
    (routes_map,) = [d for name, d in by_name.items() if name.startswith("gateway-routes")]
    shipped = DEFAULT_ROUTES_FILE.read_text(encoding="utf-8")
    assert routes_map["data"]["routes.toml"] == shipped, (
        "deploy/k8s/base/routes.toml differs from gateway/routes.toml: "
        "cp gateway/routes.toml deploy/k8s/base/routes.toml"
    )
    table = build_table(tomllib.loads(routes_map["data"]["routes.toml"]), {})
    assert [r.id for r in table.routes] == [r.id for r in load_table(DEFAULT_ROUTES_FILE, {}).routes]
    (config,) = [d for name, d in by_name.items() if name.startswith("shop-config")]
    assert {f"{name.upper()}_URL" for name in table.clusters} <= set(config["data"])


def test_a_planted_invalid_field_fails_validation():
    deployment = copy.deepcopy(next(d for d in render("base") if d["kind"] == "Deployment"))
    deployment["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    unknown = copy.deepcopy(deployment)
    unknown["spec"]["replicas"] = 2
    unknown["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(unknown, KUBERNETES_VERSION, strict=True)
