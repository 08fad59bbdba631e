#!/usr/bin/env bash
# Benchmarks the autoscaler's decision core: one tick for 10,000 apps on one thread.
#
# Runs `cargo bench -p tideway-autoscaler --bench tick` (release mode). The bench builds
# 10,000 scalers, each with a full 60 s window of concurrency and rps, then times many
# repetitions of one tick (record one second and decide, for every app) and prints:
#
#   tick for 10000 apps: X ms (goal ≤ 10 ms)          the median of the repetitions
#   window state per app: N bytes (goal ≤ 4096)       Scaler::state_bytes(), the largest
#
# Then the real system's reaction: `tideway server` with `examples/hello` (concurrency target
# 5, stable window 10 s) gets a step from 0 to 40 concurrent clients TIDEWAY_BENCH_RUNS times
# (default 5); each run prints the time from the step to the first scale-up decision and to
# the first new instance being ready, then the medians and maxima.
#
# A missed goal is a result (the line ends in MISSED): the script exits non-zero only when
# the bench cannot be built or run. It takes a few seconds once built.
#
# Environment:
#   CARGO_TARGET_DIR  build directory (default $HOME/.cache/tideway-target)
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tideway-target}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
cargo bench --quiet -p tideway-autoscaler --bench tick
cargo build --quiet -p tideway --bin tideway
cargo test --quiet -p tideway-e2e --test autoscale -- --ignored --nocapture reaction_time_over_runs \
    | grep -E '^(run |reaction )' 
