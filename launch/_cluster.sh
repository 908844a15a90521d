# Sourced by the cluster conversion scripts: their two paths, and the wheel that the workers install (--extra_package)
# with TensorFlow beside it (REQUIREMENTS: --requirements_file, which each worker installs from the package index).

REQUIREMENTS=(--requirements_file="$ROOT/launch/worker-requirements.txt" --requirements_cache=skip)

paths_and_wheel() {  # paths_and_wheel "USAGE" ARGS...: INPUT and OUTPUT from the first two, REST the others; build the wheel
  local text="$1"; shift
  [[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || usage "$text"
  INPUT="$1"; OUTPUT="$2"; shift 2
  REST=("$@")
  wheel
}

wheel() {  # build dist/cellseg-<version>-py3-none-any.whl from this checkout (or take $WHEEL, when it exists)
  if [[ -n "${WHEEL:-}" && -f "$WHEEL" ]]; then return; fi
  local python="${CELLSEG_BIN}python"
  [[ -n "$CELLSEG_BIN" ]] || python=python3
  local version
  version="$(sed -n 's/^version = //p' "$ROOT/setup.cfg")"
  WHEEL="$ROOT/dist/cellseg-${version}-py3-none-any.whl"
  run "$python" -m pip wheel --quiet --no-deps --wheel-dir "$ROOT/dist" "$ROOT"
}

model_paths_and_wheel() {  # model_paths_and_wheel "USAGE" ARGS...: MODEL, INPUT and OUTPUT from the first three, REST the others
  local text="$1"; shift
  [[ $# -ge 3 && "$1" != -* && "$2" != -* && "$3" != -* ]] || usage "$text"
  MODEL="$1"; shift
  paths_and_wheel "$text" "$@"
}
