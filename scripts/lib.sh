# Shared by the scripts: PostgreSQL paths, throwaway clusters, printing. Sourced, not run.
PG_MAJOR=15
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PGBIN/pg_config
export PATH="$HOME/.cargo/bin:$PATH" CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

# wait_until SECONDS WHAT CMD...: runs CMD every 50 ms until it succeeds; after SECONDS it
# fails the script naming WHAT. Scripts wait on a condition this way, never on a fixed sleep.
wait_until() {
  local seconds=$1 what=$2
  local deadline=$((SECONDS + seconds))
  shift 2
  until "$@"; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${seconds}s waiting for: $what" >&2
      return 1
    fi
    sleep 0.05
  done
}

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
  # Commit timestamps: the wake-up benchmark measures from each submit's commit.
  opts+=" -c track_commit_timestamp=on"
  for extra in "$@"; do opts+=" -c $extra"; done
  runuser -u postgres -- "$PGBIN/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$data" -l "$(dirname "$data")/pg.log" -w -o "$opts" start >/dev/null
}

# The dev cluster scripts/dev and scripts/bench use: data in .dev/pgdata, port 54329, the
# extension preloaded. (Re)started so the library installed last is the one preloaded.
DEV_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.dev
DEV_PORT=54329
dev_cluster_up() {
  mkdir -p "$DEV_DIR"
  chown postgres:postgres "$DEV_DIR"
  if [ ! -f "$DEV_DIR/pgdata/PG_VERSION" ]; then
    runuser -u postgres -- "$PGBIN/initdb" -D "$DEV_DIR/pgdata" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  # `pg_ctl status`, not the pid file: after a machine crash the file outlives the server, and
  # stopping a dead server fails.
  if runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DEV_DIR/pgdata" status >/dev/null 2>&1; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DEV_DIR/pgdata" -m fast -w stop >/dev/null
  fi
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DEV_DIR/pgdata" -l "$DEV_DIR/postgres.log" -w -o \
    "-p $DEV_PORT -k $DEV_DIR -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=512MB \
     -c shared_preload_libraries=colony_assign -c max_worker_processes=32 -c track_commit_timestamp=on" start >/dev/null
}
