"""docker/ without a Docker engine: compose.yaml, the Dockerfiles and the KubeRay manifest agree with
hpsearch's default ports, its CLI, constraints.txt and each other, and keep Ray and MLflow off
the network. `docker compose config` also runs where a Compose v2 is installed."""
from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from hpsearch.platform import defaults
from hpsearch.platform.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = {"cpu": DOCKER / "Dockerfile", "cuda": DOCKER / "Dockerfile.cuda"}

# What compose.yaml's required variables are set to here; every other variable takes its default.
REQUIRED = {"POSTGRES_PASSWORD": "postgres-test-password", "RAY_AUTH_TOKEN": "ray-test-token"}
BACKENDS = ["postgres", "mlflow", "ray-head", "ray-worker", "ray-gpu-worker", "dashboard"]
RAY_NODES = ["ray-head", "ray-worker", "ray-gpu-worker"]
MLFLOW_URI = f"http://mlflow:{defaults.MLFLOW_PORT}"


# ---- compose.yaml, interpolated as Compose does: ${VAR}, ${VAR:-default}, ${VAR:?error} ----

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value, env: dict[str, str]):
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise KeyError(f"required variable {name} is not set: {arg}")
        return arg if op == ":-" else ""

    return _VARIABLE.sub(substitute, value)


