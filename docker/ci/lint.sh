#!/bin/bash
# Static checks of the deployment files, offline:
# - Compose: v1 config, the compose-spec JSON schema, compose-lint (security
#   rules), hadolint, yamllint;
# - Kubernetes: `kubectl kustomize` of every overlay and k8s/tests combination,
#   kubernetes-validate --strict, checkov (skips only those justified in
#   k8s/checkov-skips.txt), yamllint, and the semantic check of every rendered
#   tree (k8s_semantic.py);
# - kompose: the real kompose (built from the Go module proxy) converts the
#   compose file, and its output is checked (kompose_check.py) and validated;
# - the image build context: no secret in it (tools/buildcontext).
# Run it as `cargo xtask lint-deploy`, which installs the pinned Python tools
# (crates/xtask/src/tasks/lint.rs) and passes their directory in LINT_BIN.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bin=${LINT_BIN:?run this through cargo xtask lint-deploy, which sets LINT_BIN}
passed=0; failed=0
step() {
  local what=$1; shift
  if "$@" > "target/xtask/lint-step.log" 2>&1; then
    passed=$((passed + 1)); echo "lint PASS: $what"
  else
    failed=$((failed + 1)); echo "lint FAIL: $what"; cat target/xtask/lint-step.log
  fi
}
if command -v docker-compose > /dev/null; then
  step "docker-compose (v1) config -q" docker-compose config -q
fi
step "compose-spec schema" "$bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
# Threshold high: the remaining mediums are tag-not-digest pins (no registry
# to resolve digests here) and are documented in the README.
step "compose-lint (fail on high)" "$bin/compose-lint" --fail-on high docker-compose.yml
step "hadolint" "$bin/hadolint" docker/Dockerfile docker/ci/mariadb/Dockerfile docker/ci/probe/Dockerfile docker/ci/redis/Dockerfile
step "yamllint" "$bin/yamllint" -s docker-compose.yml k8s/

command -v kubectl > /dev/null || { echo "lint FAIL: kubectl (with kustomize) is required"; failed=$((failed + 1)); }
bash k8s/make-secrets.sh > /dev/null   # throwaway values if none exist (git-ignored)
skips=$(grep -o '^CKV[0-9A-Z_]*' k8s/checkov-skips.txt | paste -sd, -)
rendered=target/xtask/k8s
rm -rf "$rendered"
mkdir -p "$rendered"
for dir in k8s/overlays/*/ k8s/tests/*/; do
  dir=${dir%/} # folders only: k8s/tests also holds the cluster e2e script
  out="$rendered/$(echo "$dir" | tr / -).yaml"
  step "kustomize $dir" kubectl kustomize "$dir" -o "$out"
  [ -s "$out" ] || continue
  step "kubernetes-validate --strict $dir" "$bin/kubernetes-validate" --strict --quiet "$out"
  these=$skips
  if ! grep -q '^kind: NetworkPolicy' "$out"; then
    # Without the network-policies component no pod has a policy, by choice.
    these="$these,CKV2_K8S_6"
  fi
  step "checkov $dir" "$bin/checkov" -f "$out" --framework kubernetes --skip-download \
    --quiet --compact --skip-check "$these"
done
# The real kompose on the compose file, as the README tells users to run it;
# its warnings are printed (each one left is explained in the README), then
# its output is checked for what decides whether it runs.
kompose_out=target/xtask/kompose-out
rm -rf "$kompose_out"
mkdir -p "$kompose_out"
if "${KOMPOSE:?set by cargo xtask lint-deploy}" convert -f docker-compose.yml -f docker-compose.kompose.yml \
    --secrets-as-files -o "$kompose_out" > target/xtask/kompose.log 2>&1; then
  passed=$((passed + 1)); echo "lint PASS: kompose convert ($("$KOMPOSE" version))"
  grep -v 'INFO' target/xtask/kompose.log | sed 's/\x1b\[[0-9;]*m//g; s/^/  kompose: /' || true
else
  failed=$((failed + 1)); echo "lint FAIL: kompose convert"; cat target/xtask/kompose.log
fi
step "kompose output checks" "$bin/python" docker/ci/kompose_check.py "$kompose_out"
step "kubernetes-validate --strict kompose output" "$bin/kubernetes-validate" --strict --quiet "$kompose_out"/*.yaml

# The image build context (what `COPY . .` receives) holds no secret: listed
# by Docker's own .dockerignore matcher (tools/buildcontext), after a
# self-test that the same check finds planted secrets when nothing ignores them.
secret_files='(^|/)secrets/|\.(pem|key)$|(^|/)\.env$'
context_clean() {
  local listed
  listed=$("${BUILDCONTEXT:?set by cargo xtask lint-deploy}" "$1") || return 1
  echo "$(grep -c . <<< "$listed") files in the context of $1"
  ! grep -E "$secret_files" <<< "$listed"
}
planted=$(mktemp -d)
mkdir -p "$planted/k8s/base/secrets"
mkdir -p "$planted/crates/x/secrets"
touch "$planted/k8s/base/secrets/db-root-password" "$planted/.env" "$planted/tls.key" "$planted/Cargo.toml" \
  "$planted/crates/x/secrets/token" "$planted/crates/x/.env" "$planted/crates/x/tls.pem"
planted_found() { ! context_clean "$planted"; }
step "build context check finds planted secrets (nothing ignored)" planted_found
cp .dockerignore "$planted/"
step "build context check: this .dockerignore keeps the planted ones out" context_clean "$planted"
rm -rf "$planted"
step "the image build context holds no secret (k8s/base/secrets exists here)" context_clean .

# Semantics no schema sees: namespaces, selectors that select, named ports,
# secret files that are mounted, env names the binaries read.
step "k8s semantics (every rendered tree)" "$bin/python" docker/ci/k8s_semantic.py \
  --env-names "${K8S_ENV_NAMES:?set by cargo xtask lint-deploy}" "$rendered"/*.yaml
echo "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
