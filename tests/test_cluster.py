"""cluster/: the files users run on their own GPU clusters are valid for the tools that read them.

All checks run offline and on CPU:
- ray-cluster.yaml against the JSON schema inside the installed Ray, plus the checks `ray up` runs;
- runtime_env.yaml through `ray.runtime_env.RuntimeEnv` and Ray's own working_dir packaging;
- rayjob.yaml against the required structure of KubeRay's RayJob CRD. No schema ships offline, so
  `rayjob_structure_errors` below is a hand-written subset of that CRD;
- every command in cluster/ names an existing jobs/ script and passes only flags that script accepts;
- the files agree with each other (one image, one pip list, one data path).
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from packaging.requirements import Requirement
from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, create_package
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.runtime_env import RuntimeEnv

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_DIR = REPO_ROOT / "cluster"
CONTAINER_HOME = "/home/ray"  # $HOME of the `ray` user in rayproject/ray images; "~/" in file_mounts maps here


def load_yaml(name: str) -> dict:
    return yaml.safe_load((CLUSTER_DIR / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def launcher_config() -> dict:
    return load_yaml("ray-cluster.yaml")


@pytest.fixture(scope="module")
def runtime_env() -> dict:
    return load_yaml("runtime_env.yaml")


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return load_yaml("rayjob.yaml")


# ---------------------------------------------------------------- ray-cluster.yaml (Ray cluster launcher)


def ray_launcher_schema() -> dict:
    """The JSON schema `ray up` validates cluster configs against, as shipped in the installed Ray."""
    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def test_ray_cluster_yaml_matches_the_schema_inside_ray(launcher_config):
    jsonschema.validate(launcher_config, ray_launcher_schema())


def test_ray_schema_rejects_a_misspelled_top_level_key(launcher_config):
    # Shows the schema check above can fail: the top level allows no extra keys.
    broken = {**launcher_config, "max_worker": 2}
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(broken, ray_launcher_schema())


def test_ray_cluster_yaml_passes_the_checks_ray_up_runs(launcher_config):
    # `ray up` merges the provider defaults (ray/autoscaler/aws/defaults.yaml, read offline) and then validates
    # the result: the schema again, head_node_type among the node types, sum of min_workers <= max_workers.
    prepared = prepare_config(copy.deepcopy(launcher_config))
    validate_config(prepared)
    assert prepared["available_node_types"][prepared["head_node_type"]]["resources"] == {"CPU": 0}


def test_ray_cluster_mounts_the_benchmark_data_where_runtime_env_points(launcher_config, runtime_env):
    data_path = runtime_env["env_vars"]["RAY_EFFREASON_DATA"]
    mounted = {remote.replace("~/", CONTAINER_HOME + "/", 1) for remote in launcher_config["file_mounts"]}
    assert data_path in mounted, f"RAY_EFFREASON_DATA={data_path} is not among the file_mounts {sorted(mounted)}"


# ---------------------------------------------------------------- runtime_env.yaml


def test_runtime_env_yaml_builds_a_ray_runtime_env(runtime_env):
    env = RuntimeEnv(**runtime_env)
    assert env.working_dir() == "."
    assert "vllm" in {Requirement(line).name for line in env.pip_config()["packages"]}
    assert env["config"]["setup_timeout_seconds"] >= 600  # Ray's default, too short for a first vLLM install


def test_runtime_env_never_reinstalls_ray(runtime_env):
    # A pip-installed Ray inside the job's virtualenv would differ from the Ray the cluster runs.
    names = {Requirement(line).name.lower() for line in runtime_env["pip"]}
    assert "ray" not in names


def test_runtime_env_upload_skips_venv_runs_and_git_without_gitignore(runtime_env, tmp_path):
    # Ray's own packaging code and the yaml's excludes alone, with no .gitignore to rely on.
    tree = tmp_path / "checkout"
    for relative in (".venv/bin/python", "runs/alpha-0.2/checkpoint.pt", ".git/HEAD",
                     "ray_effreason/__pycache__/config.cpython-311.pyc",
                     "ray_effreason/config.py", "jobs/sweep_alpha.py", "cluster/runtime_env.yaml"):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text("x")
    package = tmp_path / "package.zip"
    create_package(str(tree), package, include_gitignore=False, excludes=runtime_env["excludes"])
    names = set(zipfile.ZipFile(package).namelist())
    assert {"ray_effreason/config.py", "jobs/sweep_alpha.py", "cluster/runtime_env.yaml"} <= names
    leaked = [name for name in names if name.startswith((".venv/", "runs/", ".git/")) or "__pycache__" in name]
    assert leaked == []


def test_runtime_env_upload_of_this_checkout_is_small_and_holds_the_code(runtime_env, tmp_path):
    # What `ray job submit --runtime-env cluster/runtime_env.yaml` uploads from the repository root.
    package = tmp_path / "package.zip"
    create_package(str(REPO_ROOT), package, include_gitignore=True, excludes=runtime_env["excludes"])
    names = set(zipfile.ZipFile(package).namelist())
    assert "ray_effreason/config.py" in names
    assert not any(name.startswith((".venv/", "runs/", ".git/")) for name in names)
    # Ray refuses packages above GCS_STORAGE_MAX_SIZE (512 MiB). The code alone is well under 1/16 of that,
    # so a failure here means something large (a checkpoint, a dataset) was left in the tree.
    assert package.stat().st_size < GCS_STORAGE_MAX_SIZE / 16


# ---------------------------------------------------------------- rayjob.yaml (KubeRay)

# Field names of RayJobSpec, taken from ray-project/kuberay ray-operator/apis/ray/v1/rayjob_types.go. The CRD
# ray-operator/config/crd/bases/ray.io_rayjobs.yaml is generated from that file. Depending on kubectl's
# --validate setting, the API server rejects unknown fields or drops them silently, so a misspelt
# `shutdownAfterJobFinish` could be dropped without any error.
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint", "runtimeEnvYAML",
    "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus", "entrypointNumGpus",
    "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend", "schedule",
}
# The pattern the CRD puts on every resource quantity (Kubernetes resource.Quantity).
QUANTITY = re.compile(r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
                      r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _group_errors(group: dict, where: str) -> list[str]:
    """Problems in a head or worker group: rayStartParams, and one container with an image and resources."""
    errors = []
    params = group.get("rayStartParams")
    if not isinstance(params, dict):
        errors.append(f"{where}.rayStartParams: missing (use {{}} for none)")
    else:  # CRD: map[string]string, so `num-cpus: 0` (an int) is rejected
        errors += [f"{where}.rayStartParams.{key}: must be a string, got {value!r}"
                   for key, value in params.items() if not isinstance(value, str)]
    containers = (group.get("template") or {}).get("spec", {}).get("containers") or []
    if not containers:
        errors.append(f"{where}.template.spec.containers: missing")
    for index, container in enumerate(containers):
        at = f"{where}.template.spec.containers[{index}]"
        if not container.get("name"):
            errors.append(f"{at}.name: missing")
        if not isinstance(container.get("image"), str) or not container["image"]:
            errors.append(f"{at}.image: missing")
        resources = container.get("resources") or {}
        if not resources.get("limits"):
            errors.append(f"{at}.resources.limits: missing")
        for kind in ("requests", "limits"):
            for name, quantity in (resources.get(kind) or {}).items():
                if not QUANTITY.match(str(quantity)) or isinstance(quantity, bool):
                    errors.append(f"{at}.resources.{kind}.{name}: {quantity!r} is not a quantity")
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for name in set(requests) & set(limits):  # Kubernetes: extended resources cannot be overcommitted
            if "/" in name and str(requests[name]) != str(limits[name]):
                errors.append(f"{at}.resources: {name} requests {requests[name]} != limits {limits[name]}")
    return errors


def rayjob_structure_errors(manifest: dict) -> list[str]:
    """What a RayJob needs to be accepted by KubeRay and start a GPU cluster; [] when it has all of it."""
    errors = []
    if manifest.get("apiVersion") != "ray.io/v1":
        errors.append(f"apiVersion: {manifest.get('apiVersion')!r}, expected 'ray.io/v1'")
    if manifest.get("kind") != "RayJob":
        errors.append(f"kind: {manifest.get('kind')!r}, expected 'RayJob'")
    if not DNS_LABEL.match(str((manifest.get("metadata") or {}).get("name", ""))):
        errors.append("metadata.name: missing or not a DNS label")
    spec = manifest.get("spec") or {}
    errors += [f"spec.{key}: not a RayJobSpec field" for key in sorted(set(spec) - RAYJOB_SPEC_FIELDS)]
    if not isinstance(spec.get("entrypoint"), str) or not spec["entrypoint"].strip():
        errors.append("spec.entrypoint: missing")
    for key, kind in (("runtimeEnvYAML", str), ("shutdownAfterJobFinishes", bool), ("ttlSecondsAfterFinished", int)):
        if key in spec and not isinstance(spec[key], kind):
            errors.append(f"spec.{key}: must be {kind.__name__}")
    cluster = spec.get("rayClusterSpec")
    if not isinstance(cluster, dict):
        return errors + ["spec.rayClusterSpec: missing"]
    if not isinstance(cluster.get("headGroupSpec"), dict):
        errors.append("spec.rayClusterSpec.headGroupSpec: missing")
    else:
        errors += _group_errors(cluster["headGroupSpec"], "spec.rayClusterSpec.headGroupSpec")
    workers = cluster.get("workerGroupSpecs")
    if not isinstance(workers, list) or not workers:
        errors.append("spec.rayClusterSpec.workerGroupSpecs: missing (the GPUs live in worker groups)")
    for index, group in enumerate(workers or []):
        where = f"spec.rayClusterSpec.workerGroupSpecs[{index}]"
        if not isinstance(group.get("groupName"), str) or not group["groupName"]:
            errors.append(f"{where}.groupName: missing")
        counts = {key: group.get(key) for key in ("minReplicas", "replicas", "maxReplicas")}
        if not all(isinstance(value, int) for value in counts.values()):
            errors.append(f"{where}: minReplicas, replicas and maxReplicas must be integers, got {counts}")
        elif not counts["minReplicas"] <= counts["replicas"] <= counts["maxReplicas"]:
            errors.append(f"{where}: need minReplicas <= replicas <= maxReplicas, got {counts}")
        errors += _group_errors(group, where)
    return errors


def test_rayjob_has_the_structure_kuberay_requires(rayjob):
    assert rayjob_structure_errors(rayjob) == []


@pytest.mark.parametrize("break_it, expected", [
    (lambda job: job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}),
     "rayStartParams.num-cpus: must be a string"),
    (lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     .pop("image"), "workerGroupSpecs[0].template.spec.containers[0].image: missing"),
    (lambda job: job["spec"].update({"shutdownAfterJobFinish": True}), "spec.shutdownAfterJobFinish: not a"),
    (lambda job: job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
     ["resources"]["requests"].update({"nvidia.com/gpu": "2"}), "nvidia.com/gpu requests 2 != limits 4"),
    (lambda job: job["spec"]["rayClusterSpec"].pop("workerGroupSpecs"), "workerGroupSpecs: missing"),
])
def test_rayjob_check_reports_a_broken_manifest(rayjob, break_it, expected):
    broken = copy.deepcopy(rayjob)
    break_it(broken)
    assert any(expected in error for error in rayjob_structure_errors(broken)), rayjob_structure_errors(broken)


def test_rayjob_environment_matches_runtime_env_yaml(rayjob, runtime_env):
    job_env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])
    RuntimeEnv(**job_env)  # valid for Ray too
    for key in ("pip", "env_vars", "config"):
        assert job_env[key] == runtime_env[key], f"{key} differs between rayjob.yaml and runtime_env.yaml"
    # The submitter pod has no checkout to upload, so the code must come from a URL Ray can fetch.
    assert re.match(r"^https://.+\.zip$", job_env["working_dir"])


def test_rayjob_mounts_the_benchmark_data_where_runtime_env_points(rayjob, runtime_env):
    data_path = runtime_env["env_vars"]["RAY_EFFREASON_DATA"]
    cluster = rayjob["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        mounts = {mount["mountPath"] for mount in group["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert data_path in mounts


def _flag_value(argv: list[str], flag: str, default: int) -> int:
    return int(argv[argv.index(flag) + 1]) if flag in argv else default


def test_rayjob_gpus_equal_what_the_entrypoint_uses(rayjob):
    # Paper layout (PAPER.md §2): each vLLM worker takes tensor_parallel_size GPUs and each learner rank 1 GPU.
    # Asking for more GPUs leaves them idle but billed. Asking for fewer leaves actors pending forever.
    from ray_effreason.config import LearnerConfig, RolloutConfig

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    used = (_flag_value(argv, "--num-generators", RolloutConfig().num_generators)
            * _flag_value(argv, "--tensor-parallel-size", RolloutConfig().tensor_parallel_size)
            + _flag_value(argv, "--num-learners", LearnerConfig().num_learners))
    requested = sum(group["replicas"] * int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
                    for group in rayjob["spec"]["rayClusterSpec"]["workerGroupSpecs"]
                    for container in group["template"]["spec"]["containers"])
    assert used == requested == 4  # the 1.5B run: 2 generators + 2 learners


# ---------------------------------------------------------------- agreement across files and with jobs/


def test_every_node_runs_one_ray_image_of_the_rayjobs_ray_version(launcher_config, rayjob):
    docker = launcher_config["docker"]
    images = {docker[key] for key in ("image", "head_image", "worker_image") if key in docker}
    cluster = rayjob["spec"]["rayClusterSpec"]
    for group in [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]:
        images |= {container["image"] for container in group["template"]["spec"]["containers"]}
    assert len(images) == 1, f"nodes run different images: {sorted(images)}"
    (image,) = images
    assert image.startswith(f"rayproject/ray:{cluster['rayVersion']}-"), (image, cluster["rayVersion"])


def job_commands() -> list:
    """A pytest.param(where, argv) for every `python jobs/...` command in rayjob.yaml and the README's code blocks."""
    commands = [pytest.param("rayjob.yaml", shlex.split(load_yaml("rayjob.yaml")["spec"]["entrypoint"]),
                             id="rayjob-entrypoint")]
    readme = (CLUSTER_DIR / "README.md").read_text(encoding="utf-8")
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if "python jobs/" in line:
                argv = shlex.split(line[line.index("python jobs/"):].split("#")[0])
                commands.append(pytest.param("README.md", argv, id=f"readme-{len(commands)}"))
    return commands


