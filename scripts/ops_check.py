"""deploy/ against a running `b3o serve --demo` (scripts/ops-check.sh runs it).

Usage: ops_check.py --base http://127.0.0.1:PORT --k8s (RENDERED.yaml | deploy/k8s)
                    --serve-help FILE (the output of `b3o serve --help`)

- Exercises the server (health, readiness, a prediction, a refused one), then scrapes
  /metrics twice: the metric names it exposes.
- Every metric the alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard
  (deploy/grafana/b3o.json) name must be one of those (a self-test first checks that a made-up
  name is caught).
- Kubernetes manifests: the kinds the deployment needs, probes on paths that answer 200 on the
  real server, ports that agree, a termination grace period longer than the drain and the
  grace, a non-root read-only container, selectors that match the pods, env from objects that
  exist, B3O_* variables that are flags of `b3o serve`.
- deploy/compose.yaml: Postgres, an S3-compatible store, 3 replicas on them, haproxy with
  deploy/haproxy.cfg naming exactly those replicas and checking a path that answers 200.
- deploy/Containerfile: HEALTHCHECK path, non-root USER, B3O_* variables.
Prints a summary; exits non-zero with every problem found.
"""

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")

# Metrics Prometheus makes itself, not the server.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

problems = []
notes = []


def problem(message):
    problems.append(message)


