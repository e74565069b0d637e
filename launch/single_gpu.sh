#!/usr/bin/env bash
# Train on one GPU of this machine (no cluster, no multi-host initialisation):
#
#   launch/single_gpu.sh --install -- --config=configs/sft.py:tiny --workdir=runs/sft-tiny
#   launch/single_gpu.sh --gpu=1 --module=psycho_jax.pipeline -- --config=configs/pipeline.py:demo --workdir=runs/demo
#   launch/single_gpu.sh --dry_run -- --config=configs/sft.py:llama3_8b --workdir=runs/sft-8b
#
# Relative paths in ARGS (configs/..., the workdir) are relative to the repository: the script runs
# there. One 80 GB GPU takes the :tiny variants, the smaller presets and 8B evaluation in bfloat16;
# training the 8B model needs ~130 GB for its float32 parameters, gradients and Adam state alone, so the
# llama3_8b configs are sized for 16 devices: use tpu_pod.sh or slurm_gpu.sh for them.
set -euo pipefail
# die, quote, join_quoted, run, set_env
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
usage: launch/single_gpu.sh [options] -- ARGS...

Runs `python -m MODULE ARGS...` on one GPU. ARGS are passed through exactly.

  --install              create the venv (if missing) and pip install -e '.[cuda]' into it first
  --venv=DIR             the virtual environment (default: .venv in the repository)
  --gpu=N                which GPU: CUDA_VISIBLE_DEVICES=N (default: 0)
  --module=MOD           psycho_jax.main (default) or psycho_jax.pipeline, or another entry point
  --mem_fraction=F       XLA_PYTHON_CLIENT_MEM_FRACTION, the share of GPU memory JAX preallocates
                         (default: 0.9; JAX's own default is 0.75)
  --xla_flags=S          XLA_FLAGS (default: none, or the environment's XLA_FLAGS)
  --dry_run              print the commands, run nothing (also DRY_RUN=1)
  -h, --help             this message
EOF
}

# On one GPU there are no collectives, so the multi-GPU flags of slurm_gpu.sh do nothing here; what
# matters is memory. JAX preallocates XLA_PYTHON_CLIENT_MEM_FRACTION of the GPU at start-up
# (XLA_PYTHON_CLIENT_PREALLOCATE=false allocates on demand instead: slower, and fragments). If a run
# fails only with CUDA graphs, XLA_FLAGS=--xla_gpu_enable_command_buffer= turns them off.
DRY_RUN=${DRY_RUN:-0}
INSTALL=0 VENV="" GPU=0 MODULE=psycho_jax.main MEM_FRACTION=0.9 XLA_FLAGS_VALUE=${XLA_FLAGS:-}
ARGS=()
SEEN_SEPARATOR=0
while (($#)); do
  case $1 in
    --install) INSTALL=1 ;;
    --venv=*) VENV=${1#*=} ;;
    --gpu=*) GPU=${1#*=} ;;
    --module=*) MODULE=${1#*=} ;;
    --mem_fraction=*) MEM_FRACTION=${1#*=} ;;
    --xla_flags=*) XLA_FLAGS_VALUE=${1#*=} ;;
    --dry_run) DRY_RUN=1 ;;
    -h | --help)
      usage
      exit 0
      ;;
    --)
      shift
      SEEN_SEPARATOR=1
      ARGS=("$@")
      break
      ;;
    *) die "unknown option '$1' (options take --name=value; the program's arguments go after --)" ;;
  esac
  shift
done

if ((!SEEN_SEPARATOR || !${#ARGS[@]})); then
  die "the program's arguments are required after --, e.g. -- --config=configs/sft.py:tiny --workdir=runs/sft-tiny"
fi
[[ $GPU =~ ^[0-9]+$ ]] || die "--gpu must be a GPU number (got '$GPU')"
[[ $MEM_FRACTION =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || die "--mem_fraction must be in (0, 1] (got '$MEM_FRACTION')"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$REPO/.venv}
PYTHON=$VENV/bin/python

if ((!INSTALL)) && [[ $DRY_RUN != 1 && ! -x $PYTHON ]]; then
  die "no Python at $PYTHON: pass --install, or --venv=DIR of an environment with psycho_jax[cuda]"
fi

run cd "$REPO"
if ((INSTALL)); then
  if [[ ! -x $PYTHON ]]; then
    run python3 -m venv "$VENV"
  fi
  run "$PYTHON" -m pip install --quiet -e '.[cuda]'
fi

set_env CUDA_VISIBLE_DEVICES "$GPU"
set_env XLA_PYTHON_CLIENT_MEM_FRACTION "$MEM_FRACTION"
if [[ -n $XLA_FLAGS_VALUE ]]; then
  set_env XLA_FLAGS "$XLA_FLAGS_VALUE"
fi
# One process: a PSYCHO_JAX_* left in the environment must not make it wait for a cluster.
echo "+ unset PSYCHO_JAX_DISTRIBUTED PSYCHO_JAX_COORDINATOR PSYCHO_JAX_NUM_PROCESSES PSYCHO_JAX_PROCESS_ID"
unset PSYCHO_JAX_DISTRIBUTED PSYCHO_JAX_COORDINATOR PSYCHO_JAX_NUM_PROCESSES PSYCHO_JAX_PROCESS_ID
run "$PYTHON" -m "$MODULE" "${ARGS[@]}"
