#!/usr/bin/env bash
# One prepared device run: correctness of every WGSL kernel on a real GPU, then webseq next to
# PyTorch (fp32, TF32 off) on the same card, all in one command. Prepare here, once:
#
#   bash ../shared/tools/gpu-prep.sh
#
# then, with the device tool: carry [".gpu", "node_modules"], timeout_s 590, command:
#
#   source .gpu/setup.sh && bash bench/device_check.sh
#
# Every section has its own time limit, so a slow or failing one cannot take the rest down; all
# output goes to $OUT (device.jsonl: JSON lines; device.log: everything; cache/tuning.json: the
# tuner's choices). The limits add up to about 20 minutes, more than a session's device time: pick
# sections. Session 14's two runs (H100 then H200) took 6.5 and 3.7 minutes, a machine's start
# 0.5. Next: SECTIONS="tests alu pair base base_recomputed base_no_epilogues base_gelu_separate" (about 7
# minutes: base's first step tunes for 85-105 s, now with three flat-slice candidates more, and
# since session 14 an f16 run tunes its f16 products as f16 kernels, about as long again), then
# SECTIONS="sweep16t sweep sweep16s sweep32s base_f16" (about 5). A run that asks for an H100 may get an
# H200 (the device tool's fallback): a TUNE_SEED of the other card's choices does not apply (keyed
# by adapter). When f16 training beats f32 by 1.25x or more, SECTIONS="corpus" (up to 4 minutes)
# tells whether it meets the f16 target's validation-loss half.
set -uo pipefail
OUT=${OUT:-/tmp/webseq-device}
mkdir -p "$OUT"
LOG="$OUT/device.log"
JSONL="$OUT/device.jsonl"
: >"$JSONL"
RUN="deno run -A --cached-only"
PY=${PYTHON:-python3}
export XDG_RUNTIME_DIR=/tmp PYTHONUNBUFFERED=1
# the tuner's choices land in $OUT/cache/tuning.json and come back with the logs; TUNE_SEED=FILE
# (a tuning.json from an earlier run, carried along) starts from those choices instead of tuning
export WEBSEQ_CACHE=${WEBSEQ_CACHE:-$OUT/cache}
mkdir -p "$WEBSEQ_CACHE"
if [ -n "${TUNE_SEED:-}" ]; then cp "$TUNE_SEED" "$WEBSEQ_CACHE/tuning.json" || exit 1; fi

# SECTIONS="tests base" runs only the named sections (default: all)
SECTIONS=${SECTIONS:-all}
wanted() { [ "$SECTIONS" = all ] || [[ " $SECTIONS " == *" $1 "* ]]; }