def load_compose(env: dict[str, str] | None = None) -> dict:
    raw = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    return _interpolate(raw, REQUIRED if env is None else env)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def command_args(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def flags(args: list[str]) -> dict[str, str]:
    """`--name=value` and `--name value` as {name: value}; a bare `--name` as {name: ""}."""
    found = {}
    for position, arg in enumerate(args):
        if arg.startswith("--"):
            name, equals, value = arg[2:].partition("=")
            following = args[position + 1] if position + 1 < len(args) else "--"
            found[name] = value if equals else ("" if following.startswith("--") else following)
    return found


def networks_of(service: dict) -> set[str]:
    return set(service.get("networks") or [])


def published(entry) -> tuple[str, int, int]:
    """A `ports` entry as (host address, host port, container port); "" means every interface."""
    if isinstance(entry, dict):
        return entry.get("host_ip", ""), int(entry["published"]), int(entry["target"])
    *host_ip, host_port, container_port = str(entry).split(":")
    return (host_ip[0] if host_ip else ""), int(host_port), int(container_port)


def named_mounts(service: dict) -> dict[str, str]:
    """{target: volume name} for the named volumes (not bind mounts) of a service."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2] if isinstance(volume, str) else (volume["source"], volume["target"])
        if not source.startswith((".", "/", "~")):
            mounts[target] = source
    return mounts


def parse_hpsearch(args: list[str]):
    assert args[0] == "hpsearch", args
    try:
        return build_parser().parse_args(args[1:])
    except SystemExit:
        pytest.fail(f"hpsearch's argument parser rejects {shlex.join(args)!r} (its error is printed above)")


def test_the_stack_has_its_services(services):
    assert set(BACKENDS) <= set(services)


def test_ports_are_published_on_loopback_only(services):
    ports = {name: [published(entry) for entry in service.get("ports", [])] for name, service in services.items()}
    hosts = {host for entries in ports.values() for host, _, _ in entries}
    assert hosts == {defaults.LOOPBACK}
    # Only the three the team needs, host port = container port: the README's URLs use the defaults.
    mapped = {name: [(host_port, port) for _, host_port, port in entries] for name, entries in ports.items() if entries}
    assert mapped == {
        "ray-head": [(defaults.RAY_DASHBOARD_PORT,) * 2],
        "mlflow": [(defaults.MLFLOW_PORT,) * 2],
        "dashboard": [(defaults.DASHBOARD_PORT,) * 2]}


@pytest.mark.parametrize("entry", ["8265:8265", "0.0.0.0:8265:8265", {"target": 8265, "published": 8265}])
def test_a_port_without_loopback_is_caught(entry):
    assert published(entry)[0] != defaults.LOOPBACK


def test_backends_are_on_an_internal_network(compose, services):
    assert compose["networks"]["backend"]["internal"] is True
    for name in BACKENDS:
        assert "backend" in networks_of(services[name]), name
    for name in ["postgres", "ray-worker", "ray-gpu-worker"]:
        assert networks_of(services[name]) == {"backend"}, f"{name} needs no other network"
    for name, service in services.items():
        if service.get("ports"):  # Docker cannot publish a port from an internal network
            assert any(not compose["networks"][network].get("internal") for network in networks_of(service)), name
    # A port published there without an address binds loopback, not every interface.
    frontend = compose["networks"]["frontend"]
    assert frontend["driver_opts"]["com.docker.network.bridge.host_binding_ipv4"] == defaults.LOOPBACK


def test_ray_commands_use_the_default_ports(services):
    head = command_args(services["ray-head"])
    assert head[:3] == ["ray", "start", "--head"] and "--block" in head
    head_flags = flags(head)
    assert int(head_flags["port"]) == defaults.RAY_GCS_PORT
    assert int(head_flags["dashboard-port"]) == defaults.RAY_DASHBOARD_PORT
    assert int(head_flags["ray-client-server-port"]) == defaults.RAY_CLIENT_PORT
    assert head_flags["dashboard-host"] == "0.0.0.0"  # inside the container; the port is published on loopback
    for name in ["ray-worker", "ray-gpu-worker"]:
        worker = command_args(services[name])
        assert worker[:2] == ["ray", "start"] and "--block" in worker, name
        assert flags(worker)["address"] == f"ray-head:{defaults.RAY_GCS_PORT}", name


def test_ray_commands_are_accepted_by_ray_start(services):
    from ray.scripts.scripts import start

    for name in RAY_NODES:
        args = command_args(services[name])
        context = start.make_context("ray start", args[2:])  # parses and converts, starts nothing
        assert context.params["block"] is True, name


def test_ray_head_advertises_its_backend_address(compose, services):
    head = services["ray-head"]
    address = ipaddress.ip_address(head["networks"]["backend"]["ipv4_address"])
    assert str(address) == flags(command_args(head))["node-ip-address"]
    assert address in ipaddress.ip_network(compose["networks"]["backend"]["ipam"]["config"][0]["subnet"])


def test_ray_nodes_track_to_the_mlflow_service(services):
    for name in RAY_NODES:
        assert services[name]["environment"]["MLFLOW_TRACKING_URI"] == MLFLOW_URI, name
    assert networks_of(services["mlflow"]) >= {"backend"}


def test_ray_token_authentication_is_on_and_only_ray_has_the_token(services):
    for name, service in services.items():
        environment = service.get("environment") or {}
        if name in RAY_NODES:
            assert environment["RAY_AUTH_MODE"] == "token", name
            assert environment["RAY_AUTH_TOKEN"] == REQUIRED["RAY_AUTH_TOKEN"], name
        else:
            assert "RAY_AUTH_TOKEN" not in environment, name


@pytest.mark.parametrize("variable", sorted(REQUIRED))
def test_secrets_have_no_default(variable):
    with pytest.raises(KeyError, match=variable):
        load_compose({name: value for name, value in REQUIRED.items() if name != variable})


def test_dashboard_command_is_accepted_by_hpsearch(services):
    args = parse_hpsearch(command_args(services["dashboard"]))
    assert args.command == "dashboard"
    assert (args.host, args.port, args.tracking_uri) == ("0.0.0.0", defaults.DASHBOARD_PORT, MLFLOW_URI)


@pytest.mark.parametrize("auth", ["", "--auth"])
def test_tracking_server_command_is_accepted_by_hpsearch(auth):
    mlflow = load_compose({**REQUIRED, "MLFLOW_AUTH": auth})["services"]["mlflow"]
    args = parse_hpsearch(command_args(mlflow))
    assert args.command == "tracking-server"
    assert (args.host, args.port, args.auth) == ("0.0.0.0", defaults.MLFLOW_PORT, bool(auth))
    store = urlsplit(args.backend_store_uri)
    assert (store.scheme, store.hostname, store.port) == ("postgresql", "postgres", defaults.POSTGRES_PORT)
    assert store.password == REQUIRED["POSTGRES_PASSWORD"]
    assert args.artifacts_destination in named_mounts(mlflow), "the artifacts must land on a volume"


def test_postgres_serves_the_database_mlflow_uses(services):
    store = urlsplit(flags(command_args(services["mlflow"]))["backend-store-uri"])
    environment = services["postgres"]["environment"]
    assert (environment["POSTGRES_USER"], environment["POSTGRES_PASSWORD"]) == (store.username, store.password)
    assert environment["POSTGRES_DB"] == store.path.lstrip("/")
    assert named_mounts(services["postgres"]).get("/var/lib/postgresql/data"), "the database must live on a volume"


def test_mlflow_accepts_the_host_names_it_is_reached_by(services):
    allowed = services["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")

    def accepts(host: str) -> bool:  # MLflow's rule (mlflow.server.security_utils.is_allowed_host_header)
        return any(fnmatch.fnmatch(host, pattern) if "*" in pattern else host == pattern for pattern in allowed)

    port = defaults.MLFLOW_PORT
    assert accepts(urlsplit(MLFLOW_URI).netloc)  # the trials and the dashboard
    assert accepts(f"127.0.0.1:{port}") and accepts(f"localhost:{port}")  # the host, an SSH tunnel
    assert not accepts(f"attacker.example:{port}")


def test_healthchecks_probe_the_default_ports(services):
    def probe(name: str) -> str:
        return " ".join(services[name]["healthcheck"]["test"])

    assert f"127.0.0.1:{defaults.MLFLOW_PORT}/health" in probe("mlflow")
    assert f"127.0.0.1:{defaults.DASHBOARD_PORT}/" in probe("dashboard")
    assert f"--port={defaults.POSTGRES_PORT}" in probe("postgres")
    assert "ray health-check" in probe("ray-head")


def test_every_ray_node_works_in_the_same_shared_volume(services):
    shared = set()
    for name in RAY_NODES:
        service = services[name]
        mounts = named_mounts(service)
        assert service["working_dir"] in mounts, f"{name}: Tune's storage must be on the shared volume"
        shared.add(mounts[service["working_dir"]])
    assert len(shared) == 1


def test_gpu_worker_reserves_nvidia_gpus_and_cpu_workers_none(services):
    gpu_worker = services["ray-gpu-worker"]
    devices = gpu_worker["deploy"]["resources"]["reservations"]["devices"]
    assert [(device["driver"], "gpu" in device["capabilities"]) for device in devices] == [("nvidia", True)]
    assert gpu_worker["profiles"] == ["gpu"] and gpu_worker["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    cpu_worker = services["ray-worker"]
    assert "profiles" not in cpu_worker and "reservations" not in cpu_worker["deploy"]["resources"]
    assert flags(command_args(cpu_worker))["num-cpus"] == str(cpu_worker["deploy"]["resources"]["limits"]["cpus"])


def test_builds_use_the_repository_and_existing_dockerfiles(compose, services):
    for name, service in services.items():
        if "build" in service:
            assert (DOCKER / service["build"]["context"]).resolve() == REPO, name
            assert (REPO / service["build"]["dockerfile"]).is_file(), name
    used = {source for service in services.values() for source in named_mounts(service).values()}
    assert used == set(compose["volumes"])


def test_volume_directories_exist_in_the_image(services):
    """Docker gives a new named volume the owner of the image's directory: the image user must own it."""
    for name, service in services.items():
        if "build" in service:
            steps = instructions(REPO / service["build"]["dockerfile"])
            (owning,) = [args for keyword, args in steps if keyword == "RUN" and "chown hpsearch:hpsearch" in args]
            for target in named_mounts(service):
                assert target in owning.split(), (name, target)


@pytest.mark.parametrize("missing", [None, "POSTGRES_PASSWORD"])
def test_docker_compose_config(tmp_path, missing):
    compose_cli = _compose_cli()
    if compose_cli is None:
        pytest.skip("no Docker Compose v2 here (neither `docker compose` nor a v2 `docker-compose`)")
    env_file = tmp_path / "empty.env"  # instead of a developer's docker/.env
    env_file.write_text("")
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("POSTGRES_", "RAY_", "MLFLOW_", "HPSEARCH_"))}
    environment.update({name: value for name, value in REQUIRED.items() if name != missing})
    result = subprocess.run([*compose_cli, "--env-file", str(env_file), "-f", str(DOCKER / "compose.yaml"),
                             "--profile", "gpu", "config", "--format", "json"],
                            capture_output=True, text=True, env=environment, timeout=60)
    if missing:
        assert result.returncode != 0 and missing in result.stderr
        return
    assert result.returncode == 0, result.stderr
    normalized = json.loads(result.stdout)["services"]
    hosts = {port["host_ip"] for service in normalized.values() for port in service.get("ports", [])}
    assert hosts == {defaults.LOOPBACK}


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True).stdout
        if version.strip().lstrip("v").startswith("2"):
            return [standalone]
    return None


