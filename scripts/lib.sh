# Shared by the scripts: PostgreSQL paths, throwaway clusters, printing. Sourced, not run.
PG_MAJOR=15
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PGBIN/pg_config
export PATH="$HOME/.cargo/bin:$PATH" CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

# A scratch directory the 'postgres' user owns (PostgreSQL refuses to run as root).
scratch_dir() {
  local dir
  dir=$(mktemp -d /tmp/colony-assign.XXXXXX)
  chown postgres:postgres "$dir"
  echo "$dir"
}

# Stops any cluster under the scratch dir (printing its log tail on failure) and removes it.
cleanup_scratch() {
  local rc=$? dir=$1
  if [ -f "$dir/data/postmaster.pid" ]; then
    [ $rc -ne 0 ] && [ -f "$dir/pg.log" ] && { echo "--- tail of the PostgreSQL log"; tail -n 40 "$dir/pg.log"; }
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  return $rc
}

# The given port if free, else one the kernel picks.
free_port() {
  python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
PY
}

# initdb + start a cluster in $1 on port $2, preloading the extension (for its background
# worker), with settings sized for this 2-core machine. Extra `-c` options may follow.
start_cluster() {
  local data=$1 port=$2; shift 2
  local opts="-p $port -k $(dirname "$data") -c listen_addresses=127.0.0.1 -c max_connections=300"
  opts+=" -c shared_buffers=512MB -c shared_preload_libraries=colony_assign -c max_worker_processes=32"
  for extra in "$@"; do opts+=" -c $extra"; done
  runuser -u postgres -- "$PGBIN/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -l "$(dirname "$data")/pg.log" -w -o "$opts" start >/dev/null
}