@lru_cache(maxsize=None)
def script_flags(script: str) -> frozenset[str]:
    """Every --flag that `python <script> --help` lists."""
    result = subprocess.run([sys.executable, script, "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{script} --help failed:\n{result.stderr[-2000:]}"
    return frozenset(re.findall(r"--[a-z0-9][a-z0-9-]*", result.stdout))


def test_cluster_docs_have_job_commands_to_check():
    assert len(job_commands()) >= 3  # the RayJob entrypoint and the README's 1.5B and 7B submissions


@pytest.mark.parametrize("where, argv", job_commands())
def test_cluster_command_calls_an_existing_job_script(where, argv):
    assert argv[0] == "python" and re.fullmatch(r"jobs/\w+\.py", argv[1]), f"{where}: {argv[:2]}"
    assert (REPO_ROOT / argv[1]).is_file(), f"{where} runs {argv[1]}, which does not exist"


@pytest.mark.parametrize("where, argv", job_commands())
def test_cluster_command_passes_only_flags_its_script_accepts(where, argv):
    if not (REPO_ROOT / argv[1]).is_file():
        pytest.fail(f"{where} runs {argv[1]}, which does not exist")
    flags = {token.split("=")[0] for token in argv[2:] if token.startswith("--")}
    unknown = flags - script_flags(argv[1])
    assert not unknown, f"{where}: {argv[1]} does not accept {sorted(unknown)}"