# ---- docker/README.md: its commands run as written ----

def readme_command_lines() -> list[list[str]]:
    """Every command in the README's bash blocks, continuation lines joined, as argument lists."""
    blocks = re.findall(r"```bash\n(.*?)```", (DOCKER / "README.md").read_text(), flags=re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip() and "<<" not in line]


def test_readme_hpsearch_commands_are_accepted_and_their_specs_validate():
    from hpsearch.search_spaces.spec import load_spec

    commands = [args for args in readme_command_lines() if args and args[0] == "hpsearch"]
    assert {args[1] for args in commands} >= {"submit", "jobs", "logs", "stop", "trials"}
    for args in commands:
        parsed = parse_hpsearch(args)
        if parsed.command == "submit":
            load_spec(parsed.spec, overrides=parsed.overrides)  # raises SpecError on a bad spec or --set
            assert parsed.tracking_uri == MLFLOW_URI and parsed.storage.startswith("/shared/")
            assert parsed.address == f"http://127.0.0.1:{defaults.RAY_DASHBOARD_PORT}"


def test_readme_compose_commands_name_real_services(services):
    for args in readme_command_lines():
        if args[:2] == ["docker", "compose"]:
            assert args[2:4] == ["-f", "docker/compose.yaml"], shlex.join(args)
            named = [arg.partition("=")[0] for flag, arg in zip(args, args[1:]) if flag == "--scale"]
            named += [args[args.index("exec") + 1]] if "exec" in args else []
            assert set(named) <= set(services), shlex.join(args)


