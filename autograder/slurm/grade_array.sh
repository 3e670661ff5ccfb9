#!/usr/bin/env bash
# One shard of a grading run, as a Slurm job array task. Submit with submit.sh, or by hand:
#   sbatch --array=0-7 autograder/slurm/grade_array.sh SUBMISSIONS OUT
# Task i of N grades students i, i+N, i+2N, ... into OUT/shard-i; merge.sh then builds
# OUT/grades.csv from all shards. Run from the repository root, in its Python environment.
#SBATCH --job-name=lora-grade
#SBATCH --cpus-per-task=2
#SBATCH --mem=16G
#SBATCH --time=04:00:00
#SBATCH --output=slurm-%A_%a.out
set -euo pipefail
submissions=${1:?usage: grade_array.sh SUBMISSIONS OUT}
out=${2:?usage: grade_array.sh SUBMISSIONS OUT}
index=${SLURM_ARRAY_TASK_ID:?run as a job array (sbatch --array=0-N)}
count=${SLURM_ARRAY_TASK_COUNT:?run as a job array (sbatch --array=0-N)}
python -m autograder grade "$submissions" --out "$out/shard-$index" --shard "$index/$count" \
    --jobs "${SLURM_CPUS_PER_TASK:-1}"
