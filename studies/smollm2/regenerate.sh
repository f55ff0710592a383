#!/usr/bin/env bash
# Re-measure studies/smollm2 on this machine with the real engine and rewrite its
# profile.json.gz and CARD.md: accuracy (every heldout question x 16 samples), then the
# decode grid (prompt lengths derived from those samples) with and without n-gram prompt
# lookup, then n-gram acceptance per position.
#   bash studies/smollm2/regenerate.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tune() { .venv/bin/latts-tune --storage "sqlite:///$scratch/smollm2.db" "$@"; }
model='{cache}/models/SmolLM2-135M-Instruct'
task=task:studies/smollm2/task.yaml
.venv/bin/latts-tune models smollm2 >/dev/null  # converted once into the cache
tune profile accuracy --model "$model" --task "$task" --questions 245 --samples 16 \
  --temperature 0.7 --max-tokens 16 --max-model-len 256
tune profile decode --model "$model" --method ngram --option prompt_lookup_min=1 \
  --option prompt_lookup_max=3 --gamma 1,2,3 --batch-sizes 1,2,4,8,16 \
  --decode-tokens 16 --max-model-len 256
tune profile acceptance --model "$model" --method ngram --option prompt_lookup_min=1 \
  --option prompt_lookup_max=3 --gamma 1,2,3 --task "$task" --temperature 0.7 \
  --max-tokens 16 --max-model-len 256
tune profiles export studies/smollm2/profile.json.gz
tune profiles card -o studies/smollm2/CARD.md --title "SmolLM2-135M-Instruct on addition" \
  --regenerate "bash studies/smollm2/regenerate.sh"
