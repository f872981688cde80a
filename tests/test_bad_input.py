"""Bad input and security: adversarial completions, broken data, models and checkpoints, what listens where."""

import random
import re
import socket
import time
from pathlib import Path

import psutil
import pytest

from ray_effreason.sympy_pool import SympyWorkerPool
from ray_effreason.verifiers import check_math

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- adversarial completions


def adversarial_completions(count: int, seed: int = 0) -> list[str]:
    """`count` completions built to hurt a grader: huge, deeply nested, pathological LaTeX, huge exponents and
    factorials, invalid UTF-8 (decoded as a tokenizer's bytes would be, with surrogates or replacements)."""
    rng = random.Random(seed)
    depth = lambda: rng.randint(25, 5000)  # noqa: E731
    makers = [
        lambda: "x" * rng.randint(10**5, 2 * 10**6) + "\\boxed{1}",  # huge text, a box at the very end
        lambda: "\\boxed{" + "1" * rng.randint(1001, 10**5) + "}",  # a huge answer
        lambda: "\\boxed{" + "{" * depth() + "1" + "}" * depth() + "}",  # deep braces, unbalanced too
        lambda: "\\boxed{" + "(" * depth() + "x" + ")" * depth() + "}",
        lambda: "\\boxed{" + "\\frac{" * rng.randint(10, 400) + "1}{2}" * rng.randint(1, 400) + "}",
        lambda: "\\boxed{" + "\\sqrt{" * rng.randint(10, 30) + "2" + "}" * rng.randint(10, 30) + "}",
        lambda: f"\\boxed{{{rng.randint(2, 99)}^{{{rng.randint(10, 99)}^{{{rng.randint(10, 99)}}}}}}}",  # towers
        lambda: f"\\boxed{{{rng.randint(2, 9)}**{rng.randint(2, 9)}**{rng.randint(2, 9)}**{rng.randint(2, 9)}}}",
        lambda: f"\\boxed{{10^{{{rng.randint(10**5 + 1, 10**12)}}}}}",  # a huge exponent
        lambda: f"\\boxed{{({rng.randint(10, 99)}^{{{rng.randint(10, 99)}}})!}}",  # factorial of a power
        lambda: f"\\boxed{{{rng.randint(10**4 + 1, 10**9)}!}}",
        lambda: "\\boxed{" + "\\left(" * rng.randint(1, 60) + "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}" + "}",
        lambda: "\\boxed{" + "\\" * rng.randint(1, 5000) + "}",  # backslash runs
        lambda: "\\boxed{" * rng.randint(100, 5000),  # boxes never closed
        lambda: "\\boxed{\\int_0^\\infty e^{-x^{" + str(rng.randint(2, 99)) + "}}\\,dx}",
        lambda: "\\boxed{\\sum_{n=1}^{10^{" + str(rng.randint(6, 50)) + "}} n^{n}}",
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(10, 5000))).decode("utf-8", "surrogateescape")
        + "\\boxed{\udcff\udc80}",  # invalid UTF-8 kept as lone surrogates
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(10, 5000))).decode("utf-8", "replace")
        + "\\boxed{\ufffd1\x00}",
        lambda: "\\boxed{" + "a" * 900 + "b+" * 40 + "}",  # long, under the length limit: reaches sympy
        lambda: "\\boxed{x^{" + "x^{" * 20 + "2" + "}" * 21 + "}",
    ]
    return [makers[index % len(makers)]() for index in range(count)]