# ---- the Dockerfiles ----

def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            found.append((keyword.upper(), " ".join(args.split())))
            pending = ""
    return found


def build_args(path: Path) -> dict[str, str]:
    return dict(args.partition("=")[::2] for keyword, args in instructions(path) if keyword == "ARG")


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        name, _, version = line.partition("==")
        if version:
            pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    return pins


def base_image(path: Path) -> str:
    (image,) = [args for keyword, args in instructions(path) if keyword == "FROM"]
    return _VARIABLE.sub(lambda match: build_args(path)[match["name"]], image)


def test_both_images_start_from_the_same_python():
    """Ray refuses a worker whose Python differs from the head's, down to the patch release."""
    images = {base_image(path) for path in DOCKERFILES.values()}
    assert len(images) == 1
    (image,) = images
    version = re.fullmatch(r"python:(\d+\.\d+)-slim", image)
    assert version, image
    requires_python = re.search(r'requires-python = "([^"]+)"', (REPO / "pyproject.toml").read_text())[1]
    assert version[1] + ".0" in SpecifierSet(requires_python)


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_run_as_a_numeric_non_root_user(kind):
    users = [args for keyword, args in instructions(DOCKERFILES[kind]) if keyword == "USER"]
    uid = users[-1].partition(":")[0]
    assert uid.isdigit() and int(uid) != 0  # Kubernetes' runAsNonRoot can verify only a numeric user
    assert int(uid) == kuberay_pod_specs()[0]["securityContext"]["runAsUser"]


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_install_the_pinned_versions(kind):
    steps = [args for keyword, args in instructions(DOCKERFILES[kind]) if keyword == "RUN" and "pip install" in args]
    assert steps and all("--constraint constraints.txt" in step for step in steps)
    pins, arguments = constraint_pins(), build_args(DOCKERFILES[kind])
    assert arguments["TORCH_VERSION"] == pins["torch"]
    assert arguments["TORCHVISION_VERSION"] == pins["torchvision"]
    assert any('"torch==${TORCH_VERSION}"' in step for step in steps)
    cpu_index = any("download.pytorch.org/whl/cpu" in step for step in steps)
    assert cpu_index == (kind == "cpu")


