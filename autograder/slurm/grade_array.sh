#!/usr/bin/env bash
# One shard of a grading run, as a Slurm job array task. Submit with submit.sh, or by hand:
#   sbatch --array=0-7 autograder/slurm/grade_array.sh SUBMISSIONS OUT [N]
# Task i of N (default: the array's size) grades students i, i+N, i+2N, ... into OUT/shard-i and,
# once every one of them has a result, writes OUT/shard-i/DONE; merge.sh then builds
# OUT/grades.csv from all shards. Run from the repository root, in its Python environment.
#SBATCH --job-name=lora-grade
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
submissions=${1:?usage: grade_array.sh SUBMISSIONS OUT [N]}
out=${2:?usage: grade_array.sh SUBMISSIONS OUT [N]}
index=${SLURM_ARRAY_TASK_ID:?run as a job array (sbatch --array=0-N)}
count=${3:-${SLURM_ARRAY_TASK_COUNT:?run as a job array (sbatch --array=0-N)}}
shard="$out/shard-$index"
rm -f "$shard/DONE"
# a rerun (submit.sh --resume) regrades only the students of this shard without a result
python -m autograder grade "$submissions" --out "$shard" --shard "$index/$count" \
    --jobs "${SLURM_CPUS_PER_TASK:-1}"
touch "$shard/DONE"
