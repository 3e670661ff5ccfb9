#!/usr/bin/env bash
# Merge the shards of a grading run into OUT/grades.csv and OUT/feedback (also runs locally).
#   autograder/slurm/merge.sh OUT [N]
# With N (submit.sh passes it), shards OUT/shard-0 ... OUT/shard-(N-1) are expected and one that
# is missing is reported; without N, every OUT/shard-* is merged. Exit 1, after merging what is
# there, when a shard is missing or a student of the class has no result (each is named).
#SBATCH --job-name=lora-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem=2G
#SBATCH --time=00:10:00
set -euo pipefail
out=${1:?usage: merge.sh OUT [N]}
if [ $# -ge 2 ]; then
  shards=()
  for ((i = 0; i < $2; i++)); do shards+=("$out/shard-$i"); done
else
  shards=("$out"/shard-*)
fi
python -m autograder merge "$out" "${shards[@]}"
