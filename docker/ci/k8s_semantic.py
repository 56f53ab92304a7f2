"""Semantic checks of rendered Kubernetes manifests: what schema validators
cannot see and a cluster would only show by not working.

Usage: k8s_semantic.py --env-names FILE RENDERED.yaml...

For every rendered tree:
- every namespaced object names its namespace (kubectl would otherwise put it
  in `default`, away from what it targets);
- every Service, PodDisruptionBudget, NetworkPolicy (non-empty) and topology
  spread selector matches at least one pod template of its namespace, and
  every HPA targets a workload that exists;
- every named port (Service targetPort, probe port) exists on the container;
- every `*_FILE` environment value is a file under a volume mount of that
  container whose Secret/ConfigMap volume carries that key;
- every environment name of our own containers (images hardware-portal/*) is
  one the binary reads (FILE lists the names from their `--help`).

Run with the lint venv's Python (PyYAML comes with yamllint). Exit 1 on any
finding; each is printed with the tree, the object and what is wrong.
"""

import argparse
import posixpath
import sys

import yaml

CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass",
    "CustomResourceDefinition", "PriorityClass", "IngressClass", "RuntimeClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Read by tracing's filter, not a clap setting.
ALWAYS_KNOWN = {"RUST_LOG"}


def pod_templates(objects):
    """(namespace, kind/name, template) for every workload, CronJobs included."""
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata", {})
        spec = obj.get("spec") or {}
        if kind in WORKLOADS:
            template = spec.get("template")
        elif kind == "CronJob":
            template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
        else:
            continue
        if template:
            yield meta.get("namespace"), f"{kind}/{meta.get('name')}", template


