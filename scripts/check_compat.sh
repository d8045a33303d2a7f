#!/usr/bin/env bash
# Compatibility run: the test suite (`python -m pytest -q` from the repository root, the README's line) in two
# environments built outside the repository, and a markdown report of what ran and what failed.
#
#   lowest  Python 3.10 with the lowest versions pyproject.toml declares, every extra included, pinned
#           exactly in scripts/compat/lowest.txt: pip install -c scripts/compat/lowest.txt -e ".[dev]"
#   newest  Python 3.13 with the newest releases pip resolves: pip install -e ".[dev]" (only this machine's
#           own pip constraints apply, if any; the report lists them)
#
# Usage: scripts/check_compat.sh [--only lowest|newest] [--report PATH] [--pytest-args "ARGS"] [--upgrade]
#                                [--rebuild] [-- PYTEST_ARGS...]
#   --only ENV         build and test one environment (default: both, lowest first)
#   --report PATH      where to write the markdown report (default: $CAM_COMPAT_DIR/report.md); its path is
#                      printed at the end
#   --pytest-args ARGS more pytest arguments, shell-quoted in one string (e.g. "-k caption -x"); arguments
#                      after `--` are passed on as they are
#   --upgrade          newest: bring the environment to the newest releases again (pip -U, eager)
#   --rebuild          delete the environment(s) and build them from nothing
#
# Environment variables: CAM_COMPAT_DIR (default ~/.cache/cam_callback-compat; the environments are in
# envs/<name>, logs in logs/, per-run results in results/), CAM_COMPAT_PYTHON_LOWEST and
# CAM_COMPAT_PYTHON_NEWEST (the interpreters; default pyenv's 3.10.13 and 3.13.0, else python3.10 / python3.13
# on PATH).
#
# Cost: the first build of each environment downloads torch with its CUDA libraries from the package index
# (up to about 3 GB each; 5.1 and 6.1 GB on disk) and took a little over 2 minutes each here on a fast
# link; each test run takes as long as the suite (about 1.5 to 2 minutes on 2 idle cores, more when they are
# shared). A rerun reuses an environment whose inputs (interpreter, pyproject.toml, the pins, this
# checkout's path) are unchanged and only runs the tests; a changed input re-runs pip, which installs only
# what is missing. Not for CI: CI keeps the pinned Python 3.11 environment.
#
# Exit status: 0 when every environment installed and its suite passed, 1 when one did not, 2 on a usage
# error or when another run holds the folder.
set -uo pipefail

# Everything below is one block that bash reads whole before running it, so editing this file or checking out
# another commit during a run cannot change the run.
{
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPAT_DIR=${CAM_COMPAT_DIR:-$HOME/.cache/cam_callback-compat}
PINS=scripts/compat/lowest.txt
ONLY=""
REPORT=""
PYTEST_ARGS=""
UPGRADE=0
REBUILD=0
EXTRA_ARGS=()
ORIGINAL_ARGS=("$@")

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "check_compat: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --only) [[ $# -ge 2 ]] || die "--only needs lowest or newest"; ONLY=$2; shift 2 ;;
        --only=*) ONLY=${1#*=}; shift ;;
        --report) [[ $# -ge 2 ]] || die "--report needs a path"; REPORT=$2; shift 2 ;;
        --report=*) REPORT=${1#*=}; shift ;;
        --pytest-args) [[ $# -ge 2 ]] || die "--pytest-args needs a string"; PYTEST_ARGS=$2; shift 2 ;;
        --pytest-args=*) PYTEST_ARGS=${1#*=}; shift ;;
        --upgrade) UPGRADE=1; shift ;;
        --rebuild) REBUILD=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; EXTRA_ARGS=("$@"); break ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
case "$ONLY" in
    "") ENVS=(lowest newest) ;;
    lowest|newest) ENVS=("$ONLY") ;;
    *) die "--only takes lowest or newest, not '$ONLY'" ;;
