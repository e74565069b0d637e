#!/usr/bin/env bash
# Train on a SLURM GPU cluster: the same command on every node, multi-host JAX behind one flag.
# Submit from the repository root (the defaults below are overridden on the sbatch command line):
#
#   sbatch launch/slurm_gpu.sh -- --config=configs/sft.py:llama3_8b --workdir=/shared/runs/sft-8b
#   sbatch --nodes=4 launch/slurm_gpu.sh --per_gpu -- --config=configs/dpo.py:llama3_8b --workdir=...
#   bash launch/slurm_gpu.sh --dry_run -- --config=configs/sft.py:llama3_8b --workdir=/shared/runs/x
#
# The workdir must be on a filesystem every node sees (Lustre, NFS, GPFS): every process writes its
# checkpoint shards into it. Resubmitting the same command resumes from the newest checkpoint; with
# --signal below, SLURM sends SIGTERM 5 minutes before the time limit and the run saves and stops.
#SBATCH --job-name=psycho_jax
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --mem=0
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@300
#SBATCH --output=%x-%j.out
set -euo pipefail
# die, quote, join_quoted, run, set_env. sbatch runs a copy of this script from its spool directory:
# then the helpers are those of the checkout sbatch was called from.
LAUNCH_DIR=$(dirname "${BASH_SOURCE[0]}")
[[ -f $LAUNCH_DIR/common.sh ]] || LAUNCH_DIR=${SLURM_SUBMIT_DIR:-.}/launch
# shellcheck source=launch/common.sh
source "$LAUNCH_DIR/common.sh"

# Used outside an allocation (--dry_run); keep equal to the #SBATCH lines above.
DEFAULT_NODES=2
DEFAULT_GPUS_PER_NODE=8
DEFAULT_CPUS_PER_NODE=32

