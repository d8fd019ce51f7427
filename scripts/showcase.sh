#!/usr/bin/env bash
# The README's Part A showcase, on the shipped models: `bash scripts/showcase.sh [OUT] [THREADS]`.
set -euo pipefail
OUT=${1:-docs/showcase}
THREADS=${2:-$(nproc)}
F=${FUNDIFF:-fundiff}
common=(--threads "$THREADS" --device cpu)

# MNIST digits (shipped mnist-class)
$F anagram --model mnist-class --prompts 6 9 --view rot180 --n 4 --out "$OUT/mnist-anagram-rot180" "${common[@]}"
$F anagram --model mnist-class --prompts 2 5 --view vflip --n 4 --out "$OUT/mnist-anagram-vflip" "${common[@]}"
$F hybrid --model mnist-class --low 8 --high 3 --n 4 --out "$OUT/mnist-hybrid" "${common[@]}"
$F inpaint --model mnist-class --index 0 --mask-preset top-half --prompt 9 --n 4 --out "$OUT/mnist-inpaint" "${common[@]}"
$F sdedit --model mnist-class --image two seven four --prompt "" --out "$OUT/mnist-sdedit-drawn" "${common[@]}"
$F generate --model mnist-class --n 4 --out "$OUT/mnist-generate" "${common[@]}"
# the Visual Anagrams paper's views, a hybrid whose low band is an image, a sampling animation
for view in inner-circle patch:4 skew pixel; do
  $F anagram --model mnist-class --prompts 6 9 --view "$view" --n 4 --out "$OUT/mnist-anagram-${view//:/}" "${common[@]}"
done
$F hybrid --model mnist-class --low-image seven --high 3 --n 4 --out "$OUT/mnist-hybrid-low-image" "${common[@]}"
$F generate --model mnist-class --prompt 3 7 --n 2 --animate --out "$OUT/mnist-animation" "${common[@]}"

# Fashion-MNIST with class names as prompts (shipped fashion-class)
$F anagram --model fashion-class --prompts trouser "a bag" --view vflip --n 4 --out "$OUT/fashion-anagram-vflip" "${common[@]}"
$F anagram --model fashion-class --prompts sneaker sandal --view hflip --n 4 --out "$OUT/fashion-anagram-hflip" "${common[@]}"
$F hybrid --model fashion-class --low bag --high "t-shirt" --n 4 --out "$OUT/fashion-hybrid" "${common[@]}"
$F inpaint --model fashion-class --index 0 --mask-preset top-half --prompt sneaker --n 4 --out "$OUT/fashion-inpaint" "${common[@]}"
$F sdedit --model fashion-class --image shirt --prompt "a shirt" --out "$OUT/fashion-sdedit-drawn" "${common[@]}"
$F generate --model fashion-class --n 4 --out "$OUT/fashion-generate" "${common[@]}"
echo "showcase written to $OUT"
