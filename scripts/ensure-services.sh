#!/usr/bin/env bash
# Make sure what the tests need is there: PostgreSQL on 127.0.0.1:5432 and bean-check's
# package (installed with the dev dependencies). On a machine whose PostgreSQL is installed but
# stopped, start it; on one without it, install it from Debian's packages (CI runs as root).
set -euo pipefail
pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL from Debian's packages" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
fi
if command -v pg_isready >/dev/null 2>&1 && ! pg_ready; then
  echo "starting PostgreSQL" >&2
  for version in $(ls /etc/postgresql 2>/dev/null); do
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
  for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
fi
if pg_ready && ! psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
  # A freshly installed cluster has peer auth only: allow local trust for the test user.
  hba=$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | head -n 1)
  if [ -n "$hba" ] && [ "$(id -u)" = 0 ]; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    for version in $(ls /etc/postgresql); do pg_ctlcluster --skip-systemctl-redirect "$version" main reload || true; done
  fi
fi
if [ "${CI:-}" = "true" ] && ! pg_ready; then
  echo "CI=true and PostgreSQL is not available on 127.0.0.1:5432" >&2
  exit 1
fi
exit 0
