"""A local single-node Ray head for newcomers and tests: bound to 127.0.0.1, token authentication on.

    python -m ray_effreason.local_cluster start [--dashboard-port 8265] [--num-cpus N]
    python -m ray_effreason.local_cluster sweep [-- SWEEP FLAGS]     # start if needed, ray job submit, wait
    python -m ray_effreason.local_cluster stop

The token lives in `.ray/auth_token` in the repo (git-ignored); every command here exports
RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH so `ray job submit` and the jobs authenticate. To use the
`ray` CLI yourself: `export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=$PWD/.ray/auth_token`.

What is bound where (checked with `ss -ltnp`, Ray 2.60): the dashboard and job API listen on
127.0.0.1 only. Ray still advertises the machine's own address as the node IP, and its GCS port
(6379) listens on all interfaces, whatever `--node-ip-address` says (ray-project/ray#26293); token
authentication is what guards it, so keep the token file private or firewall the port.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKEN_PATH = REPO / ".ray" / "auth_token"


def ray_environment() -> dict[str, str]:
    """Environment for ray CLI calls: token auth, and this venv's bin first so jobs use its python."""
    if not TOKEN_PATH.exists():
        TOKEN_PATH.parent.mkdir(parents=True, exist_ok=True)
        TOKEN_PATH.write_text(secrets.token_hex(32))
        TOKEN_PATH.chmod(0o600)
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(TOKEN_PATH),
            "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}


def ray_cli() -> str:
    return str(Path(sys.executable).parent / "ray") if (Path(sys.executable).parent / "ray").exists() else "ray"


def dashboard_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=2):
            return True
    except OSError as error:  # 401 means it is up and asks for the token
        return "401" in str(error)


DEFAULT_AGENT_PORT = 52365  # `ray start --dashboard-agent-listen-port`'s default


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def isolated_ports(temp_dir: str, agent_port: int) -> list[str]:
    """An isolated (test) head: its temp dir, and free ports for the dashboard agent (default 52365) and the Ray
    client server (default 10001), so a head already running on the default ports does not take them (its agent
    would hold 52365 and this head's jobs fail with "No available agent")."""
    return ["--temp-dir", temp_dir, "--dashboard-agent-listen-port", str(agent_port),
            "--ray-client-server-port", str(free_port())]


def port_open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def start(dashboard_port: int, num_cpus: int | None, gcs_port: int = 6379, temp_dir: str | None = None) -> None:
    """Start a head unless one answers on dashboard_port; `temp_dir` isolates it (tests), see `stop`.

    Returns once the dashboard answers and its job agent listens: before that, `ray job submit` fails with
    "No available agent to submit job" (the agent comes up seconds after the dashboard on a loaded machine)."""
    if dashboard_up(dashboard_port):
        print(f"Ray head already running; dashboard at http://127.0.0.1:{dashboard_port}")
        return
    # Logical CPUs: actors declare fractions of a CPU on a laptop; several per core is fine for tiny models.
    cpus = num_cpus or max(8, 4 * (os.cpu_count() or 1))
    agent_port = free_port() if temp_dir else DEFAULT_AGENT_PORT
    command = [ray_cli(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs_port),
               "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port), "--num-cpus", str(cpus),
               "--disable-usage-stats"] + (isolated_ports(temp_dir, agent_port) if temp_dir else [])
    subprocess.run(command, check=True, env=ray_environment())
    for _ in range(120):
        if dashboard_up(dashboard_port) and port_open(agent_port):
            break
        time.sleep(0.5)
    print(f"Ray head up (token auth on); dashboard at http://127.0.0.1:{dashboard_port}")


def stop(temp_dir: str | None = None) -> None:
    """`ray stop` (every Ray on this machine), or with `temp_dir` only the head started with it."""
    if temp_dir is None:
        subprocess.run([ray_cli(), "stop", "--force"], check=False, env=ray_environment())
        return
    import psutil

    mine = [process for process in psutil.process_iter(["cmdline"])
            if any(temp_dir in part for part in process.info["cmdline"] or [])]
    for process in mine:
        process.kill()
    psutil.wait_procs(mine, timeout=30)


