#!/usr/bin/env bash
# The scheduler's core on a simulated Colossus: 100,000 GPUs on 12,500 nodes, 1,000 tenants,
# 1,000,000 queued jobs of mixed gang sizes; the first pass (an empty cluster fills), then
# passes after 5 % of running jobs end. Prints placements/s, pass times and peak memory.
#   bench/scheduler/run.sh [extra scheduler_bench flags: --nodes N --tenants N --jobs N --rounds N]
# Needs a build (build/default).
set -euo pipefail
cd "$(dirname "$0")/../.."
build/default/bench/scheduler_bench "$@"
