"""Checks of what the real kompose produced from docker-compose.yml (with
docker-compose.kompose.yml): the properties that decide whether the output,
applied as a user would (`kubectl apply -f DIR`), starts and stays private.

Usage: kompose_check.py DIR   (the directory `kompose convert -o` wrote)

- every PersistentVolumeClaim is ReadWriteOnce and used by at most one workload;
- no read-only volume is mounted over /run/secrets or /var/run/secrets (the
  service-account token goes below it);
- one-shots restart on failure (kompose has no Job): no Pod with `Never`;
- every workload that mounts a claim sets fsGroup;
- every Deployment container has a readiness probe;
- only port 5000 leaves the cluster (LoadBalancer/NodePort Services);
- every HorizontalPodAutoscaler targets a Deployment whose containers
  request CPU;
- the hardware Service is headless (the portal resolves every pod);
- every Secret and ConfigMap a pod mounts is in the output.

Run with the lint venv's Python (PyYAML). Exit 1 on any finding.
"""

import pathlib
import sys

import yaml

TOKEN_DIRS = ("/run/secrets", "/var/run/secrets")
EXTERNAL_PORTS = {5000}


def load(directory):
    objects = []
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        with open(path, encoding="utf-8") as handle:
            objects += [o for o in yaml.safe_load_all(handle) if o]
    return objects


def pod_spec(obj):
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return (spec.get("template") or {}).get("spec") or {}
    if kind == "CronJob":
        return ((((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {})
                .get("spec") or {})
    return None


def check(objects):
    found = []
    named = {(o.get("kind"), o["metadata"]["name"]): o for o in objects}

    def bad(obj, why):
        found.append(f"{obj.get('kind')}/{obj['metadata']['name']}: {why}")

    claims = {}
    for obj in objects:
        spec = pod_spec(obj)
        if spec is None:
            continue
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounts_claim = False
        for volume in volumes.values():
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                claims.setdefault(claim, []).append(obj["metadata"]["name"])
                mounts_claim = True
            for source, kind in (("secret", "Secret"), ("configMap", "ConfigMap")):
                ref = volume.get(source)
                if ref is not None:
                    name = ref.get("secretName") if source == "secret" else ref.get("name")
                    if (kind, name) not in named:
                        bad(obj, f"mounts {kind} `{name}`, which the output does not contain")
        if mounts_claim and not (spec.get("securityContext") or {}).get("fsGroup"):
            bad(obj, "mounts a claim without fsGroup (the volume may not be writable by its user)")
        if obj["kind"] == "Pod" and spec.get("restartPolicy", "Always") == "Never":
            bad(obj, "a one-shot with restartPolicy Never: its first failure is final")
        for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            for mount in container.get("volumeMounts") or []:
                path = mount.get("mountPath", "").rstrip("/")
                volume = volumes.get(mount.get("name"), {})
                read_only = mount.get("readOnly") or "secret" in volume or "configMap" in volume
                if path in TOKEN_DIRS and read_only and not mount.get("subPath"):
                    bad(obj, f"read-only volume over {path}: the service-account token cannot be mounted below it")
            if obj["kind"] == "Deployment" and not container.get("readinessProbe"):
                bad(obj, f"container `{container.get('name')}` has no readiness probe")
    for claim, users in claims.items():
        if len(users) > 1:
            found.append(f"PersistentVolumeClaim/{claim}: used by {len(users)} workloads ({', '.join(users)})")
    for obj in objects:
        kind, spec = obj.get("kind"), obj.get("spec") or {}
        if kind == "PersistentVolumeClaim" and spec.get("accessModes") != ["ReadWriteOnce"]:
            bad(obj, f"accessModes {spec.get('accessModes')} (local-path provisioners only offer ReadWriteOnce)")
        if kind == "Service" and spec.get("type") in ("LoadBalancer", "NodePort"):
            extra = {p.get("port") for p in spec.get("ports") or []} - EXTERNAL_PORTS
            if extra:
                bad(obj, f"exposes {sorted(extra)} outside the cluster (only {sorted(EXTERNAL_PORTS)} may)")
        if kind == "Service" and obj["metadata"]["name"] == "hardware" and spec.get("clusterIP") != "None":
            bad(obj, "not headless: the portal would see one virtual IP instead of every replica")
        if kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            target = named.get((ref.get("kind"), ref.get("name")))
            if target is None:
                bad(obj, f"targets {ref.get('kind')}/{ref.get('name')}, which does not exist")
                continue
            for container in pod_spec(target).get("containers") or []:
                if not ((container.get("resources") or {}).get("requests") or {}).get("cpu"):
                    bad(obj, f"CPU utilization of `{container.get('name')}`, which requests no CPU")
    if ("Service", "hardware") not in named:
        found.append("Service/hardware: missing")
    return found


def main():
    objects = load(sys.argv[1])
    findings = check(objects)
    kinds = sorted({o["kind"] for o in objects})
    print(f"kompose check: {len(objects)} objects ({', '.join(kinds)})")
    for finding in findings:
        print(f"FINDING {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
