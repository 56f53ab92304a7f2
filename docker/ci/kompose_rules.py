"""Checks that docker-compose.yml stays kompose-friendly (see ../shared/DEPLOY.md).

kompose turns healthchecks into exec probes (so only exec form survives),
creates Services only for services with `ports` or `expose`, embeds env_file
contents into ConfigMaps, turns underscores into dashes, produces bare Pods for
restart policies other than `always`, and drops `depends_on`. Run with the
lint venv's Python (PyYAML comes with yamllint). Exit 1 on any violation.
"""

import sys

import yaml

ONE_SHOT = "job"


def violations(doc):
    found = []
    if "version" in doc:
        found.append("top-level `version:` (Compose Specification has none)")
    if "name" in doc:
        found.append("top-level `name:` (docker-compose v1 rejects it)")
    for kind in ("volumes", "networks", "secrets"):
        for name in (doc.get(kind) or {}):
            if "_" in name:
                found.append(f"{kind[:-1]} `{name}` has an underscore (kompose renames it)")
    services = doc.get("services") or {}
    for name, svc in services.items():
        labels = svc.get("labels") or {}
        one_shot = labels.get("kompose.controller.type") == ONE_SHOT
        where = f"service `{name}`"
        if "_" in name:
            found.append(f"{where}: underscore in the name")
        if "container_name" in svc:
            found.append(f"{where}: container_name breaks --scale")
        if "env_file" in svc:
            found.append(f"{where}: env_file becomes a ConfigMap (never for secrets)")
        restart = svc.get("restart")
        if one_shot:
            if restart != "no":
                found.append(f"{where}: a one-shot job must have restart \"no\"")
        else:
            if restart != "always":
                found.append(f"{where}: restart must be `always` (got {restart!r})")
            if not (svc.get("expose") or svc.get("ports")):
                found.append(f"{where}: no `expose` or `ports`: kompose makes no Service")
            test = (svc.get("healthcheck") or {}).get("test")
            if not (isinstance(test, list) and test and test[0] == "CMD"):
                found.append(f"{where}: healthcheck must be exec form [\"CMD\", ...]")
        if svc.get("ports") and name != "portal":
            found.append(f"{where}: only the portal may publish ports")
    expected_labels = {
        "portal": ["kompose.service.type", "kompose.hpa.replicas.min", "kompose.hpa.replicas.max"],
        "hardware": ["kompose.hpa.replicas.min", "kompose.hpa.replicas.max"],
        "db": ["kompose.volume.size"],
    }
    for name, keys in expected_labels.items():
        labels = (services.get(name) or {}).get("labels") or {}
        for key in keys:
            if key not in labels:
                found.append(f"service `{name}`: missing label {key}")
    networks = doc.get("networks") or {}
    for name in ("backend", "data"):
        if not (networks.get(name) or {}).get("internal"):
            found.append(f"network `{name}` must be internal")
    return found


def self_test():
    """The rules must be able to fail: a deliberately bad file trips each one."""
    bad = {
        "version": "3",
        "volumes": {"db_data": {}},
        "networks": {"backend": {}},
        "services": {
            "hardware": {"restart": "unless-stopped", "env_file": ".env",
                         "healthcheck": {"test": "CMD-SHELL curl localhost"},
                         "ports": ["5001:5001"]},
            "migrate": {"labels": {"kompose.controller.type": "job"}, "restart": "on-failure"},
        },
    }
    found = violations(bad)
    assert len(found) >= 10, found


def main(path):
    self_test()
    with open(path, encoding="utf-8") as handle:
        doc = yaml.safe_load(handle)
    found = violations(doc)
    for line in found:
        print(f"kompose rule: {line}")
    print(f"kompose rules: {len(found)} violation(s) in {path}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "docker-compose.yml"))
