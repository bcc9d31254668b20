#!/usr/bin/env bash
# One device session, in the order of what it settles: the captured step's correctness on the GPU, its speed, time
# to grok (and what TF32 changes in it), then the papers' full budgets in the minutes left. The device lends an
# issue ~15 minutes in all, start-up included: the parts below should take ~7 minutes at the goals'
# speeds (an estimate), and at most 12 (their timeouts).
# Results land in $OUT.
#
#   on the device:  bash benchmarks/device_session.sh              (groklab and its dependencies installed there:
#                   they travel as wheels, the device machine has no internet; see the device tool's README)
#   to try it here: DEVICE=cpu QUICK=1 KS=1,2 OUT=/tmp/session bash benchmarks/device_session.sh
set -uo pipefail
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-/tmp/device-session}
KS=${KS:-1,16,256,1024}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# 1. Correctness (~1 min): the captured step replays bit for bit and equals the eager update; stacked == alone;
#    exact resume; dropout masks drawn on the device.
GROKLAB_TEST_DEVICE=$DEVICE timeout 180 python -m pytest -q -x -p no:cacheprovider tests/unit/test_captured.py \
    tests/unit/test_engine.py tests/unit/test_checkpoint.py 2>&1 | tee "$OUT/tests.txt"

# 2. Speed (~2 min): nanda-modadd and power-division steps, plain / eager / captured; stacks of 1..1024; launches.
timeout 180 python benchmarks/bench_gpu.py --device "$DEVICE" --parts steps,profile,throughput --ks "$KS" \
    > "$OUT/bench_gpu.md" 2> "$OUT/bench_gpu.err"

# 3. Time to grok (~1 min each at the goal): nanda-modadd from process start to test loss < 1 and 99%, then with
#    train.tf32 (same milestones?).
timeout 100 python benchmarks/time_to_grok.py --device "$DEVICE" ${QUICK:+--set train.steps=300} | tee "$OUT/ttg.md"
timeout 100 python benchmarks/time_to_grok.py --device "$DEVICE" --set train.tf32=true ${QUICK:+--set train.steps=300} \
    | tee "$OUT/ttg-tf32.md"

# 4. The papers' full budgets in the minutes left (full_budgets.py lists what did not fit, with estimates).
# An entry's estimate can be wrong: the timeout stops the last one (the rows printed so far are in budgets.md).
timeout 240 python benchmarks/full_budgets.py --device "$DEVICE" --minutes "${MINUTES:-3}" --out "$OUT/budgets" \
    ${QUICK:+--quick} | tee "$OUT/budgets.md"