usage() {
  cat <<'EOF'
usage: sbatch [SBATCH OPTIONS] launch/slurm_gpu.sh [options] -- ARGS...
       bash launch/slurm_gpu.sh --dry_run [options] -- ARGS...

Runs `python -m MODULE ARGS... --distributed` with srun on every node of the allocation, with
PSYCHO_JAX_DISTRIBUTED=1: jax.distributed.initialize() reads SLURM's variables (SLURM_NTASKS,
SLURM_PROCID, SLURM_STEP_NODELIST, ...) and finds the coordinator itself. ARGS (--config=...,
--workdir=... on a shared filesystem) are passed through exactly.

  --per_gpu              one process per GPU (default: one process per node driving all its GPUs)
  --module=MOD           psycho_jax.main (default) or psycho_jax.pipeline, or another entry point
  --python=PATH          interpreter (default: REPO/.venv/bin/python if present, else python3)
  --repo=DIR             the checkout to run from (default: the directory sbatch was called from)
  --nodes=N              node count (default: the allocation's, else 2)
  --gpus_per_node=G      GPUs per node (default: the allocation's, else 8)
  --xla_flags=S          XLA_FLAGS (default: the GPU collective-overlap flags documented in the
                         script; '' for none); an XLA_FLAGS already in the environment is appended
  --mem_fraction=F       XLA_PYTHON_CLIENT_MEM_FRACTION, the share of GPU memory JAX preallocates
                         (default: 0.9; JAX's own default is 0.75)
  --dry_run              print the environment and the srun command, run nothing (also DRY_RUN=1)
  -h, --help             this message
EOF
}

# ----------------------------------------------------------------------------------------------------
# XLA_FLAGS for multi-GPU training. All are performance hints, none is needed for correctness, and
# their effect depends on the model, the interconnect and the jaxlib release (XLA refuses a flag it
# no longer knows, which tests/test_launch.py checks against the installed jaxlib):
#   --xla_gpu_enable_latency_hiding_scheduler=true   schedule collectives early so they overlap with
#                                                    compute (JAX's GPU performance tips; off by
#                                                    default); the one that matters most with FSDP
#   --xla_gpu_enable_pipelined_all_gather=true       pipeline FSDP's per-layer all-gathers and
#   --xla_gpu_enable_pipelined_reduce_scatter=true   reduce-scatters across the scanned layers
#   --xla_gpu_enable_pipelined_all_reduce=true       (NVIDIA JAX-Toolbox's FSDP recommendations)
#   --xla_gpu_enable_while_loop_double_buffering=true  double-buffer the scan over layers
# Others worth knowing, not set here:
#   --xla_gpu_enable_command_buffer=                 empty: no CUDA graphs; try it when a run hangs or
#                                                    runs out of memory only with command buffers
#   --xla_gpu_all_gather_combine_threshold_bytes=N, --xla_gpu_reduce_scatter_combine_threshold_bytes=N
#                                                    combine small collectives (size ~ one layer's
#                                                    weights)
# NCCL (environment, cluster-specific, none set here but NCCL_DEBUG):
#   NCCL_DEBUG=INFO             prints the topology and transports NCCL chose (WARN: errors only)
#   NCCL_SOCKET_IFNAME=...      the network interface for bootstrap/socket traffic (e.g. ib0, eth0)
#   NCCL_IB_HCA=...             which InfiniBand adapters to use, on multi-rail nodes
#   CUDA_DEVICE_MAX_CONNECTIONS=1  older NVIDIA advice for Hopper; NVIDIA advises against it on
#                               Blackwell
DEFAULT_XLA_FLAGS="--xla_gpu_enable_latency_hiding_scheduler=true \
--xla_gpu_enable_pipelined_all_gather=true \
--xla_gpu_enable_pipelined_reduce_scatter=true \
--xla_gpu_enable_pipelined_all_reduce=true \
--xla_gpu_enable_while_loop_double_buffering=true"

DRY_RUN=${DRY_RUN:-0}
PER_GPU=0 MODULE=psycho_jax.main PYTHON="" REPO="" NODES="" GPUS="" MEM_FRACTION=0.9
XLA_FLAGS_VALUE=$DEFAULT_XLA_FLAGS
ARGS=()
SEEN_SEPARATOR=0
while (($#)); do
  case $1 in
    --per_gpu) PER_GPU=1 ;;
    --module=*) MODULE=${1#*=} ;;
    --python=*) PYTHON=${1#*=} ;;
    --repo=*) REPO=${1#*=} ;;
    --nodes=*) NODES=${1#*=} ;;
    --gpus_per_node=*) GPUS=${1#*=} ;;
    --xla_flags=*) XLA_FLAGS_VALUE=${1#*=} ;;
    --mem_fraction=*) MEM_FRACTION=${1#*=} ;;
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
  die "the program's arguments are required after --, e.g. -- --config=configs/sft.py:llama3_8b --workdir=/shared/runs/x"
fi
if [[ $DRY_RUN != 1 && -z ${SLURM_JOB_ID:-} ]]; then
  die "not inside a SLURM allocation: submit with sbatch (or run under salloc), or pass --dry_run"
fi
NODES=${NODES:-${SLURM_JOB_NUM_NODES:-$DEFAULT_NODES}}
GPUS=${GPUS:-${SLURM_GPUS_ON_NODE:-$DEFAULT_GPUS_PER_NODE}}
CPUS=${SLURM_CPUS_ON_NODE:-$DEFAULT_CPUS_PER_NODE}
[[ $NODES =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer (got '$NODES')"
[[ $GPUS =~ ^[1-9][0-9]*$ ]] || die "--gpus_per_node must be a positive integer (got '$GPUS')"
[[ $MEM_FRACTION =~ ^(0?\.[0-9]+|1(\.0*)?)$ ]] || die "--mem_fraction must be in (0, 1] (got '$MEM_FRACTION')"

# sbatch runs a copy of this script from its spool directory, so the checkout is where sbatch was
# called, not next to $0.
if [[ -z $REPO ]]; then
  if [[ -n ${SLURM_SUBMIT_DIR:-} ]]; then
    REPO=$SLURM_SUBMIT_DIR
  else
    REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  fi
fi
[[ -f $REPO/psycho_jax/main.py ]] || die "$REPO is not a psycho_jax checkout: submit from the repository root or pass --repo=DIR"
if [[ -z $PYTHON ]]; then
  if [[ -x $REPO/.venv/bin/python ]]; then PYTHON=$REPO/.venv/bin/python; else PYTHON=python3; fi
fi

if ((PER_GPU)); then
  tasks_per_node=$GPUS
else
  tasks_per_node=1
fi
cpus_per_task=$((CPUS / tasks_per_node))
((cpus_per_task >= 1)) || cpus_per_task=1

run cd "$REPO"
set_env PSYCHO_JAX_DISTRIBUTED 1
# The explicit coordinator variables would override SLURM's; the cluster is detected instead.
echo "+ unset PSYCHO_JAX_COORDINATOR PSYCHO_JAX_NUM_PROCESSES PSYCHO_JAX_PROCESS_ID"
unset PSYCHO_JAX_COORDINATOR PSYCHO_JAX_NUM_PROCESSES PSYCHO_JAX_PROCESS_ID
if ((!PER_GPU)); then
  # Under SLURM, jax.distributed.initialize() limits each process to GPU number SLURM_LOCALID, i.e.
  # one process per GPU. With one process per node that would leave it GPU 0 alone, so the node's
  # GPUs are named explicitly. With --per_gpu, JAX's default (GPU SLURM_LOCALID of the node's GPUs)
  # is the one wanted: do not bind GPUs to tasks (no --gpus-per-task), every task must see them all.
  set_env JAX_LOCAL_DEVICE_IDS "$(seq -s, 0 $((GPUS - 1)))"
fi
set_env XLA_PYTHON_CLIENT_MEM_FRACTION "$MEM_FRACTION"
xla_flags="$XLA_FLAGS_VALUE${XLA_FLAGS:+ $XLA_FLAGS}"
set_env XLA_FLAGS "${xla_flags# }"
set_env NCCL_DEBUG "${NCCL_DEBUG:-WARN}"

# --label prefixes every output line with its task number; --kill-on-bad-exit stops all tasks when
# one fails, instead of leaving the others waiting in a collective until the time limit.
run srun --nodes="$NODES" --ntasks=$((NODES * tasks_per_node)) --ntasks-per-node="$tasks_per_node" \
  --cpus-per-task="$cpus_per_task" --kill-on-bad-exit=1 --label \
  "$PYTHON" -m "$MODULE" "${ARGS[@]}" --distributed
