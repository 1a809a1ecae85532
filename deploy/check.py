#!/usr/bin/env python3
"""Checks the Kubernetes manifests in deploy/k8s without a cluster.

1. Every resource validates against the Kubernetes 1.31 OpenAPI schema
   (kubernetes-validate, strict: unknown fields are errors).
2. The Deployment agrees with catshost's flags: the probes ask the admin
   port that --admin-addr binds, /readyz and /healthz; the grace period
   outlasts --shutdown-timeout plus the preStop pause; the component named
   in the args is a key of the ConfigMap mounted where the args look.

With --extract-component PATH, also writes the ConfigMap's component to PATH
(tests/deploy.rs serves it).

Needs: pip install kubernetes-validate (scripts/test.sh installs it).
"""

import argparse
import base64
import glob
import os
import re
import sys

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--extract-component", metavar="PATH")
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

    admin_port = int(flag(args, "--admin-addr").rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    http_port = int(flag(args, "--addr").rsplit(":", 1)[1])
    if ports.get("http") != http_port:
        fail(f"containerPort http is {ports.get('http')}, --addr binds {http_port}")
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

    shutdown = seconds(flag(args, "--shutdown-timeout"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = pod["terminationGracePeriodSeconds"]
    if grace <= shutdown + pre_stop:
        fail(
            f"terminationGracePeriodSeconds {grace} must outlast --shutdown-timeout "
            f"{shutdown}s plus the preStop pause of {pre_stop}s"
        )

    component = args[1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    configmaps = {c["metadata"]["name"]: c for c in by_kind["ConfigMap"]}
    data = None
    for name, mount in mounts.items():
        if os.path.dirname(component) == mount and "configMap" in volumes[name]:
            configmap = configmaps[volumes[name]["configMap"]["name"]]
            key = os.path.basename(component)
            if key in configmap.get("binaryData", {}):
                data = base64.b64decode(configmap["binaryData"][key])
            elif key in configmap.get("data", {}):
                data = configmap["data"][key].encode()
    if data is None:
        fail(f"the component {component} is in no ConfigMap mounted at its folder")
    print(f"consistent: probes on admin port {admin_port}, grace {grace}s > {shutdown}s + {pre_stop}s, "
          f"component {component} ({len(data)} bytes)")
    if options.extract_component:
        with open(options.extract_component, "wb") as file:
            file.write(data)


if __name__ == "__main__":
    main()
