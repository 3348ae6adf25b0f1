# Shared by .ci/demo, .ci/test and .ci/run. Source it; do not run it.
# Everything is installed from the repo's own files into ./.venv: the direct
# requirements, with every transitive package pinned by constraints.txt.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PG_URL_DEFAULT="postgres://postgres@127.0.0.1:5432/agency"
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
        say "Installing $requirements"
        "$PY" -m pip install --quiet --disable-pip-version-check -r "$ROOT/$requirements" -c "$ROOT/constraints.txt"
        echo "$want" >"$stamp"
    fi
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

browser_present() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }

# browser_ready: Chromium and ChromeDriver (Debian packages) for the admin's browser test.
browser_ready() {
    browser_present && return 0
    command -v apt-get >/dev/null 2>&1 || return 1
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    say "Installing Chromium and ChromeDriver"
    $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 ||
        { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
    browser_present
}