section() { # section NAME SECONDS COMMAND...: runs it, JSON lines to $JSONL, all to $LOG
  local name=$1 limit=$2
  shift 2
  wanted "$name" || return 0
  echo "== $name ($(date -u +%T), limit ${limit}s)" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" 2>>"$LOG" | tee -a "$LOG" | grep '^{' >>"$JSONL"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$LOG"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$LOG" 2>&1
section info 20 $RUN cli.ts info --json
# 1. correctness on the card: every op GPU vs CPU, every matmul variant, the f16 kernels, every
#    registered attention tile and the mm kernels, the grouped projections, LayerNorm at every lane
#    count, gradients written into AdamW's buffer, the ALU probes' outputs
#    (TEST_FILES="a_test.ts b_test.ts" runs only those)
TEST_FILES=${TEST_FILES:-ops/matmul_test.ts tests/ops_registry_test.ts tests/f16_gpu_test.ts \
  tests/attention_tiled_gpu_test.ts ops/attention_test.ts ops/linear_group_test.ts \
  ops/layer_norm_test.ts optim/_flat_test.ts bench/alu_probe_test.ts ops/gelu_linear_test.ts}
# shellcheck disable=SC2086 # a list of paths
section tests 140 deno test -A --cached-only $TEST_FILES
# 2. matmul: the tuner (every registered variant's ms at 256/1024/4096 and the model's shapes),
#    then a sweep over every tile the generator can build at 4096 (f32, NN and NT; the fastest
#    five of each; session 12 changed how double-buffered tiles index their slices: compare the
#    `d` tiles with their single-buffered twins, 22% slower in session 11)
# what the driver makes of WGSL arithmetic: f32 and f16 FMAs (packed two to an instruction or
# not), a splat multiplicand, the f16 <-> f32 conversions (bench/alu_probe.ts, a few seconds)
section alu 20 $RUN bench/alu_probe.ts --json
# an f16 matmul made for packed half FMAs (bench/f16_pair_probe.ts): even-k and odd-k f16 sums in
# the two lanes of a vec2<f16> per output, no splat, f32 totals every 64 k (g0: only at the end,
# the ceiling without them), 10 tiles (2 staging two rows' pairs per vec4<f16>: "v") at 4096, NN and
# NT, then the generator's f32 and f16/64 kernels on the same operands. Well above the f32 kernel's
# TFLOP/s (near twice), and the generator should take it
section pair 45 $RUN bench/f16_pair_probe.ts --json
section matmul 70 $RUN bench/ops_bench.ts --only model,tune --json
section sweep 50 $RUN bench/ops_bench.ts --only sweep --sweep-seconds 40 \
  --sweep-precisions f32 --json
# session 13 made every slice a 2-D array (`As[k][column]`, the bounds clamp on the column only):
# the tuner's four favourite tiles at 4096 against their flat twins (`f`, byte-identical to
# session 12's kernels), NN and NT, in one table
section layout 45 $RUN bench/ops_bench.ts --only variants --variant-sizes 4096 --layouts NN,NT \
  --min-time-ms 150 --variants t128x128k16_8x8,t128x128k16_8x8f,t128x128k16_4x16,t128x128k16_4x16f,\
t128x128k8_4x16d,t128x128k8_4x16df,t128x128k8_8x8d,t128x128k8_8x8df --json
# attention forward + backward (causal self-attention, D = 64) with the row kernels and each tile
section attention 40 $RUN bench/ops_bench.ts --only attention --json
# the sweep's fastest tile per layout and precision join the tuner's candidates below
TILES=""
wanted sweep && TILES=$($RUN bench/sweep_best.ts "$JSONL" 1 2>>"$LOG" || true)
echo "sweep tiles for --tune-tiles: ${TILES:-none}" | tee -a "$LOG"
TUNE=()
[ -n "$TILES" ] && TUNE=(--tune-tiles "$TILES")
# 3. training throughput next to PyTorch (same preset, batch, optimizer), fp32 then f16; webseq
#    tunes its matmuls and attention kernels on the first warm-up step (--tune auto), "tune_s"
#    says how long, "tuned_attention" what each attention kernel took; "tune_rejected" and
#    "tuned_attention[].rejected" name candidates whose results were wrong on this card
#    Both sides warm up for 1 s first (--warmup-ms, default on a GPU): an idle GPU's clocks come up
#    with load
section small 120 $RUN cli.ts bench --preset small --batch-size 64 --src-len 64 --tgt-len 64 \
  --steps 20 --device webgpu --profile --torch "$PY" --json
# small's step took 46 ms against 12.4 ms of kernel time on the H200 (session 9) when 5 steps were
# timed after 2 warm-up steps: the same after 3 s idle and without the 1 s warm-up (is it the
# clocks?), then 40 steps, each also timed alone (--step-times)
section small_cold 40 sh -c "sleep 3 && $RUN cli.ts bench --preset small --batch-size 64 \
  --src-len 64 --tgt-len 64 --steps 5 --warmup-ms 0 --device webgpu --json"
section small_long 60 $RUN cli.ts bench --preset small --batch-size 64 --src-len 64 --tgt-len 64 \
  --steps 40 --device webgpu --step-times --json
section base 160 $RUN cli.ts bench "${TUNE[@]}" --preset base --batch-size 64 --src-len 128 --tgt-len 128 \
  --steps 10 --device webgpu --profile --torch "$PY" --json
# the Q, K, V projections layer by layer (WEBSEQ_GROUPED_PROJECTIONS=off) against the grouped op
section base_ungrouped 60 env WEBSEQ_GROUPED_PROJECTIONS=off $RUN cli.ts bench "${TUNE[@]}" \
  --preset base --batch-size 64 --src-len 128 --tgt-len 128 --steps 10 --device webgpu --json
# the GELU fused into the loads (WEBSEQ_GELU_STAGE=fused) against its own pass above; the
# tuning cache of the run above makes this one quick
section base_fused 60 env WEBSEQ_GELU_STAGE=fused $RUN cli.ts bench "${TUNE[@]}" --preset base \
  --batch-size 64 --src-len 128 --tgt-len 128 --steps 10 --device webgpu --profile --json
# since session 15 base keeps the GELU activations and attention probabilities for the backward
# (--activations kept, the default; together +1.41 GB at base), runs attention's backward P and
# dS and the forward softmax in product epilogues, and gelu' without branches. What keeping saves:
# both recomputed (the step and peak memory against base's), then only the GELU pass again
section base_recomputed 60 $RUN cli.ts bench "${TUNE[@]}" --preset base --batch-size 64 \
  --src-len 128 --tgt-len 128 --steps 10 --device webgpu --activations recomputed --profile --json
section base_gelu_separate 60 env WEBSEQ_GELU_STAGE=separate $RUN cli.ts bench "${TUNE[@]}" \
  --preset base --batch-size 64 --src-len 128 --tgt-len 128 --steps 10 --device webgpu --json
# attention's softmax, Δ, P and dS in kernels of their own again (WEBSEQ_ATTENTION_EPILOGUES=off;
# probabilities recomputed, so the backward has both): are the epilogues faster?
section base_no_epilogues 60 env WEBSEQ_ATTENTION_EPILOGUES=off $RUN cli.ts bench "${TUNE[@]}" \
  --preset base --batch-size 64 --src-len 128 --tgt-len 128 --steps 10 --device webgpu \
  --activations recomputed --profile --json
section base_f16 180 $RUN cli.ts bench "${TUNE[@]}" --preset base --batch-size 64 --src-len 128 --tgt-len 128 \
  --steps 10 --device webgpu --precision f16 --profile --torch "$PY" --torch-bf16 --json
section base_f16acc 150 $RUN cli.ts bench "${TUNE[@]}" --preset base --batch-size 64 --src-len 128 \
  --tgt-len 128 --steps 10 --device webgpu --precision f16 --f16-accumulate f16 --profile --json
# the f16 target's other half: the built-in corpus trained on the card (seed 0) in f32, f16 and
# f16 with f16 FMAs over 64-deep K groups (f16/64): each run's last metrics line (valid_loss,
# valid_bleu_corpus), tagged; the CPU's emulation measured f16/64 over three seeds (README)
corpus() { # corpus NAME ARGS...: one default run of the built-in corpus on the GPU
  local name=$1
  shift
  $RUN cli.ts train --device webgpu --seed 0 --sample-interval 0 --tune off \
    --out "$OUT/corpus_$name" "$@" >>"$LOG" 2>&1 || return
  tail -n 1 "$OUT/corpus_$name/metrics.jsonl" | sed "s/^{/{\"kind\":\"corpus\",\"mode\":\"$name\",/"
  rm -rf "$OUT/corpus_$name"/*.safetensors "$OUT/corpus_$name/best"
}
corpus_all() { corpus f32 && corpus f16 --precision f16 && corpus f16g64 --precision f16 \
  --f16-accumulate f16/64; }
export -f corpus corpus_all
export RUN OUT LOG
section corpus 240 bash -c corpus_all
# session 13's training modes f16/32, f16/64: base with f16 FMAs over 64-deep K groups
section base_f16acc64 200 $RUN cli.ts bench "${TUNE[@]}" --preset base --batch-size 64 --src-len 128 \
  --tgt-len 128 --steps 10 --device webgpu --precision f16 --f16-accumulate f16/64 --profile --json
# 4. greedy decoding and sampling of base, choosing each token on the host (a readback per step,
#    ~12 ms in Deno 2.9.6) and on the device (a readback per 8 steps)
section generate 60 $RUN bench/generate_bench.ts --preset base --rows 16 --tokens 48 --json
# 5. f16 matmuls at 4096, NN: f32 accumulation with slices staged as f32 (session 12's default)
#    and as f16 widened at each product (f16s, sessions 8-11), and f16 FMAs over groups of 16 k
#    (f16acc) and of 64 (f16acc64: a quarter of the f16 -> f32 conversions)
section sweep16 50 $RUN bench/ops_bench.ts --only sweep --sweep-seconds 42 \
  --sweep-precisions f16,f16s,f16acc,f16acc64 --layouts NN --json
# five tiles in f16 with f32 and with f16/64 accumulation, NN, TN and NT, then f32 NN and TN:
# the H200's session-14 sweep ran NN at 37-43 TFLOP/s and every TN and NT product at 8-19 (the
# training step's TN and NT f16 products ran at 24-40): the layouts, or the order?
section sweep16s 50 $RUN bench/ops_bench.ts --only sweep --sweep-seconds 40 \
  --sweep-tiles t128x128k16_8x8,t128x128k16_8x8p,t128x128k8_8x8d,t64x256k16_8x8,t128x128k16_4x16 \
  --sweep-precisions f16,f16acc64 --layouts NN,TN,NT --json
section sweep32s 20 $RUN bench/ops_bench.ts --only sweep --sweep-seconds 10 \
  --sweep-tiles t128x128k16_8x8,t128x128k16_8x8p,t128x128k8_8x8d,t64x256k16_8x8,t128x128k16_4x16 \
  --sweep-precisions f32 --layouts NN,TN --json
# register-light tiles, never reached by a timed sweep (it starts at 256 threads of 8 x 8): f16
# accumulation keeps an f32 total beside each f16 sum, 96 accumulator registers for an 8 x 8
# thread tile against f32's 64, so fewer workgroups fit an SM. 8 x 4 and 4 x 8 thread tiles (48),
# 4 x 4 (24) and 128-thread 8 x 8 tiles (finer occupancy steps), in f16/64, f16 with f32
# accumulation and f32, NN and NT; the 256-thread 8 x 8 tile first and again last (does the
# order, the clocks, move it?)
LIGHT=t128x128k16_8x8,t128x64k16_8x4,t64x128k16_4x8,t128x64k32_8x4,t64x128k32_4x8,\
t128x64k16_8x4d,t64x128k16_4x8d,t128x128k16_8x4,t128x128k16_4x8,t64x128k16_8x8,t128x64k16_8x8,\
t64x128k32_8x8,t64x128k8_8x8d,t64x64k16_4x4,t64x128k16_4x16,t128x128k16_8x8
section sweep16t 75 $RUN bench/ops_bench.ts --only sweep --sweep-seconds 66 --sweep-tiles "$LIGHT" \
  --sweep-precisions f16acc64,f16,f32 --layouts NN,NT --json
echo "done $(date -u +%T)" | tee -a "$LOG"
