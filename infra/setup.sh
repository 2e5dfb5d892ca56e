#!/usr/bin/env bash
# One-command set-up: the control-plane env (.venv, Python 3.12), the model-runtime env
# (.venv-model, Python 3.7 + TensorFlow 1.15 + EasyRec), the tools env (.venv-tools, SAM CLI) and
# the LocalStack env (.venv-localstack, Python 3.13: the integration suite's second backend).
# Safe and fast to re-run: an env is rebuilt only when its requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # find_python 3.12 -> path of an interpreter of that version, or nothing
  local want="$1" candidate
  for candidate in "python$want" "$(command -v pyenv >/dev/null 2>&1 && pyenv root)/versions/$want"*/bin/python"$want"; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)" 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

need_python() {
  local want="$1" why="$2" found
  if ! found=$(find_python "$want"); then
    echo "setup: no Python $want interpreter found ($why)." >&2
    echo "setup: install it, e.g. 'pyenv install $want' (then re-run), or put python$want on PATH." >&2
    exit 1
  fi
  echo "$found"
}

# make_env DIR PYTHON REQUIREMENTS [--no-deps]
make_env() {
  local dir="$1" python="$2" req="$3" nodeps="${4:-}" stamp want
  stamp="$dir/.requirements.sha256"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$dir/bin/python" ]; then
    echo "setup: $dir is up to date"; return 0
  fi
  echo "setup: building $dir from $req with $python"
  rm -rf "$dir"
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip<24.1" >/dev/null 2>&1 || true
  # (this machine's pip config names find-links folders that may not exist: drop those warnings)
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check $nodeps -r "$req" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
}

# add_to_env DIR REQUIREMENTS: install a no-deps extra into an existing env (own stamp)
add_to_env() {
  local dir="$1" req="$2" stamp want
  stamp="$dir/.$(basename "$req").sha256"
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  echo "setup: adding $req to $dir"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  echo "$want" > "$stamp"
}

PY312=$(need_python 3.12 "control plane: API, ingest, local runner, tests")
PY37=$(need_python 3.7 "model runtime: TensorFlow 1.15 runs only on Python 3.7")
PY313=$(need_python 3.13 "LocalStack 2026.3 (integration tests' second backend) needs Python 3.13")

# The four environments are independent: they are built at the same time (pip spends most of its
# time unpacking and compiling, on one core each), each into its own log, shown when it ends.
mkdir -p .local/setup
PIDS=(); NAMES=()
build() {  # build NAME COMMAND...: COMMAND (a function above) in the background, output in .local/setup/NAME.log
  local name="$1"; shift
  ( set -e; "$@" ) > ".local/setup/$name.log" 2>&1 &
  PIDS+=("$!"); NAMES+=("$name")
}
control_env() { make_env .venv "$PY312" requirements.txt; add_to_env .venv infra/datasets-requirements.txt; }
localstack_env() {
  make_env .venv-localstack "$PY313" infra/localstack/requirements.txt
  # LocalStack's Kinesis engine (kinesis-mock, from npm) is installed now, so that no test downloads it.
  "$PY312" -m infra.localstack --prepare
}
build control control_env
build model make_env .venv-model "$PY37" infra/model-runtime/requirements.txt --no-deps
build tools make_env .venv-tools "$PY312" infra/tools/requirements.txt
build localstack localstack_env
failed=0
for i in "${!PIDS[@]}"; do
  log=".local/setup/${NAMES[$i]}.log"
  if wait "${PIDS[$i]}"; then
    sed "s/^\(setup: \)\{0,1\}/setup: [${NAMES[$i]}] /" "$log"
  else
    failed=1
    echo "setup: building the ${NAMES[$i]} environment failed:" >&2
    sed "s/^\(setup: \)\{0,1\}/setup: [${NAMES[$i]}] /" "$log" >&2
  fi
done
[ "$failed" = 0 ] || exit 1
echo "setup: done"