def matches(selector, labels):
    """Kubernetes label-selector semantics (matchLabels AND matchExpressions)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def containers(template):
    spec = template.get("spec") or {}
    return (spec.get("initContainers") or []) + (spec.get("containers") or [])


def check_tree(name, objects, env_names):
    found = []
    templates = list(pod_templates(objects))

    def bad(obj, why):
        found.append(f"{name}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}: {why}")

    def matching(namespace, selector):
        return [t for ns, _, t in templates
                if ns == namespace and matches(selector, (t.get("metadata") or {}).get("labels") or {})]

    for obj in objects:
        kind, meta, spec = obj.get("kind"), obj.get("metadata", {}), obj.get("spec") or {}
        namespace = meta.get("namespace")
        if kind not in CLUSTER_SCOPED and not namespace:
            bad(obj, "no namespace (kubectl would create it in `default`)")
        if kind == "Service" and spec.get("selector"):
            pods = matching(namespace, {"matchLabels": spec["selector"]})
            if not pods:
                bad(obj, f"selector {spec['selector']} matches no pod template")
            for port in spec.get("ports") or []:
                target = port.get("targetPort")
                if isinstance(target, str) and pods and not any(
                        target in {p.get("name") for c in containers(t) for p in c.get("ports") or []}
                        for t in pods):
                    bad(obj, f"targetPort `{target}` is no container port of the selected pods")
        if kind == "PodDisruptionBudget" and not matching(namespace, spec.get("selector")):
            bad(obj, f"selector {spec.get('selector')} matches no pod template")
        if kind == "NetworkPolicy":
            selector = spec.get("podSelector") or {}
            if selector and not matching(namespace, selector):
                bad(obj, f"podSelector {selector} matches no pod template")
        if kind == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            if not any(o.get("kind") == ref.get("kind") and o["metadata"].get("name") == ref.get("name")
                       and o["metadata"].get("namespace") == namespace for o in objects):
                bad(obj, f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} does not exist in {namespace}")
    for namespace, where, template in templates:
        pod = {"kind": where.split("/")[0], "metadata": {"name": where.split("/")[1]}}
        tspec = template.get("spec") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        for spread in tspec.get("topologySpreadConstraints") or []:
            if not matches(spread.get("labelSelector"), labels):
                bad(pod, f"topology spread selector {spread.get('labelSelector')} does not select the pod's own labels")
            selector = spread.get("labelSelector") or {}
            selected = set(selector.get("matchLabels") or {}) | {
                e.get("key") for e in selector.get("matchExpressions") or []}
            for key in spread.get("matchLabelKeys") or []:
                if key not in labels and key != "pod-template-hash":
                    bad(pod, f"matchLabelKeys names `{key}`, a label the pod does not carry")
                if key in selected:
                    # The API server refuses such a pod (seen on Kubernetes 1.34).
                    bad(pod, f"matchLabelKeys and the labelSelector both name `{key}`")
        volumes = {v.get("name"): v for v in tspec.get("volumes") or []}
        for container in containers(template):
            cname = f"container `{container.get('name')}`"
            ports = {p.get("name") for p in container.get("ports") or []}
            for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = container.get(probe_name) or {}
                for action in ("httpGet", "tcpSocket", "grpc"):
                    port = (probe.get(action) or {}).get("port")
                    if isinstance(port, str) and port not in ports:
                        bad(pod, f"{cname}: {probe_name} port `{port}` is not a named port")
            image = container.get("image") or ""
            ours = image.startswith("hardware-portal/")
            for env in container.get("env") or []:
                env_name, value = env.get("name"), env.get("value")
                if ours and env_name not in env_names and env_name not in ALWAYS_KNOWN:
                    bad(pod, f"{cname}: env `{env_name}` is no setting of the binary (see its --help)")
                if env_name.endswith("_FILE") and isinstance(value, str):
                    if not file_is_mounted(value, container, volumes):
                        bad(pod, f"{cname}: {env_name}={value} is not a key of any volume mounted there")
    return found


def file_is_mounted(path, container, volumes):
    for mount in container.get("volumeMounts") or []:
        root = mount.get("mountPath", "").rstrip("/")
        if not path.startswith(root + "/"):
            continue
        rel = posixpath.relpath(path, root)
        if mount.get("subPath"):
            continue
        volume = volumes.get(mount.get("name")) or {}
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            return True  # an emptyDir or PVC: the file is the workload's own business
        items = source.get("items")
        if items is None:
            return True  # every key of the Secret/ConfigMap is there
        if any(item.get("path") == rel for item in items):
            return True
    return False


BROKEN = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}, maxReplicas: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {selector: {app: web}, ports: [{port: 80, targetPort: http}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: ns}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: h, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {part-of: x}}}
        - {maxSkew: 1, topologyKey: z, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: web}},
           matchLabelKeys: [app]}
      containers:
        - name: web
          image: hardware-portal/portal
          env: [{name: NOT_A_SETTING, value: "1"}, {name: TOKEN_FILE, value: /run/s/token}]
          readinessProbe: {httpGet: {path: /, port: web}}
"""


def self_test():
    """The checks can fail: a tree with one of each mistake gives each finding."""
    objects = [o for o in yaml.safe_load_all(BROKEN) if o]
    found = "\n".join(check_tree("self-test", objects, {"PORTAL_LISTEN"}))
    expected = ["no namespace", "does not exist", "targetPort `http`", "topology spread selector",
                "both name `app`",
                "env `NOT_A_SETTING`", "TOKEN_FILE=/run/s/token", "readinessProbe port `web`"]
    missing = [e for e in expected if e not in found]
    if missing:
        print(f"k8s semantics self-test: not detected: {missing}\n{found}")
        return False
    print(f"k8s semantics self-test: all {len(expected)} planted mistakes found")
    return True


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-names", required=True)
    parser.add_argument("trees", nargs="+")
    args = parser.parse_args()
    if not self_test():
        return 1
    with open(args.env_names, encoding="utf-8") as handle:
        env_names = {line.strip() for line in handle if line.strip()}
    findings = []
    for tree in args.trees:
        with open(tree, encoding="utf-8") as handle:
            objects = [o for o in yaml.safe_load_all(handle) if o]
        findings += check_tree(tree, objects, env_names)
        print(f"k8s semantics: {tree}: {len(objects)} objects checked")
    for finding in findings:
        print(f"FINDING {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
