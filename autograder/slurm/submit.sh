#!/usr/bin/env bash
# Grade a class on a Slurm cluster: N array tasks, then one merge job once they have all ended.
#   autograder/slurm/submit.sh SUBMISSIONS OUT [N=8]
set -euo pipefail
submissions=${1:?usage: submit.sh SUBMISSIONS OUT [N]}
out=${2:?usage: submit.sh SUBMISSIONS OUT [N]}
tasks=${3:-8}
here=$(dirname "$0")
array_job=$(sbatch --parsable --array=0-$((tasks - 1)) "$here/grade_array.sh" "$submissions" "$out")
sbatch --dependency=afterany:"$array_job" "$here/merge.sh" "$out" "$tasks"
echo "submitted grading array $array_job ($tasks tasks) and its merge; results in $out/grades.csv"
