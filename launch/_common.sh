# Sourced by the launch scripts: where the cellseg commands are, and how a command is shown and run.
# No logic of cellseg lives here; every script prints the command it runs, and --dry_run prints only.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The project's virtual environment when there is one, else whatever is on PATH.
if [[ -z "${CELLSEG_BIN:-}" ]]; then
  if [[ -x "$ROOT/.venv/bin/cellseg-train" ]]; then CELLSEG_BIN="$ROOT/.venv/bin/"; else CELLSEG_BIN=""; fi
fi
DRY_RUN=0
ARGS=()
for arg in "$@"; do
  if [[ "$arg" == "--dry_run" ]]; then DRY_RUN=1; else ARGS+=("$arg"); fi
done

usage() {  # usage "text": print it and exit 2
  echo "usage: $1" >&2
  exit 2
}

run() {  # run command...: print it (shell-quoted), then run it unless --dry_run
  printf '%q ' "$@" | sed 's/ $//'
  echo
  if [[ "$DRY_RUN" == 0 ]]; then "$@"; fi
}
