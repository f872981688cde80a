"""Prometheus and a Grafana dashboard for the training gauges of a Ray head (`make monitor`).

    python -m ray_effreason.monitor start [--ray-temp-dir /tmp/ray] [--port 9090] [--data-dir runs/prometheus]
    python -m ray_effreason.monitor stop [--data-dir runs/prometheus]
    python -m ray_effreason.monitor grafana     # rewrites cluster/grafana/ray_effreason.json

`start` runs the distribution's `prometheus` binary (Debian/Ubuntu: `apt-get install -y prometheus`) on
127.0.0.1 with cluster/prometheus.yml, pointed at the head's service-discovery file, as `ray metrics
launch-prometheus` does for /tmp/ray (that command downloads a Prometheus and always reads /tmp/ray).
It then copies the dashboard into the Grafana provisioning folder Ray writes for its head
(<temp dir>/session_latest/metrics/grafana/dashboards), so a Grafana started with Ray's grafana.ini
shows it beside Ray's own dashboards. docs/monitoring.md has the Ray settings.

The dashboard: one panel per `run_log.DASHBOARD_METRICS` gauge, one line per run (the gauges' `run`
tag; `max by (run)`: a resumed run's new driver is a second series of the same run), on the datasource
Ray provisions for Grafana (named "Prometheus" unless RAY_PROMETHEUS_NAME says otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from ray_effreason.run_log import DASHBOARD_METRICS, prometheus_name

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_CONFIG = REPO / "cluster" / "prometheus.yml"
GRAFANA_DASHBOARD = REPO / "cluster" / "grafana" / "ray_effreason.json"
DATASOURCE = "Prometheus"  # the datasource Ray provisions (ray.dashboard.modules.metrics: DEFAULT_PROMETHEUS_NAME)
SERVICE_DISCOVERY = "prom_metrics_service_discovery.json"  # ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE
MISSING = ("prometheus not found on PATH. Install the distribution's package (Debian/Ubuntu: "
           "`sudo apt-get install -y prometheus`), or let Ray download one: `ray metrics launch-prometheus` "
           "(which only watches a head in /tmp/ray)")


# ---------------------------------------------------------------- Prometheus


def prometheus_config(ray_temp_dir: str) -> dict[str, Any]:
    """cluster/prometheus.yml with the service-discovery file of the head in `ray_temp_dir`."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    for job in config["scrape_configs"]:
        for discovery in job.get("file_sd_configs", []):
            discovery["files"] = [str(Path(ray_temp_dir) / SERVICE_DISCOVERY)]
    return config


def prometheus_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(ray_temp_dir: str, port: int, data_dir: Path) -> None:
    """Start Prometheus on 127.0.0.1:`port` unless one answers there; its pid goes to DATA_DIR/prometheus.pid."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit(MISSING)
    if prometheus_ready(port):
        print(f"Prometheus already answers on http://127.0.0.1:{port}")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        config_path = data_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(prometheus_config(ray_temp_dir), sort_keys=False))
        command = [binary, f"--config.file={config_path}", f"--web.listen-address=127.0.0.1:{port}",
                   f"--storage.tsdb.path={data_dir / 'data'}"]
        with (data_dir / "prometheus.log").open("ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        (data_dir / "prometheus.pid").write_text(str(process.pid))
        for _ in range(60):
            if prometheus_ready(port) or process.poll() is not None:
                break
            time.sleep(0.5)
        if not prometheus_ready(port):
            raise SystemExit(f"Prometheus did not start; see {data_dir / 'prometheus.log'}")
        print(f"Prometheus on http://127.0.0.1:{port} (pid {process.pid}), scraping the Ray head in {ray_temp_dir}")
    provisioned = Path(ray_temp_dir) / "session_latest" / "metrics" / "grafana" / "dashboards"
    if provisioned.is_dir():  # Ray rewrites this folder when a head starts: copy after `make ray-start`
        shutil.copy(GRAFANA_DASHBOARD, provisioned / GRAFANA_DASHBOARD.name)
        print(f"Grafana dashboard copied to {provisioned}; start Grafana with "
              f"{provisioned.parent / 'grafana.ini'} (docs/monitoring.md)")
    print(f"Query a gauge: curl 'http://127.0.0.1:{port}/api/v1/query?query={prometheus_name('mean_tokens')}'")


def stop(data_dir: Path) -> None:
    """Stop the Prometheus that `start` recorded in DATA_DIR/prometheus.pid (and only that one)."""
    pid_path = data_dir / "prometheus.pid"
    if not pid_path.exists():
        print(f"no {pid_path}: nothing to stop")
        return
    pid = int(pid_path.read_text())
    try:
        if "prometheus" in Path(f"/proc/{pid}/cmdline").read_text():
            os.kill(pid, signal.SIGTERM)
            print(f"stopped Prometheus (pid {pid})")
    except (FileNotFoundError, ProcessLookupError):
        pass
    pid_path.unlink()


# ---------------------------------------------------------------- Grafana


def grafana_dashboard() -> dict[str, Any]:
    """The dashboard JSON: a `run` variable (all runs by default) and one time-series panel per gauge."""
    panels = []
    for index, metric in enumerate(DASHBOARD_METRICS):
        panels.append({
            "id": index + 1, "type": "timeseries", "title": metric, "datasource": "${datasource}",
            "description": f"{metric} of each training step (metrics.jsonl's name; gauge {prometheus_name(metric)})",
            "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
            "targets": [{"expr": f'max by (run) ({prometheus_name(metric)}{{run=~"$run"}})',
                         "legendFormat": "{{run}}", "refId": "A"}],
            "fieldConfig": {"defaults": {"custom": {"showPoints": "always"}}, "overrides": []},
        })
    variables = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "hide": 0,
         "current": {"text": DATASOURCE, "value": DATASOURCE}},
        {"name": "run", "type": "query", "datasource": "${datasource}", "multi": True, "includeAll": True,
         "allValue": ".+", "refresh": 2, "current": {"text": ["All"], "value": ["$__all"]},
         "definition": f"label_values({prometheus_name('mean_tokens')}, run)",
         "query": {"query": f"label_values({prometheus_name('mean_tokens')}, run)", "refId": "run"}},
    ]
    return {"uid": "rayEffreasonTraining", "title": "ray_effreason training", "tags": ["ray_effreason"],
            "editable": True, "refresh": "10s", "schemaVersion": 27, "time": {"from": "now-1h", "to": "now"},
            "templating": {"list": variables}, "panels": panels}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["start", "stop", "grafana"], help="what to do")
    parser.add_argument("--ray-temp-dir", default="/tmp/ray", help="the head's --temp-dir (Ray's default: /tmp/ray)")
    parser.add_argument("--port", type=int, default=9090, help="Prometheus port on 127.0.0.1 (Ray looks at 9090)")
    parser.add_argument("--data-dir", type=Path, default=REPO / "runs" / "prometheus",
                        help="Prometheus' config, data, log and pid file")
    arguments = parser.parse_args(argv)
    if arguments.command == "start":
        start(arguments.ray_temp_dir, arguments.port, arguments.data_dir)
    elif arguments.command == "stop":
        stop(arguments.data_dir)
    else:
        GRAFANA_DASHBOARD.parent.mkdir(parents=True, exist_ok=True)
        GRAFANA_DASHBOARD.write_text(json.dumps(grafana_dashboard(), indent=2) + "\n")
        print(f"wrote {GRAFANA_DASHBOARD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