@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_images_hold_no_secrets_and_copy_only_what_dockerignore_lets_in(kind):
    steps = instructions(DOCKERFILES[kind])
    for keyword, args in steps:
        if keyword in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|TOKEN|SECRET", args), args
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", "an allow-list: nothing reaches the build unless named"
    allowed = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied = {source.rstrip("/") for keyword, args in steps if keyword == "COPY" for source in args.split()[:-1]}
    assert copied == allowed


# ---- the KubeRay manifest ----

def kuberay_cluster() -> dict:
    documents = list(yaml.safe_load_all((DOCKER / "kuberay" / "raycluster.yaml").read_text()))
    (cluster,) = [document for document in documents if document and document.get("kind") == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    return cluster


def kuberay_pod_specs() -> list[dict]:
    spec = kuberay_cluster()["spec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [group["template"]["spec"] for group in groups]


def test_kuberay_head_uses_the_default_ports_and_the_pinned_ray():
    cluster = kuberay_cluster()
    assert cluster["spec"]["rayVersion"] == constraint_pins()["ray"]
    (head,) = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"]
    assert {port["name"]: port["containerPort"] for port in head["ports"]} == {
        "gcs-server": defaults.RAY_GCS_PORT,
        "dashboard": defaults.RAY_DASHBOARD_PORT,
        "client": defaults.RAY_CLIENT_PORT}
    assert head["image"].endswith(":cpu")


def test_kuberay_start_params_are_ray_start_options():
    from ray.scripts.scripts import start

    options = {opt.lstrip("-") for param in start.params for opt in param.opts}
    spec = kuberay_cluster()["spec"]
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        params = group["rayStartParams"]
        assert set(params) <= options, set(params) - options
        assert all(isinstance(value, str) for value in params.values()), "KubeRay takes strings only"


def test_kuberay_has_a_gpu_worker_group():
    groups = kuberay_cluster()["spec"]["workerGroupSpecs"]
    gpu_containers = [container for group in groups for container in group["template"]["spec"]["containers"]
                      if int(container["resources"]["limits"].get("nvidia.com/gpu", 0)) >= 1]
    assert gpu_containers and all(container["image"].endswith(":cuda") for container in gpu_containers)


def test_kuberay_nodes_track_to_mlflow_authenticate_and_share_storage():
    cluster = kuberay_cluster()
    assert cluster["spec"]["authOptions"]["mode"] == "token"
    for pod in kuberay_pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True
        claims = {volume["name"] for volume in pod["volumes"] if "persistentVolumeClaim" in volume}
        for container in pod["containers"]:
            environment = {variable["name"]: variable.get("value") for variable in container["env"]}
            uri = urlsplit(environment["MLFLOW_TRACKING_URI"])
            assert (uri.hostname, uri.port) == ("mlflow", defaults.MLFLOW_PORT)
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert mounts.get(container["workingDir"]) in claims, "Tune's storage must be on the shared volume"