def http(base, method, path, body=None, content_type=None):
    request = urllib.request.Request(base + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- Metrics ---------------------------------------------------------------------------------


def exposed_metrics(base):
    """Exercises the server, then returns the names of the series /metrics exposes."""
    for path in ("/healthz", "/readyz", "/api/deployments"):
        status, _ = http(base, "GET", path)
        if status != 200:
            problem(f"GET {path} answered {status} on the demo server")
    status, sample = http(base, "GET", "/api/demo/churn-sample.csv")
    if status != 200:
        problem(f"GET /api/demo/churn-sample.csv answered {status}")
    status, answer = http(base, "POST", "/api/predict/churn/csv", sample, "text/csv")
    if status != 200:
        problem(f"a prediction of the demo model answered {status}: {answer[:300]!r}")
    # Refused before a model: counts b3o_inference_rejected_total.
    http(base, "POST", "/api/predict/no-such-model/csv", sample, "text/csv")
    http(base, "GET", "/metrics")
    status, text = http(base, "GET", "/metrics")
    if status != 200:
        problem(f"GET /metrics answered {status}")
        return set()
    names = set()
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


METRIC = re.compile(r"\b(b3o_[a-z0-9_]+|up|scrape_[a-z_]+)\b")


def alert_exprs():
    with open(os.path.join(DEPLOY, "prometheus", "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    return {
        f"alert {rule['alert']}": rule["expr"]
        for group in rules["groups"]
        for rule in group["rules"]
    }


def dashboard_exprs(dashboard):
    out = {}
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            out[f"panel '{panel['title']}' {target['refId']}"] = target["expr"]
        if panel.get("type") != "row" and not panel.get("targets"):
            problem(f"dashboard panel '{panel.get('title')}' has no query")
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and query:
            out[f"variable ${var['name']}"] = query
    return out


def unknown_metrics(exprs, exposed):
    """(where, name) for every metric an expression names that the server does not expose."""
    missing = []
    for where, expr in exprs.items():
        # Label values and strings are not metric names.
        bare = re.sub(r'"[^"]*"', '""', expr)
        for name in METRIC.findall(bare):
            if name not in exposed and name not in PROMETHEUS_OWN:
                missing.append((where, name))
    return missing


def check_metrics(base):
    exposed = exposed_metrics(base)
    with open(os.path.join(DEPLOY, "grafana", "b3o.json")) as f:
        dashboard = json.load(f)
    # Self-test: a dashboard naming a metric that does not exist is caught.
    fake = {"panels": [{"title": "t", "targets": [{"refId": "A", "expr": "rate(b3o_no_such_metric_total[5m])"}]}]}
    if unknown_metrics(dashboard_exprs(fake), exposed) != [("panel 't' A", "b3o_no_such_metric_total")]:
        sys.exit("self-test: a made-up metric in a dashboard was not caught")
    used = 0
    for source, exprs in (("alert rules", alert_exprs()), ("dashboard", dashboard_exprs(dashboard))):
        for where, name in unknown_metrics(exprs, exposed):
            problem(f"{source}: {where} uses {name}, which /metrics does not expose")
        used += len(exprs)
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "datasource" and var.get("query") != "prometheus":
            problem("dashboard: the data source variable is not a Prometheus one")
    for panel in dashboard.get("panels", []):
        if panel.get("type") != "row" and panel.get("datasource", {}).get("uid") != "${datasource}":
            problem(f"dashboard panel '{panel.get('title')}' does not use the $datasource variable")
    b3o = sorted(n for n in exposed if n.startswith("b3o_"))
    return f"metrics: {used} alert and dashboard queries use only the {len(b3o)} b3o_* series /metrics exposes"


# --- Shared ----------------------------------------------------------------------------------


def serve_env_vars(help_file):
    with open(help_file) as f:
        return set(re.findall(r"\[env: (B3O_[A-Z0-9_]+)", f.read()))


def check_env(where, names, known):
    for name in sorted(names):
        if not name.startswith("B3O_") or name in known:
            continue
        problem(f"{where}: {name} is not a variable of `b3o serve` (b3o serve --help)")


def probe_ok(base, where, path, expect=200):
    status, body = http(base, "GET", path)
    if status != expect:
        problem(f"{where}: GET {path} answers {status}, not {expect}: {body[:200]!r}")


def seconds(value):
    """A compose duration (`30s`, `1m30s`) or a number, in seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(value)):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


# --- Kubernetes ------------------------------------------------------------------------------


def load_k8s(path):
    docs = []
    if os.path.isdir(path):
        with open(os.path.join(path, "kustomization.yaml")) as f:
            kustomization = yaml.safe_load(f)
        for resource in kustomization["resources"]:
            with open(os.path.join(path, resource)) as f:
                docs.extend(d for d in yaml.safe_load_all(f) if d)
    else:
        with open(path) as f:
            docs.extend(d for d in yaml.safe_load_all(f) if d)
    return docs


def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s(base, path, known):
    docs = load_k8s(path)
    by_kind = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    for kind in ("Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget"):
        if kind not in by_kind:
            problem(f"k8s: no {kind}")
    if problems:
        return "k8s: incomplete"
    deployment = by_kind["Deployment"][0]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    if spec.get("replicas") != 3:
        problem(f"k8s: the Deployment has {spec.get('replicas')} replicas, not 3")
    if not matches(spec["selector"]["matchLabels"], pod_labels):
        problem("k8s: the Deployment's selector does not match its pods")
    configmaps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    container = pod["containers"][0]
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if name not in configmaps:
                problem(f"k8s: envFrom names ConfigMap {name}, which is not there")
            else:
                env.update(configmaps[name].get("data", {}))
        if "secretRef" in source:
            name = source["secretRef"]["name"]
            if name not in secrets:
                problem(f"k8s: envFrom names Secret {name}, which is not there")
            else:
                env.update(secrets[name].get("stringData", {}) or {})
                env.update(secrets[name].get("data", {}) or {})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "")
    check_env("k8s", env.keys(), known)
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    bind_port = int(str(env.get("B3O_BIND", "127.0.0.1:8080")).rsplit(":", 1)[1])
    if bind_port not in ports.values():
        problem(f"k8s: B3O_BIND listens on {bind_port}, not a containerPort ({ports})")
    if not str(env.get("B3O_BIND", "")).startswith("0.0.0.0:"):
        problem("k8s: B3O_BIND must listen on 0.0.0.0 in a pod")
    for key in ("B3O_DATABASE_URL", "B3O_BLOB_STORE"):
        if key not in env:
            problem(f"k8s: {key} is not set: replicas need the shared database and object store")
    if not str(env.get("B3O_DATABASE_URL", "")).startswith("postgres://"):
        problem("k8s: B3O_DATABASE_URL is not a postgres:// URL")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        got = container.get(probe, {}).get("httpGet", {})
        if got.get("path") != path:
            problem(f"k8s: {probe} checks {got.get('path')}, not {path}")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        got = container.get(probe, {}).get("httpGet")
        if not got:
            problem(f"k8s: no {probe} over HTTP")
            continue
        port = got["port"]
        if (port not in ports) if isinstance(port, str) else (port not in ports.values()):
            problem(f"k8s: {probe} uses port {port}, which the container does not have")
        probe_ok(base, f"k8s {probe}", got["path"])
    drain = float(env.get("B3O_SHUTDOWN_DRAIN_SECS", 5))
    grace = float(env.get("B3O_SHUTDOWN_GRACE_SECS", 10))
    period = pod.get("terminationGracePeriodSeconds", 30)
    if period <= drain + grace:
        problem(f"k8s: terminationGracePeriodSeconds {period} is not longer than drain {drain} + grace {grace}")
    pod_security = pod.get("securityContext", {})
    security = container.get("securityContext", {})
    if not (pod_security.get("runAsNonRoot") or security.get("runAsNonRoot")):
        problem("k8s: runAsNonRoot is not set")
    if not security.get("readOnlyRootFilesystem"):
        problem("k8s: the container's root filesystem is not read-only")
    if security.get("allowPrivilegeEscalation") is not False:
        problem("k8s: allowPrivilegeEscalation is not false")
    if not container.get("resources", {}).get("requests"):
        problem("k8s: the container has no resource requests")
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    data_dir = env.get("B3O_DATA_DIR", "./data")
    if data_dir not in mounts:
        problem(f"k8s: B3O_DATA_DIR {data_dir} is not a volume (the root filesystem is read-only)")
    for service in by_kind["Service"]:
        if not matches(service["spec"].get("selector"), pod_labels):
            problem(f"k8s: Service {service['metadata']['name']} does not select the pods")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if (target not in ports) if isinstance(target, str) else (target not in ports.values()):
                problem(f"k8s: Service port {port['port']} targets {target}, which the container does not have")
    for pdb in by_kind["PodDisruptionBudget"]:
        if not matches(pdb["spec"]["selector"].get("matchLabels"), pod_labels):
            problem(f"k8s: PodDisruptionBudget {pdb['metadata']['name']} does not select the pods")
    return (
        f"k8s: {len(docs)} objects ({', '.join(sorted(by_kind))}); probes answer on the real server; "
        f"grace period {period} s > drain {drain:g} s + grace {grace:g} s"
    )


# --- Compose and haproxy ---------------------------------------------------------------------


def check_compose(base, known):
    with open(os.path.join(DEPLOY, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose.get("services", {})
    replicas = {n: s for n, s in services.items() if "B3O_DATABASE_URL" in (s.get("environment") or {})}
    if len(replicas) != 3:
        problem(f"compose: {len(replicas)} b3o replicas, not 3")
    images = " ".join(str(s.get("image", "")) for s in services.values())
    if "postgres" not in images:
        problem("compose: no Postgres service")
    if not re.search(r"minio|s3|rustfs|garage|seaweed", images):
        problem("compose: no S3-compatible object store")
    if "haproxy" not in services:
        problem("compose: no haproxy service")
    for name, service in replicas.items():
        env = service["environment"]
        check_env(f"compose {name}", env.keys(), known)
        if not str(env["B3O_DATABASE_URL"]).startswith("postgres://"):
            problem(f"compose {name}: B3O_DATABASE_URL is not a postgres:// URL")
        if not str(env.get("B3O_BLOB_STORE", "")).startswith("s3://"):
            problem(f"compose {name}: B3O_BLOB_STORE is not an s3:// URL")
        if not str(env.get("B3O_BIND", "")).startswith("0.0.0.0:"):
            problem(f"compose {name}: B3O_BIND must listen on 0.0.0.0 in a container")
        drain = float(env.get("B3O_SHUTDOWN_DRAIN_SECS", 5))
        grace = float(env.get("B3O_SHUTDOWN_GRACE_SECS", 10))
        stop = seconds(service.get("stop_grace_period", "10s"))
        if stop <= drain + grace:
            problem(f"compose {name}: stop_grace_period {stop:g} s is not longer than drain + grace ({drain + grace:g} s)")
        test = " ".join(service.get("healthcheck", {}).get("test", []))
        for path in re.findall(r"http://[^/ ]+(/[^ \"']*)", test):
            probe_ok(base, f"compose {name} healthcheck", path)
    volumes = " ".join(services.get("haproxy", {}).get("volumes", []))
    if "haproxy.cfg" not in volumes:
        problem("compose: haproxy does not mount deploy/haproxy.cfg")
    with open(os.path.join(DEPLOY, "haproxy.cfg")) as f:
        cfg = f.read()
    servers = set(re.findall(r"^\s*server\s+\S+\s+([A-Za-z0-9_.-]+):\d+", cfg, re.M))
    if servers != set(replicas):
        problem(f"haproxy.cfg: servers {sorted(servers)} are not the compose replicas {sorted(replicas)}")
    checks = re.findall(r"http-check send .*?uri (\S+)", cfg)
    if checks != ["/readyz"]:
        problem(f"haproxy.cfg: the health check is {checks}, not GET /readyz")
    for path in checks:
        probe_ok(base, "haproxy health check", path)
    return f"compose: {len(services)} services, {len(replicas)} replicas on Postgres and S3 behind haproxy checking /readyz"


def check_containerfile(base, known):
    with open(os.path.join(DEPLOY, "Containerfile")) as f:
        text = f.read()
    # Continuation lines joined, comments dropped.
    text = re.sub(r"\\\n\s*", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    healthcheck = re.findall(r"^HEALTHCHECK .*$", text, re.M)
    if len(healthcheck) != 1:
        problem("Containerfile: not exactly one HEALTHCHECK")
    for path in re.findall(r"http://[^/ \"]+(/[^ \"]*)", " ".join(healthcheck)):
        probe_ok(base, "Containerfile HEALTHCHECK", path)
    users = re.findall(r"^USER (\S+)", text, re.M)
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problem("Containerfile: the image does not run as a non-root USER")
    envs = set()
    for line in re.findall(r"^ENV (.*)$", text, re.M):
        envs.update(re.findall(r"(B3O_[A-Z0-9_]+)=", line))
    check_env("Containerfile", envs, known)
    if not re.search(r'^ENTRYPOINT \["/usr/local/bin/b3o"\]', text, re.M):
        problem("Containerfile: the entrypoint is not the b3o binary")
    if "/dist" not in " ".join(re.findall(r"^COPY .*$", text, re.M)):
        problem("Containerfile: the built web app (dist/) is not copied into the image")
    return f"Containerfile: HEALTHCHECK on a live path, USER {users[-1] if users else '?'}"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--k8s", required=True)
    parser.add_argument("--serve-help", required=True)
    args = parser.parse_args()
    known = serve_env_vars(args.serve_help)
    if "B3O_SHUTDOWN_DRAIN_SECS" not in known:
        sys.exit(f"{args.serve_help} lists no B3O_* variables: not the output of `b3o serve --help`?")
    lines = [
        check_metrics(args.base),
        check_k8s(args.base, args.k8s, known),
        check_compose(args.base, known),
        check_containerfile(args.base, known),
    ]
    for note in dict.fromkeys(notes):
        print(f"note: {note}")
    if problems:
        for p in problems:
            print(f"error: {p}", file=sys.stderr)
        sys.exit(f"{len(problems)} problems")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
