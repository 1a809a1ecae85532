#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/k8s without a cluster.

1. Every resource validates against the Kubernetes 1.31 OpenAPI schema
   (kubernetes-validate, strict: unknown fields are errors).
2. The Deployment agrees with catshost's settings: the config file named by
   --config is a key of the ConfigMap mounted there, and every component it
   names is a key of that ConfigMap too; the probes ask the admin port that
   --admin-addr binds, /readyz and /healthz; the http port is the config's
   [server] addr; the grace period outlasts [server] shutdown_timeout plus
   the preStop pause.
3. A NetworkPolicy isolates the pods for ingress, admits the http port, and
   admits the admin port only from the namespaces or pods it names (never
   from everywhere: no rule without `from`, no ipBlock, no empty selector);
   the kubelet's probes come from the pod's node, which a NetworkPolicy
   never blocks.

With --extract DIR, also writes the config file and its components to DIR
(tests/deploy.rs serves them).

Needs: pip install kubernetes-validate (scripts/test.sh installs it).
"""

import argparse
import base64
import glob
import os
import re
import sys
import tomllib

import kubernetes_validate
import yaml

K8S_VERSION = "1.31.0"


def fail(message):
    print(f"deploy/check.py: {message}", file=sys.stderr)
    sys.exit(1)


def flag(args, name):
    try:
        return args[args.index(name) + 1]
    except (ValueError, IndexError):
        fail(f"the container args have no {name} VALUE")


def seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|m)", text)
    if not match:
        fail(f"cannot read the duration {text!r}")
    value, unit = int(match[1]), match[2]
    return {"ms": value / 1000, "s": value, "m": value * 60}[unit]


def admits(rule, name, number):
    """Whether an ingress rule admits the container port `name` (`number`)."""
    ports = rule.get("ports")
    return not ports or any(p.get("port") in (name, number) for p in ports)


def check_admin_policy(by_kind, labels, ports):
    """The pods' admin port is reachable only from the peers a policy names."""
    policies = [
        p for p in by_kind.get("NetworkPolicy", [])
        if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
        and not p["spec"]["podSelector"].get("matchExpressions")
        and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
    ]
    if not policies:
        fail("no NetworkPolicy isolates the pods for ingress: anything in the cluster reaches "
             "the admin port")
    rules = [rule for p in policies for rule in p["spec"].get("ingress", [])]
    if not any(admits(rule, "http", ports["http"]) for rule in rules):
        fail("the NetworkPolicy admits nothing to the http port")
    for rule in rules:
        if not admits(rule, "admin", ports["admin"]):
            continue
        peers = rule.get("from")
        if not peers:
            fail("a NetworkPolicy rule admits everyone to the admin port")
        for peer in peers:
            selectors = [peer.get("namespaceSelector"), peer.get("podSelector")]
            if "ipBlock" in peer or all(not s for s in selectors):
                fail(f"a NetworkPolicy admits {peer} to the admin port: name namespaces or pods")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--extract", metavar="DIR")
    options = parser.parse_args()

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "k8s")
    resources = []
    for path in sorted(glob.glob(os.path.join(root, "*.yaml"))):
        with open(path) as file:
            for resource in yaml.safe_load_all(file):
                if resource is None:
                    continue
                try:
                    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)
                except kubernetes_validate.ValidationError as error:
                    fail(f"{path}: {resource['kind']}: {error.message} at {list(error.path)}")
                resources.append(resource)
                print(f"valid: {os.path.basename(path)} {resource['kind']}/{resource['metadata']['name']}")

    by_kind = {}
    for resource in resources:
        by_kind.setdefault(resource["kind"], []).append(resource)
    (deployment,) = by_kind["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    if args[0] != "serve":
        fail("the container must run `catshost serve`")

    # The files of the ConfigMaps mounted in the container, by path.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmaps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    files = {}
    for name, mount in mounts.items():
        if "configMap" in volumes[name]:
            configmap = configmaps[volumes[name]["configMap"]["name"]]
            for key, text in configmap.get("data", {}).items():
                files[os.path.join(mount, key)] = text.encode()
            for key, data in configmap.get("binaryData", {}).items():
                files[os.path.join(mount, key)] = base64.b64decode(data)

    config_path = flag(args, "--config")
    if config_path not in files:
        fail(f"--config {config_path} is in no ConfigMap mounted at its folder")
    try:
        config = tomllib.loads(files[config_path].decode())
    except tomllib.TOMLDecodeError as error:
        fail(f"{config_path}: {error}")
    server = config.get("server", {})
    components = {}
    for tenant in config.get("tenant", []):
        path = os.path.normpath(os.path.join(os.path.dirname(config_path), tenant["component"]))
        if path not in files:
            fail(f"tenant {tenant['name']!r}: the component {path} is in no mounted ConfigMap")
        components[tenant["component"]] = files[path]
    if not components:
        fail(f"{config_path} has no [[tenant]]")

    admin_port = int(flag(args, "--admin-addr").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    http_port = int(server.get("addr", "127.0.0.1:8080").rsplit(":", 1)[1])
    if ports.get("http") != http_port:
        fail(f"containerPort http is {ports.get('http')}, [server] addr binds {http_port}")
    if ports.get("admin") != admin_port:
        fail(f"containerPort admin is {ports.get('admin')}, --admin-addr binds {admin_port}")
    for probe, path in [
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ]:
        get = container[probe]["httpGet"]
        if get["path"] != path or get["port"] not in ("admin", admin_port):
            fail(f"{probe} must GET {path} on the admin port, not {get}")

    check_admin_policy(by_kind, deployment["spec"]["template"]["metadata"]["labels"], ports)

    shutdown = seconds(server.get("shutdown_timeout", "30s"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod["terminationGracePeriodSeconds"]
    if grace <= shutdown + pre_stop:
        fail(
            f"terminationGracePeriodSeconds {grace} must outlast shutdown_timeout "
            f"{shutdown}s plus the preStop pause of {pre_stop}s"
        )

    sizes = ", ".join(f"{name} ({len(data)} bytes)" for name, data in components.items())
    print(f"consistent: probes on admin port {admin_port} (a NetworkPolicy admits only named peers), grace {grace}s > {shutdown}s + {pre_stop}s, "
          f"config {config_path}, components {sizes}")
    if options.extract:
        with open(os.path.join(options.extract, os.path.basename(config_path)), "wb") as file:
            file.write(files[config_path])
        for name, data in components.items():
            with open(os.path.join(options.extract, name), "wb") as file:
                file.write(data)


if __name__ == "__main__":
    main()
