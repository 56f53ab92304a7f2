#!/bin/sh
# Starts Redis with authentication, for Compose and Kubernetes alike.
#
# - `default` (what an unauthenticated client is) may only PING: health checks
#   work, nothing else does.
# - `hardware` may run only the commands the availability cache uses, only on
#   keys under REDIS_KEY_PREFIX (default `hardware`): another deployment's
#   keys, or anything else, are out of its reach.
# The password is read from REDIS_PASSWORD_FILE and written into the
# configuration only as its SHA-256 (`#<hash>`): any character is fine, and it
# never appears on a command line.
set -eu
password_file=${REDIS_PASSWORD_FILE:-/run/secrets/redis-password}
prefix=${REDIS_KEY_PREFIX:-hardware}
conf=${REDIS_CONF:-/data/redis.conf}
case $prefix in
  *[!A-Za-z0-9_-]* | "") echo "start.sh: REDIS_KEY_PREFIX must be letters, digits, _ and -" >&2; exit 1 ;;
esac
# As the services read it: without the line break a file ends with.
password=$(cat "$password_file")
password=${password%"$(printf '\r')"}
[ -n "$password" ] || { echo "start.sh: $password_file is empty" >&2; exit 1; }
hash=$(printf '%s' "$password" | sha256sum | cut -d' ' -f1)
umask 077
cat > "$conf" <<CONF
save ""
appendonly no
protected-mode no
maxmemory 64mb
maxmemory-policy allkeys-lru
user default on nopass resetkeys resetchannels -@all +ping
user hardware on #$hash resetkeys resetchannels ~$prefix:* -@all +ping +hello +auth +get +set +del +pttl +pexpire +eval +evalsha
CONF
exec redis-server "$conf"