@pytest.mark.slow
def test_a_thousand_adversarial_completions_grade_in_bounded_time_without_crash_or_leaked_processes():
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    pool = SympyWorkerPool(num_workers=1)
    timeout_s, slowest = 1.0, 0.0
    try:
        for completion in adversarial_completions(1000):
            start = time.monotonic()
            verdict = check_math(completion, "\\frac{1}{2}", timeout_s=timeout_s, pool=pool)
            slowest = max(slowest, time.monotonic() - start)
            assert verdict in (True, False)
        # Each within its limit plus a worker restart (about 1 s; sympy_pool.py), never a stall.
        assert slowest < timeout_s + 5.0, slowest
        assert check_math("\\boxed{0.5}", "\\frac{1}{2}", pool=pool) is True  # the pool still grades
    finally:
        pool.close()
    psutil.wait_procs([child for child in psutil.Process().children(recursive=True) if child.pid not in before],
                      timeout=10)
    leaked = [child for child in psutil.Process().children(recursive=True)
              if child.pid not in before and child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert not leaked, leaked


# ---------------------------------------------------------------- checkpoints and pickles


def test_no_torch_load_without_weights_only_anywhere_in_the_package():
    # torch.load unpickles: a checkpoint file could run code. Checkpoints are safetensors (learner.py).
    offenders = []
    for path in sorted((REPO / "ray_effreason").rglob("*.py")) + sorted((REPO / "jobs").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.load\(", line) and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
            if re.search(r"\bpickle\.loads?\(", line):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_checkpoint_weights_are_safetensors_only(tiny_model, tmp_path):
    # What LearnerWorker.save_checkpoint writes (save_pretrained, safe_serialization=True): no .bin or .pt
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tiny_model).save_pretrained(tmp_path, safe_serialization=True)
    names = {path.name for path in tmp_path.iterdir()}
    assert "model.safetensors" in names and not any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in names)
    source = (REPO / "ray_effreason" / "actors" / "learner.py").read_text()
    assert "safe_serialization=True" in source


# ---------------------------------------------------------------- what the local head listens on


def listening(pids: set[int]) -> list[tuple[str, int]]:
    return sorted({(conn.laddr.ip, conn.laddr.port) for conn in psutil.net_connections("tcp")
                   if conn.status == psutil.CONN_LISTEN and conn.pid in pids})


def own_addresses() -> set[str]:
    """This machine's addresses other than loopback (IPv4 and IPv6, link-local scopes left out)."""
    import ipaddress

    out = set()
    for entries in psutil.net_if_addrs().values():
        for entry in entries:
            if entry.family in (socket.AF_INET, socket.AF_INET6) and "%" not in entry.address:
                address = ipaddress.ip_address(entry.address)
                if not (address.is_loopback or address.is_link_local):
                    out.add(entry.address)
    return out


@pytest.mark.ray
def test_local_head_serves_the_dashboard_on_localhost_only_and_asks_for_the_token(local_head):
    import urllib.error
    import urllib.request

    from ray_effreason import local_cluster

    dashboard = local_head.dashboard_port
    head = {process.pid for process in psutil.process_iter(["cmdline"])
            if any(local_head.temp_dir in part for part in process.info["cmdline"] or [])}
    sockets = listening(head)
    assert ("127.0.0.1", dashboard) in sockets
    assert not any(port == dashboard and address != "127.0.0.1" for address, port in sockets)
    # Without the token the job API refuses; with it, it answers.
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(f"http://127.0.0.1:{dashboard}/api/jobs/", timeout=10)
    token = local_cluster.TOKEN_PATH.read_text().strip()
    request = urllib.request.Request(f"http://127.0.0.1:{dashboard}/api/jobs/",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert local_cluster.TOKEN_PATH.stat().st_mode & 0o077 == 0  # the token file is private
    # The dashboard is not reachable on the machine's other addresses.
    for address in own_addresses():
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            probe.settimeout(1)
            assert probe.connect_ex((address, dashboard)) != 0, address


# ---------------------------------------------------------------- bad data, models, checkpoints: before any actor


def run_config(tiny_model: str, tmp_path: Path, **flat):
    from ray_effreason.config import TrainConfig
    from ray_effreason.config_tree import from_flat

    return from_flat(TrainConfig, {"task": "synthetic", "model": tiny_model, "output_dir": str(tmp_path / "run"),
                                   "device": "cpu", "max_prompts": 8, "prompts_per_step": 2, "samples_per_prompt": 2,
                                   "train_batch_size": 4, "steps": 1, **flat})


@pytest.fixture(scope="module", autouse=True)
def no_ray_instance():
    """The checks below assert that bad input fails before Ray starts: none may be up (conftest.py's is started
    again by the next module that asks for it)."""
    import ray

    ray.shutdown()


def fails_before_ray(config, match: str) -> None:
    import ray

    from ray_effreason.driver import train

    assert not ray.is_initialized()
    with pytest.raises((ValueError, FileNotFoundError)) as error:
        train(config)
    assert re.search(match, str(error.value)), str(error.value)
    assert not ray.is_initialized()  # failed in the driver's checks: no cluster, no actor started


def test_a_missing_data_file_names_the_file(tiny_model, tmp_path):
    fails_before_ray(run_config(tiny_model, tmp_path, task_path=str(tmp_path / "absent.jsonl")),
                     r"data file not found: .*absent\.jsonl")


def test_a_malformed_data_row_names_the_file_and_row(tiny_model, tmp_path):
    data = tmp_path / "rows.jsonl"
    good = '{"question": "What is 1+1?", "answer": "1+1=2\\n#### 2"}\n'
    for bad, message in (('{"question": "What is', r"rows\.jsonl:2"),
                         ('{"question": "What is 2+2?"}', r"rows\.jsonl:2: missing field\(s\) \['answer'\]"),
                         ('{"question": "What is 2+2?", "answer": "4"}', r"rows\.jsonl:2: .*'#### <number>'")):
        data.write_text(good + bad + "\n")
        fails_before_ray(run_config(tiny_model, tmp_path, task="gsm8k", task_path=str(data)), message)


def test_an_unknown_task_lists_the_valid_ones(tiny_model, tmp_path):
    with pytest.raises(ValueError, match=r"task='no_such_task' is not valid; choose one of \[.*'gsm8k'"):
        run_config(tiny_model, tmp_path, task="no_such_task")


def test_a_model_path_that_does_not_exist_names_the_flag(tiny_model, tmp_path):
    fails_before_ray(run_config(str(tmp_path / "no-model"), tmp_path), r"--model .*no-model: no such file")
    fails_before_ray(run_config(tiny_model, tmp_path, tokenizer=str(tmp_path / "no-tok")), r"--tokenizer .*no-tok")


def test_an_incomplete_checkpoint_names_the_directory_and_what_is_missing(tiny_model, tmp_path):
    import json

    checkpoint = tmp_path / "run" / "checkpoints" / "step-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "driver_state.json").write_text(json.dumps({"step": 1}))
    (checkpoint / "config.json").write_text("{}")
    fails_before_ray(run_config(tiny_model, tmp_path, resume=True),
                     r"checkpoint .*step-1 is incomplete, missing \['deepspeed', 'model\*\.safetensors'\]")
