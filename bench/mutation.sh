#!/usr/bin/env bash
# Mutation testing of the modules that hold rules (docs/testing.md), with mutmut (pinned in
# requirements-dev.txt). Run after `bash .ci/test` has built .venv:
#
#     bash bench/mutation.sh agency/pricing.py escalations/services.py …
#
# The modules are mutated in a scratch copy of the working tree (the repository is left as it is);
# mutmut first runs the suite once on SQLite to learn which tests reach which function, then runs
# only those tests against each mutant, two at a time. It ends with one line per module:
#
#     agency/pricing.py: 89.6 % (60 killed, 7 survived, 0 equivalent)
#
# A mutant that cannot change behaviour is listed in bench/mutation-equivalent.txt with a one-line
# reason; it counts as neither killed nor survived, so the score is reproducible. Survivors are
# listed above the summary. With MUTATION_KEEP=1 the scratch folder is kept (its path is printed),
# and `../.venv/bin/mutmut show NAME` there shows one survivor's diff. Not part of CI.
#
# MUTATION_TESTS="tests/agency/test_tasks.py tests/agency/test_state_machine.py" limits the tests
# mutmut may pick from (default: all of tests/). A function that nearly every test reaches (such as
# task_transition) then takes minutes instead of hours; the score it gives is a lower bound, since a
# left-out test could only have killed more mutants.
#
# MUTATION_DATABASE_URL=postgres://postgres@127.0.0.1:5432/agency runs the tests on that server
# instead of SQLite (each test session on a database of its own), for code only a server runs (the
# PostgreSQL upsert of a scan). MUTATION_ONLY="bids.services.postings.x__upsert_postgresql*" limits
# the run to mutants of those names; the line printed then counts the others as not checked.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MUTMUT="$ROOT/.venv/bin/mutmut"
[ $# -gt 0 ] || { echo "usage: bash bench/mutation.sh MODULE_PATH…" >&2; exit 2; }
[ -x "$MUTMUT" ] || { echo "mutmut is missing: run 'bash .ci/test' first (it installs requirements-dev.txt)." >&2; exit 1; }
for module in "$@"; do
    [ -f "$ROOT/$module" ] || { echo "no such module: $module" >&2; exit 2; }
done

scratch="$(mktemp -d)"
if [ "${MUTATION_KEEP:-}" = 1 ]; then
    echo "Keeping the scratch folder: $scratch"
else
    trap 'rm -rf "$scratch"' EXIT
fi
tar -C "$ROOT" --exclude=./.venv --exclude=./.git --exclude=./mutants --exclude='*.sqlite3' -cf - . | tar -C "$scratch" -xf -
quoted=$(printf '"%s", ' "$@")
read -r -a tests <<<"${MUTATION_TESTS:-tests/}"
tests_quoted=$(printf '"%s", ' "${tests[@]}")
cat >>"$scratch/pyproject.toml" <<TOML

[tool.mutmut]
source_paths = [${quoted%, }]
also_copy = ["agency", "tracing", "escalations", "bids", "arena", "templates", "manage.py", "tests"]
pytest_add_cli_args_test_selection = [${tests_quoted%, }]
# Log calls are not mutated: what a log line says is read by people, and tests of log text are not
# the tests we want (docs/testing.md).
do_not_mutate_patterns = ['^\\s*logger\\.(debug|info|warning|error|exception|log)\\(']
TOML

cd "$scratch"
unset DATABASE_URL CELERY_BROKER_URL CACHE_URL
export AGENCY_DOTENV=false PYTHONWARNINGS=ignore
if [ -n "${MUTATION_DATABASE_URL:-}" ]; then
    export DATABASE_URL="$MUTATION_DATABASE_URL" AGENCY_TEST_DB_PER_PROCESS=1
else
    # Every test session mutmut starts copies this migrated database instead of migrating its own
    # (tests/conftest.py, pytest_sessionstart): a few seconds saved per mutant.
    DATABASE_URL="sqlite:///$scratch/test-template.sqlite3" "$ROOT/.venv/bin/python" manage.py migrate -v0
    export AGENCY_TEST_DB_TEMPLATE="$scratch/test-template.sqlite3"
fi
echo "Mutating $* in $scratch (the suite runs once first; a few minutes per module)…"
read -r -a only <<<"${MUTATION_ONLY:-}"
"$MUTMUT" run --max-children 2 "${only[@]}" >"$scratch/run.log" 2>&1 || { tail -40 "$scratch/run.log"; exit 1; }
"$MUTMUT" results --all true 2>/dev/null | "$ROOT/.venv/bin/python" "$ROOT/bench/mutation_report.py" \
    "$ROOT/bench/mutation-equivalent.txt" "$@"