esac
REPORT=${REPORT:-$COMPAT_DIR/report.md}
[[ "$REPORT" = /* ]] || REPORT=$PWD/$REPORT

mkdir -p "$COMPAT_DIR/envs" "$COMPAT_DIR/logs" "$COMPAT_DIR/results" || die "cannot create $COMPAT_DIR"
exec 9>"$COMPAT_DIR/.lock"
if command -v flock >/dev/null; then
    flock -n 9 || die "another compatibility run is using $COMPAT_DIR"
fi

interpreter() {
    local name=$1 version override
    if [[ $name == lowest ]]; then version=3.10.13; override=${CAM_COMPAT_PYTHON_LOWEST:-}
    else version=3.13.0; override=${CAM_COMPAT_PYTHON_NEWEST:-}; fi
    if [[ -n $override ]]; then echo "$override"; return; fi
    local prefix
    if prefix=$(pyenv prefix "$version" 2>/dev/null) && [[ -x $prefix/bin/python${version%.*} ]]; then
        echo "$prefix/bin/python${version%.*}"
    else
        command -v "python${version%.*}" || echo "python${version%.*}"
    fi
}

# Any Python 3 runs the report helper (standard library only).
HELPER_PY=$(command -v python3 || interpreter lowest)

split_args() {  # the --pytest-args string as words, one per line, quoted as a shell would
    "$1" -c 'import shlex, sys; print("\n".join(shlex.split(sys.argv[1])))' "$2"
}

PYTEST_WORDS=()
if [[ -n $PYTEST_ARGS ]]; then
    words=$(split_args "$HELPER_PY" "$PYTEST_ARGS" 2>/dev/null) \
        || die "cannot split --pytest-args '$PYTEST_ARGS'"
    mapfile -t PYTEST_WORDS <<< "$words"
fi

sha() { sha256sum "$@" | cut -c1-16; }

shell_words() {  # the arguments as one shell command line, quoted only where needed
    "$HELPER_PY" -c 'import shlex, sys; print(shlex.join(sys.argv[1:]))' "$@"
}

run_env() {
    local name=$1
    local env_dir=$COMPAT_DIR/envs/$name results=$COMPAT_DIR/results/$name
    local install_log=$COMPAT_DIR/logs/$name-install.log pytest_log=$COMPAT_DIR/logs/$name-pytest.log
    local py install status build_s=0 first_build_s built_at stamp rc
    rm -rf "$results" && mkdir -p "$results"
    py=$(interpreter "$name")
    local -a base_cmd=(python -m pip install) install_cmd
    if [[ $name == lowest ]]; then base_cmd+=(-c "$PINS"); fi
    base_cmd+=(-e ".[dev]")
    install_cmd=("${base_cmd[@]}")
    if [[ $name == newest && $UPGRADE == 1 ]]; then
        install_cmd=("${base_cmd[@]:0:4}" -U --upgrade-strategy eager "${base_cmd[@]:4}")
    fi
    local -a pytest_cmd=(python -m pytest -q "${PYTEST_WORDS[@]}" "${EXTRA_ARGS[@]}")

    record() { printf '%s=%s\n' "$1" "$2" >> "$results/run.txt"; }
    record interpreter "$py"
    record env_dir "$env_dir"
    record install_command "$(shell_words "${install_cmd[@]}")"
    record pytest_command "$(shell_words "${pytest_cmd[@]}")"
    record install_log "$install_log"
    record pytest_log "$pytest_log"
    [[ $name == lowest ]] && record pins "$PINS"

    echo "== $name: $py"
    if ! "$py" -c 'import sys, venv' 2>/dev/null; then
        echo "   no usable interpreter at $py" | tee "$install_log"
        record install "no interpreter $py"
        return 1
    fi
    stamp=$(
        "$py" -c 'import sys; print(sys.version)'
        printf '%s\n%s\n' "${base_cmd[*]}" "$REPO"
        sha "$REPO/pyproject.toml"
        if [[ $name == lowest ]]; then sha "$REPO/$PINS"; fi
    )
    local started=$SECONDS
    if [[ $REBUILD == 1 && -d $env_dir ]]; then
        echo "   deleting $env_dir (--rebuild)"
        rm -rf "$env_dir"
    fi
    if [[ -x $env_dir/bin/python && $UPGRADE == 0 && -f $env_dir/.compat-stamp ]] \
            && [[ "$(cat "$env_dir/.compat-stamp")" == "$stamp" ]]; then
        status=reused
        echo "   reusing $env_dir (its inputs are unchanged)"
    else
        if [[ ! -x $env_dir/bin/python ]]; then
            rm -rf "$env_dir"
            "$py" -m venv "$env_dir" > "$install_log" 2>&1 || { record install "venv failed"; return 1; }
        else
            : > "$install_log"
        fi
        echo "   installing: $(shell_words "${install_cmd[@]}") (log: $install_log)"
        (cd "$REPO" && "$env_dir/bin/${install_cmd[0]}" "${install_cmd[@]:1}") >> "$install_log" 2>&1
        rc=$?
        build_s=$((SECONDS - started))
        record build_s "$build_s"
        if [[ $rc != 0 ]]; then
            echo "   install failed (exit $rc) after ${build_s} s; the end of its log:"
            tail -n 15 "$install_log" | sed 's/^/   | /'
            rm -f "$env_dir/.compat-stamp"
            record install "pip exit $rc"
            return 1
        fi
        status=ok
        printf '%s\n' "$stamp" > "$env_dir/.compat-stamp"
        printf 'built_at=%s\nfirst_build_s=%s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$build_s" \
            > "$env_dir/.compat-built"
        echo "   installed in ${build_s} s"
    fi
    record install "$status"
    built_at=$(sed -n 's/^built_at=//p' "$env_dir/.compat-built" 2>/dev/null)
    first_build_s=$(sed -n 's/^first_build_s=//p' "$env_dir/.compat-built" 2>/dev/null)
    record built_at "${built_at:-?}"
    record first_build_s "${first_build_s:-}"

    local -a pins_arg=()
    [[ $name == lowest ]] && pins_arg=(--pins "$REPO/$PINS")
    (cd "$REPO" && "$env_dir/bin/python" scripts/compat/compat_report.py versions "$results/versions.json" \
        "${pins_arg[@]}") || echo "   could not read the environment's versions"

    echo "   testing: $(shell_words "${pytest_cmd[@]}") (log: $pytest_log)"
    started=$SECONDS
    (cd "$REPO" && CAM_COMPAT_OUTCOMES="$results/outcomes.json" \
        PYTHONPATH="$REPO/scripts/compat${PYTHONPATH:+:$PYTHONPATH}" \
        "$env_dir/bin/${pytest_cmd[0]}" "${pytest_cmd[@]:1}" -p compat_outcomes) 2>&1 | tee "$pytest_log"
    rc=${PIPESTATUS[0]}
    record test_s "$((SECONDS - started))"
    record pytest_exit "$rc"
    return "$rc"
}

{
    printf 'command=%s\n' "$(shell_words scripts/check_compat.sh "${ORIGINAL_ARGS[@]}")"
    printf 'commit=%s\n' "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')"
    printf 'dirty=%s\n' "$([[ -n $(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null) ]] \
        && echo yes || echo no)"
    printf 'cpus=%s\n' "$(nproc 2>/dev/null || echo '?')"
} > "$COMPAT_DIR/results/meta.txt"

for name in "${ENVS[@]}"; do
    run_env "$name" || echo "== $name: FAILED"
done

"$HELPER_PY" "$REPO/scripts/compat/compat_report.py" report "$REPORT" "$COMPAT_DIR/results" "${ENVS[@]}"
rc=$?
sed -n '/^| environment/,/^$/p' "$REPORT"
echo "report: $REPORT"
exit "$rc"
}
