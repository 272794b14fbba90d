# Sourced by the scripts that need a Python virtualenv (ci/test-python.sh,
# ci/demo-python.sh, examples/store/run.sh, bench/store/run.sh).
#
# make_venv PYTHON DIR: creates a virtualenv at DIR with PYTHON unless one is
# there, installing Debian's python3-venv first when the interpreter lacks
# venv/ensurepip (Debian splits them out). The system Python is left alone.
make_venv() {
    local py="$1" venv="$2" sudo=""
    [ -x "$venv/bin/python" ] && return 0
    mkdir -p "$(dirname "$venv")"
    if ! "$py" -m venv "$venv" >/dev/null 2>&1; then
        echo "== installing python3-venv"
        rm -rf "$venv"
        [ "$(id -u)" = 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
        "$py" -m venv "$venv"
    fi
}
