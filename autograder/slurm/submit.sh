#!/usr/bin/env bash
# Grade a class on a Slurm cluster: N array tasks, then one merge job once they have all ended.
#   autograder/slurm/submit.sh SUBMISSIONS OUT [N=8]
#   autograder/slurm/submit.sh --resume OUT      resubmit only the tasks that did not finish
# Task i grades students i, i+N, i+2N, ... into OUT/shard-i and marks it finished with
# OUT/shard-i/DONE; the tasks share nothing but the read-only submissions and repository. The
# merge job builds OUT/grades.csv and names every student without a result. Job logs go to
# OUT/slurm-logs; other sbatch options through SBATCH_* environment variables.
set -euo pipefail
usage="usage: submit.sh SUBMISSIONS OUT [N] | submit.sh --resume OUT"
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
if [ "${1:-}" = "--resume" ]; then
  out=$(realpath "${2:?$usage}")
  if [ ! -f "$out/submit.env" ]; then
    echo "no $out/submit.env: resume a folder that submit.sh SUBMISSIONS OUT created" >&2
    exit 2
  fi
  source "$out/submit.env"  # submissions, tasks
  todo=()
  for ((i = 0; i < tasks; i++)); do
    [ -f "$out/shard-$i/DONE" ] || todo+=("$i")
  done
else
  submissions=$(realpath "${1:?$usage}")
  out=$(realpath -m "${2:?$usage}")
  tasks=${3:-8}
  mkdir -p "$out"
  printf 'submissions=%q\ntasks=%q\n' "$submissions" "$tasks" > "$out/submit.env"
  todo=($(seq 0 $((tasks - 1))))
fi
mkdir -p "$out/slurm-logs"
after=()
if [ ${#todo[@]} -gt 0 ]; then
  list=$(IFS=,; echo "${todo[*]}")
  array_job=$(sbatch --parsable --chdir="$repo" --array="$list" \
    --output="$out/slurm-logs/grade-%A_%a.out" \
    "$here/grade_array.sh" "$submissions" "$out" "$tasks")
  after=(--dependency=afterany:"$array_job")
  echo "submitted grading array $array_job (tasks $list of $tasks)"
else
  echo "every one of the $tasks tasks has finished: merging only"
fi
merge_job=$(sbatch --parsable --chdir="$repo" --output="$out/slurm-logs/merge-%j.out" \
  "${after[@]}" "$here/merge.sh" "$out" "$tasks")
echo "submitted merge job $merge_job; results in $out/grades.csv"
