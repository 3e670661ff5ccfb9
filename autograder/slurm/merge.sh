#!/usr/bin/env bash
# Merge the shards of a grading run into OUT/grades.csv and OUT/feedback (also runs locally).
#SBATCH --job-name=lora-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:10:00
set -euo pipefail
out=${1:?usage: merge.sh OUT}
python -m autograder merge "$out" "$out"/shard-*
