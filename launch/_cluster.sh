# Sourced by the cluster conversion scripts: the wheel that the workers install (--extra_package).

wheel() {  # build dist/cellseg-<version>-py3-none-any.whl from this checkout (or take $WHEEL, when it exists)
  if [[ -n "${WHEEL:-}" && -f "$WHEEL" ]]; then return; fi
  local python="${CELLSEG_BIN}python"
  [[ -n "$CELLSEG_BIN" ]] || python=python3
  local version
  version="$(sed -n 's/^version = //p' "$ROOT/setup.cfg")"
  WHEEL="$ROOT/dist/cellseg-${version}-py3-none-any.whl"
  run "$python" -m pip wheel --quiet --no-deps --wheel-dir "$ROOT/dist" "$ROOT"
}
