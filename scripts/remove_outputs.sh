# Sourced by the scripts that re-make fixed-name folders under runs/ (bash).
# remove_outputs DIR NAME...: delete DIR only if every entry in it is one of NAME (what the script's
# own command writes there); a folder holding anything else is kept and the script stops.
remove_outputs() {
  local dir=$1 entry name ok; shift
  [[ -e $dir ]] || return 0
  if [[ ! -d $dir || -L $dir ]]; then
    echo "$dir is not a folder this script wrote; move it away first" >&2
    exit 1
  fi
  for entry in "$dir"/* "$dir"/.[!.]*; do
    [[ -e $entry ]] || continue
    ok=0
    for name in "$@"; do [[ ${entry##*/} == "$name" ]] && ok=1; done
    if [[ $ok == 0 ]]; then
      echo "$dir holds ${entry##*/}, which this script did not write; move it away first" >&2
      exit 1
    fi
  done
  rm -rf "$dir"
}
EVAL_OUTPUTS=(results.md results.csv results.json crops plots)
RUN_OUTPUTS=(checkpoints config.yaml metrics.csv tensorboard samples)