def submit(dashboard_port: int, script_and_flags: list[str]) -> int:
    """`ray job submit` from the repo root (its working dir is uploaded, .venv and runs/ excluded)."""
    command = [ray_cli(), "job", "submit", "--address", f"http://127.0.0.1:{dashboard_port}",
               "--runtime-env", str(REPO / "cluster" / "runtime_env.local.yaml"), "--", "python", *script_and_flags]
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO, env=ray_environment()).returncode


def sweep(dashboard_port: int, num_cpus: int | None, flags: list[str]) -> int:
    start(dashboard_port, num_cpus)
    # An absolute path: the job runs in an uploaded copy of the repo, which goes away with the head. The tiny
    # reasoner's cache defaults to runs/tiny_reasoner beside it (sweep.base_cache): built once per checkout.
    if "--output-dir" not in flags:
        flags = ["--output-dir", str(REPO / "runs" / "sweep"), *flags]
    flags = absolute_paths(flags, ("--output-dir", "--base-cache"))
    print(f"Watch it in the Ray dashboard: http://127.0.0.1:{dashboard_port} (Jobs tab: one job per alpha)")
    code = submit(dashboard_port, ["jobs/sweep_alpha.py", *flags])
    output_dir = Path(flags[flags.index("--output-dir") + 1])
    if code == 0 and (output_dir / "summary.md").exists():
        print(f"\nResults in {output_dir}:\n" + (output_dir / "summary.md").read_text())
    return code


def absolute_paths(flags: list[str], names: tuple[str, ...]) -> list[str]:
    """`flags` with the values of the path flags `names` made absolute (against this process's directory):
    a relative one would land in the job's uploaded copy of the repo, and go away with it.

    >>> absolute_paths(["--output-dir", "/abs", "--alphas", "0"], ("--output-dir",))
    ['--output-dir', '/abs', '--alphas', '0']
    >>> absolute_paths(["--base-cache=runs/x"], ("--base-cache",))[0] == f"--base-cache={Path('runs/x').resolve()}"
    True
    """
    resolved = list(flags)
    for index, flag in enumerate(resolved):
        name, equals, value = flag.partition("=")
        if name in names and equals:
            resolved[index] = f"{name}={Path(value).resolve()}"
        elif flag in names and index + 1 < len(resolved):
            resolved[index + 1] = str(Path(resolved[index + 1]).resolve())
    return resolved


def parse_arguments(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """(this script's options, the flags after `--` for jobs/sweep_alpha.py).

    >>> arguments, rest = parse_arguments(["sweep", "--dashboard-port", "8266", "--", "--alphas", "0", "0.2"])
    >>> arguments.command, arguments.dashboard_port, rest
    ('sweep', 8266, ['--alphas', '0', '0.2'])
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "sweep"], help="what to do")
    parser.add_argument("--dashboard-port", type=int, default=8265, help="dashboard (and job API) port")
    parser.add_argument("--num-cpus", type=int, default=None,
                        help="logical CPUs of the head (default: 4 per core, >= 8)")
    # Everything after `--` goes to jobs/sweep_alpha.py untouched (argparse.REMAINDER would also swallow
    # this script's own options when they follow the command: `sweep --dashboard-port 8266 -- ...`).
    own, rest = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    return parser.parse_args(own), rest


def main(argv: list[str] | None = None) -> int:
    arguments, rest = parse_arguments(sys.argv[1:] if argv is None else list(argv))
    if arguments.command == "start":
        start(arguments.dashboard_port, arguments.num_cpus)
    elif arguments.command == "stop":
        stop()
    else:
        return sweep(arguments.dashboard_port, arguments.num_cpus, rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
