#!/usr/bin/env bash
# Everything a lent GPU machine is asked in one call (at most 8 minutes on one H200), each step
# bounded by its own time limit, every log and figure written under $OUT:
#
#   bash benchmarks/gpu_prepare.sh              # here first: wheels and MNIST into .whl/, .device_data/
#   bash benchmarks/gpu_check.sh                # on the GPU machine (carry .whl and .device_data)
#   bash benchmarks/gpu_check.sh --smoke        # on a CPU: every step, tiny, on the CPU
#
# Steps: versions (nvidia-smi, torch, CUDA, cuDNN); the fast test suite; experiment=seed004
# for 3 full epochs (s/epoch); each head with trainer.deterministic=true; host reads and synchronising CUDA calls per training step
# (default, weight averaging, bf16-mixed, augmentation); benchmarks/epoch_time.py with fp32,
# bf16-mixed, channels_last on/off and compile on/off; a 16-job seed sweep with joblib
# n_jobs=1,4,8 on the one GPU (jobs per minute); the packed-network probe for N = 1, 8, 32.
# A step that fails or runs out of time is marked so in $OUT/steps.txt and the next one runs.
set -u
cd "$(dirname "$0")/.."
REPO=$PWD
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
OUT=${OUT:-$REPO/gpu_check_out}
mkdir -p "$OUT"
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 MPLCONFIGDIR=$WORK/mpl

if [ -d .whl ] && ! python3 -c "import hydra, omegaconf, optuna, submitit" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
DATA=$REPO/.device_data
[ -d "$DATA/MNIST/raw" ] || DATA=$(cd "$REPO/.." && pwd)/shared/datasets

if [ $SMOKE = 1 ]; then
  ACC=cpu; EPOCHS=1; LIMIT="trainer.limit_train_batches=3 trainer.limit_val_batches=1 trainer.limit_test_batches=1"
  SWEEP_JOBS=4; SWEEP_S=60; STEPS=3; PACK=1,2; TESTS="tests/test_gpu_ready.py -k pools"
  BENCH_LIMIT="--limit-batches 3"
  SCALE=5  # a 2-core CPU starts processes and compiles far slower than the GPU machine
else
  ACC=gpu; EPOCHS=3; LIMIT=""
  SWEEP_JOBS=16; SWEEP_S=25; STEPS=20; PACK=1,8,32; TESTS="-n 16"
  BENCH_LIMIT=""
  SCALE=1
fi
PROBE=$REPO/.device_data/packed_probe.py
[ -f "$PROBE" ] || PROBE=$(cd "$REPO/.." && pwd)/shared/probes/packed_probe.py
PROBE_DEVICE=$([ $ACC = gpu ] && echo cuda || echo cpu)
echo "step rc seconds" > "$OUT/steps.txt"

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, log to $OUT/NAME.log
  local name=$1 limit=$(($2 * SCALE)); shift 2
  local start=$SECONDS
  echo "=== $name (limit ${limit}s)"
  if declare -F "$1" >/dev/null; then set -- bash -c "$1"; fi  # a function of this script
  timeout --signal=TERM --kill-after=15 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "$name $rc $((SECONDS - start))" >> "$OUT/steps.txt"
}

versions() {
  nvidia-smi || echo "nvidia-smi: not found"
  python3 - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version(), "| CPU capability", torch.backends.cpu.get_cpu_capability())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("GPU", p.name, f"{p.total_memory / 2**30:.0f} GiB", p.multi_processor_count, "SMs",
          "| TF32 for cuDNN convolutions:", torch.backends.cudnn.allow_tf32)
EOF
}

seed004() {  # s/epoch of the seed-004 network, as a user runs it
  python3 -m mnist_sweep experiment=seed004 trainer.max_epochs=$EPOCHS $LIMIT \
    trainer.accelerator=$ACC trainer.enable_progress_bar=false data.root="$DATA" \
    hydra.run.dir="$WORK/seed004" || return 1
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print('device', s.get('device_name'), '| s/epoch', [round(x, 2) for x in s['epoch_seconds']], '| test acc', s['metrics']['test/acc'])" "$WORK/seed004/status.json"
}

deterministic() {  # every head trains with trainer.deterministic=true (no CUDA error)
  for head in gmp gap flatten; do
    python3 -m mnist_sweep head=$head trainer.deterministic=true trainer.max_epochs=1 \
      trainer.limit_train_batches=20 trainer.limit_val_batches=2 trainer.limit_test_batches=2 \
      trainer.accelerator=$ACC trainer.enable_progress_bar=false data.root="$DATA" \
      hydra.run.dir="$WORK/deterministic_$head" | tail -n 2 || return 1
  done
}

sweep() {  # jobs per minute of a seed sweep on one GPU, by joblib worker count
  for n in 1 4 8; do
    local dir=$WORK/sweep_n$n start=$SECONDS
    timeout --signal=TERM --kill-after=15 $((SWEEP_S * SCALE)) python3 -m mnist_sweep -m \
      "seed=range(1,$((SWEEP_JOBS + 1)))" trainer.max_epochs=2 $LIMIT hydra/launcher=joblib \
      hydra.launcher.n_jobs=$n trainer.accelerator=$ACC data.root="$DATA" \
      hydra.sweep.dir="$dir" > "$OUT/sweep_n$n.log" 2>&1
    local rc=$? took=$((SECONDS - start))
    local done_jobs
    done_jobs=$(grep -l '"status": "finished"' "$dir"/*/status.json 2>/dev/null | wc -l)
    python3 -c "import sys; n,d,t,rc=map(int,sys.argv[1:]); print(f'n_jobs={n}: {d} of $SWEEP_JOBS jobs finished in {t} s ({\"ended, rc=\"+str(rc) if rc != 124 else \"time limit\"}): {60*d/max(t,1):.1f} jobs per minute')" $n "$done_jobs" $took $rc
  done
}

export REPO OUT WORK DATA ACC EPOCHS LIMIT SWEEP_JOBS SWEEP_S SCALE
export -f versions seed004 deterministic sweep
step versions 20 versions
step seed004 60 seed004
step deterministic 30 deterministic
step host_syncs 60 python3 benchmarks/host_reads.py --data-root "$DATA" --steps $STEPS \
  --accelerator $ACC --json "$OUT/host_syncs.json"
step epoch_time 140 python3 benchmarks/epoch_time.py --data-root "$DATA" --modes b,c \
  --accelerator $ACC --epochs $((EPOCHS < 2 ? 2 : EPOCHS)) --switch bf16 --switch contiguous \
  --switch compile $BENCH_LIMIT --json "$OUT/epoch_time.json"
step sweep $((3 * SWEEP_S + 15)) sweep
step packed 40 python3 "$PROBE" --device $PROBE_DEVICE --n $PACK --steps 10 --rounds 2 \
  --channels-last
step tests 50 python3 -m pytest -q -p no:cacheprovider $TESTS
cat "$OUT/steps.txt"
rm -rf "$WORK"
