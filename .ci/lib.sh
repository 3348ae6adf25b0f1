# Shared by .ci/demo, .ci/test and .ci/run. Source it; do not run it.
# Everything is installed from the repo's own files into ./.venv: the direct
# requirements, with every transitive package pinned by constraints.txt.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PG_URL_DEFAULT="postgres://postgres@127.0.0.1:5432/agency"
MARIADB_URL_DEFAULT="mysql://root@127.0.0.1:3306/agency"
REDIS_URL_DEFAULT="redis://127.0.0.1:6379/15"

say() { printf '\n==> %s\n' "$*"; }

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)." >&2
    return 1
}

# venv_ready FILE: make sure .venv exists and has FILE's requirements installed.
# Reinstalls only when the requirement files changed since the last install.
venv_ready() {
    local requirements="$1" stamp want
    if [ ! -x "$PY" ]; then
        say "Creating $VENV"
        "$(find_python)" -m venv "$VENV" || {
            echo "Could not create a virtualenv (on Debian/Ubuntu: apt-get install python3-venv)." >&2
            return 1
        }
        "$PY" -m pip install --quiet --upgrade pip
    fi
    stamp="$VENV/.installed-$(basename "$requirements")"
    want="$(cat "$ROOT/requirements.txt" "$ROOT/$requirements" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        "$PY" -c "import MySQLdb" 2>/dev/null || mysqlclient_build_ready || return 1
        say "Installing $requirements"
        "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$requirements" -c "$ROOT/constraints.txt"
        echo "$want" >"$stamp"
    fi
}

# as_root COMMAND...: run it as root (sudo without a password prompt when we are not root).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# apt_install PACKAGE...: Debian packages, refreshing the package lists only when they are stale.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 ||
        { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
}

# mysqlclient_build_ready: what pip needs to build the MySQL driver, which PyPI ships
# for Linux as source only: a C compiler, pkg-config and the MariaDB client headers.
mysqlclient_build_ready() {
    command -v cc >/dev/null 2>&1 && pkg-config --exists mysqlclient 2>/dev/null && return 0
    say "Installing the MariaDB client headers (to build the mysqlclient driver)"
    apt_install build-essential pkg-config default-libmysqlclient-dev && pkg-config --exists mysqlclient && return 0
    echo "mysqlclient needs a C compiler, pkg-config and the MySQL/MariaDB client headers" \
        "(Debian/Ubuntu: apt-get install build-essential pkg-config default-libmysqlclient-dev)." >&2
    return 1
}

# port_open PORT: is something listening on 127.0.0.1:PORT? (no client tools needed)
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

postgres_up() {
    port_open 5432 && return 0
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        say "Starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
        for _ in $(seq 1 30); do
            port_open 5432 && return 0
            sleep 1
        done
    fi
    return 1
}

redis_up() {
    port_open 6379 && return 0
    if command -v redis-server >/dev/null 2>&1; then
        say "Starting Redis"
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no || true
        for _ in $(seq 1 20); do
            port_open 6379 && return 0
            sleep 0.5
        done
    fi
    return 1
}

# mariadb_up: MariaDB on 127.0.0.1:3306 (root, no password), started if installed and down.
# No systemd here, and Debian's init script waits on a ping that needs /etc/mysql/debian.cnf,
# which such machines may lack: start the server as that script does, then wait for the port.
mariadb_up() {
    port_open 3306 && return 0
    command -v mysqld_safe >/dev/null 2>&1 || return 1
    say "Starting MariaDB"
    as_root install -d -m 755 -o mysql -g root /run/mysqld 2>/dev/null || true
    (as_root mysqld_safe >/dev/null 2>&1 &)
    for _ in $(seq 1 30); do
        port_open 3306 && return 0
        sleep 1
    done
    return 1
}

browser_present() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

# browser_ready: Chromium and ChromeDriver (Debian packages) for the admin's browser test.
browser_ready() {
    browser_present && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    say "Installing Chromium and ChromeDriver"
    apt_install chromium chromium-driver
    browser_present
}
