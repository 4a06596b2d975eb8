"""deploy/k8s, deploy/systemd and deploy/docker, checked offline.

Kubernetes: the built-in kinds validate with ``kubernetes-validate --strict`` (the Python API of
the same package); the ServiceMonitor (a CRD it does not know) structurally; the ConfigMap's
config passes the gateway's own parser; the drain timing adds up. systemd: ``systemd-analyze
verify`` when available, and the unit's key options and stop timeout. Docker: no daemon here, so
the Dockerfile's instructions are parsed and checked (non-root, healthcheck, no baked secrets).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.cli import _parser as cli_parser
from gateway.config.parse import parse_config
from gateway.config.units import parse_duration
from tests.support.gateway import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
SHUTDOWN_TAIL = 5.0
"""Seconds the gateway takes after shutdown_timeout to end the remaining streams (drain_and_stop)."""
SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL)", re.IGNORECASE)


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text())
    assert isinstance(doc, dict)
    return doc


def repo_config() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "config.yaml").read_text()))


# -- Kubernetes --------------------------------------------------------------------------------

BUILTINS = [
    "configmap.yaml",
    "secret.example.yaml",
    "deployment.yaml",
    "service.yaml",
    "hpa.yaml",
    "pdb.yaml",
]


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_manifest_validates_strictly(name: str) -> None:
    kubernetes_validate.validate(load(name), kubernetes_validate.latest_version(), strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    doc = load("deployment.yaml")
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_every_manifest_is_listed_in_the_kustomization_except_the_example_secret() -> None:
    listed = load("kustomization.yaml")["resources"]
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(listed) == on_disk - {"secret.example.yaml"}
    assert set(BUILTINS) | {"servicemonitor.yaml"} == on_disk


def configmap_config() -> tuple[dict[str, Any], Any]:
    text = load("configmap.yaml")["data"]["config.yaml"]
    doc = yaml.safe_load(text)
    variables = set(re.findall(r"\$\{(\w+)", text))
    return doc, parse_config(doc, env={v: "placeholder" for v in variables})


def container() -> dict[str, Any]:
    containers = load("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def test_configmap_holds_a_valid_gateway_config_served_on_the_container_port() -> None:
    _, config = configmap_config()
    assert config.server.host == "0.0.0.0"  # reachable from the kubelet and the Service
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports["http"] == config.server.port
    assert config.routes[0].name == "demo"


def test_keys_come_from_the_secret_through_the_environment() -> None:
    text = load("configmap.yaml")["data"]["config.yaml"]
    needed = set(re.findall(r"\$\{(\w+)", text))
    secret = load("secret.example.yaml")
    env = {e["name"]: e for e in container()["env"]}
    for name in needed:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
    # No literal secret values in the Deployment or the ConfigMap.
    for entry in env.values():
        assert "value" not in entry or not SECRETISH.search(entry["name"])
    assert all(v == "replace-me" for v in secret["stringData"].values())


def test_drain_timing_adds_up() -> None:
    """preStop + shutdown_timeout + the final 5 s < terminationGracePeriodSeconds."""
    _, config = configmap_config()
    spec = load("deployment.yaml")["spec"]["template"]["spec"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pre_stop = float(command[1])
    assert pre_stop >= 5  # endpoints and load balancers need a few seconds to forget the pod
    budget = pre_stop + config.server.shutdown_timeout + SHUTDOWN_TAIL
    assert spec["terminationGracePeriodSeconds"] > budget


def test_deployment_probes_resources_and_security() -> None:
    c = container()
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["port"] == "http"
    assert {"cpu", "memory"} <= set(c["resources"]["requests"])
    assert "memory" in c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/gateway")
    assert volumes[mount["name"]]["configMap"]["name"] == load("configmap.yaml")["metadata"]["name"]
    args = cli_parser().parse_args(c["args"][1:])
    assert args.config == "/etc/gateway/config.yaml" and args.workers == 1
    rolling = load("deployment.yaml")["spec"]["strategy"]["rollingUpdate"]
    assert rolling["maxUnavailable"] == 0


def test_service_hpa_pdb_and_servicemonitor_select_the_deployment() -> None:
    deployment = load("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = load("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = load("hpa.yaml")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = load("pdb.yaml")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_servicemonitor_structure() -> None:
    """The operator's CRD is not in kubernetes-validate: check the fields it relies on."""
    sm = load("servicemonitor.yaml")
    service = load("service.yaml")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["kind"] == "ServiceMonitor"
    assert set(sm) == {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", sm["metadata"]["name"])
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in sm["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert parse_duration(endpoint["scrapeTimeout"]) < parse_duration(endpoint["interval"])


# -- systemd -----------------------------------------------------------------------------------

UNIT = DEPLOY / "systemd" / "gateway.service"


def unit_options() -> dict[str, list[str]]:
    """``Key=value`` lines of every section (repeated keys keep every value)."""
    options: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        options.setdefault(key.strip(), []).append(value.strip())
    return options


def one(options: dict[str, list[str]], key: str) -> str:
    assert len(options.get(key, [])) == 1, key
    return options[key][0]


def test_systemd_unit_stops_gracefully_and_is_hardened() -> None:
    o = unit_options()
    shutdown = parse_duration(repo_config()["server"]["shutdown_timeout"])
    assert parse_duration(one(o, "TimeoutStopSec")) > shutdown + SHUTDOWN_TAIL
    assert one(o, "KillSignal") == "SIGTERM"
    # SIGTERM to the supervisor only; it forwards to its workers and waits for their drain.
    assert one(o, "KillMode") == "mixed"
    assert one(o, "Restart") == "on-failure"
    assert one(o, "EnvironmentFile").lstrip("-").startswith("/etc/")
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert one(o, key) == value, key
    assert one(o, "DynamicUser") == "yes" or one(o, "User") not in ("", "root")
    exec_start = shlex.split(one(o, "ExecStart"))
    args = cli_parser().parse_args(exec_start[1:])
    assert args.config.startswith("/etc/")
    if args.workers > 1:  # the workers share metric files there (RuntimeDirectory is writable)
        env = dict(e.split("=", 1) for e in o["Environment"])
        assert env["PROMETHEUS_MULTIPROC_DIR"].startswith(f"/run/{one(o, 'RuntimeDirectory')}/")
    assert "$MAINPID" in one(o, "ExecReload") and "-HUP" in one(o, "ExecReload")


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart's binary exists: point it at this checkout's console script.
    binary = Path(sys.executable).parent / "gateway"
    text = UNIT.read_text()
    assert text.count("/opt/gateway/bin/gateway") == 1
    unit = tmp_path / "gateway.service"
    unit.write_text(text.replace("/opt/gateway/bin/gateway", str(binary)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, timeout=60)
    complaints = [line for line in result.stderr.decode().splitlines() if "gateway.service" in line]
    assert result.returncode == 0 and not complaints, result.stderr.decode()


# -- Docker ------------------------------------------------------------------------------------

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def stages() -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """The global build arguments (name -> default) and the instructions of each stage, in order,
    ``${NAME}`` of a global argument substituted (as docker does in ``FROM`` and, once a stage
    declares it again with ``ARG NAME``, in that stage)."""
    ops = instructions()
    first = next(i for i, (op, _) in enumerate(ops) if op == "FROM")
    defaults = dict(args.split("=", 1) for op, args in ops[:first] if op == "ARG")

    def sub(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], text)

    found: list[list[tuple[str, str]]] = []
    for op, args in ops[first:]:
        if op == "FROM":
            found.append([])
        found[-1].append((op, sub(args)))
    return defaults, found


def dockerfile_uid() -> int:
    users = [args for op, args in instructions() if op == "USER"]
    assert len(users) == 1
    return int(users[0].split(":")[0])


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    ops = stages()[1][-1]  # the image is the last stage
    names = [op for op, _ in ops]
    base = ops[0]
    assert base[0] == "FROM" and re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base[1])
    assert dockerfile_uid() != 0
    # Nothing runs as root after the switch, and the server is not started before it.
    assert names.index("USER") > max(i for i, n in enumerate(names) if n == "RUN")
    assert names[-1] == "CMD"
    port = repo_config()["server"]["port"]
    assert dict(ops)["EXPOSE"] == str(port)
    health = dict(ops)["HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/healthz" in health
    assert any(op == "RUN" and re.search(r"pip install \S*\.", text) for op, text in ops)
    cmd = json.loads(dict(ops)["CMD"])
    assert cmd == ["gateway", "--config", "/etc/gateway/config.yaml", "--host", "0.0.0.0"]
    args = cli_parser().parse_args(cmd[1:])
    assert args.workers == 1  # one process per container: scale with replicas
    copies = [text.split() for op, text in ops if op == "COPY"]
    assert ["config.yaml", args.config] in copies


def locked(name: str) -> str:
    """The version of ``name`` in requirements.lock."""
    found = re.search(
        rf"^{re.escape(name)}==(\S+)", (REPO / "requirements.lock").read_text(), re.M | re.I
    )
    assert found, name
    return found.group(1)


def test_the_image_carries_the_pure_core_compiled_for_its_own_interpreter() -> None:
    defaults, (native, image) = stages()
    python = defaults["PYTHON"]
    # Both stages are the same CPython: the build serves only the interpreter it was made for.
    assert native[0] == ("FROM", f"python:{python} AS native")
    assert image[0] == ("FROM", f"python:{python}-slim")
    assert ("ARG", "PYTHON") in image
    build = " ".join(args for op, args in native if op == "RUN")
    assert "python -m gateway.native_build" in build
    # The compiler is the one `make native` uses, pinned as in the lock.
    for name in ("mypy", "types-PyYAML"):
        assert f'"{name}=={locked(name)}"' in build, name
    # The build lands in the installed package, beside the sources it was compiled from.
    workdir = next(args for op, args in native if op == "WORKDIR")
    copied = [args.split() for op, args in image if op == "COPY" and args.startswith("--from")]
    target = f"/usr/local/lib/python{python}/site-packages/gateway/_native"
    assert copied == [["--from=native", f"{workdir}/gateway/_native", target]]
    assert image.index(("COPY", " ".join(copied[0]))) > next(
        i for i, (op, args) in enumerate(image) if op == "RUN" and "pip install" in args
    )


def test_the_image_installs_every_runtime_extra() -> None:
    """Without ``redis`` a replica cannot share limits, resumes or pools (such a config starts,
    then fails open or closed on every request); without ``prices`` every cost is unknown and
    budgets never spend; without ``otel`` a tracing config is refused. Only the test and dev
    extras stay out of the image."""
    extras = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    )
    image = stages()[1][-1]
    installs = [
        m.group(1)
        for op, args in image
        if op == "RUN"
        for m in re.finditer(r"pip install [^&]*?\"?\.\[([\w,]+)\]", args)
    ]
    assert len(installs) == 1, installs
    assert set(installs[0].split(",")) == extras - {"test", "dev"}


def test_dockerfile_bakes_in_no_secrets() -> None:
    for op, args in instructions():
        if op in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", args) or [args.split()[0]]
            assert not any(SECRETISH.search(n) for n in names), args
        assert not re.search(r"sk-[A-Za-z0-9]{8,}", args)
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".git", ".venv", ".env", "*.env", ".env.*"):
        assert must in ignore, must
    # What the image copies exists and is not excluded from the build context.
    for op, args in instructions():
        if op == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (REPO / source).exists(), source
                assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignore), source
    # The demo config that goes into the image needs no key.
    assert "${" not in "".join(
        line
        for line in (REPO / "config.yaml").read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
