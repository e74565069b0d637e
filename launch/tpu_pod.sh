#!/usr/bin/env bash
# Train on a Cloud TPU VM slice: the same command on every worker, multi-host JAX behind one flag.
#
#   launch/tpu_pod.sh --tpu=psycho-v5p --zone=us-east5-a --accelerator=v5p-16 \
#       --bucket=gs://my-bucket/psycho_jax --run=sft-8b -- \
#       --config=configs/sft.py:llama3_8b --config.init_from=/mnt/gcs/my-bucket/Llama-3.1-8B-Instruct \
#       --config.tokenizer=/mnt/gcs/my-bucket/Llama-3.1-8B-Instruct
#   launch/tpu_pod.sh --tpu=psycho-v5p --zone=us-east5-a --delete
#
# Every command is printed as `+ command` before it runs; --dry_run (or DRY_RUN=1) prints them and runs
# nothing (no gcloud needed). Run it from a machine that stays up (tmux, a small VM): the run streams
# over ssh, and a dropped ssh session ends the remote processes.
set -euo pipefail
# die, quote, join_quoted, run, set_env
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
  cat <<'EOF'
usage: launch/tpu_pod.sh --tpu=NAME --zone=ZONE --bucket=gs://BUCKET[/PREFIX] [options] -- ARGS...
       launch/tpu_pod.sh --tpu=NAME --zone=ZONE [--project=ID] [--queued] --delete

Creates (or reuses) a TPU VM slice, installs this project on every worker, runs
`python -m MODULE ARGS... --workdir=WORKDIR --distributed` on all workers at once with
PSYCHO_JAX_DISTRIBUTED=1 (jax.distributed.initialize() finds the slice's workers itself), streams the
output here (appended to --log) and leaves the workdir in the bucket. ARGS are passed through exactly;
the script owns --workdir.

  --tpu=NAME             TPU VM (and queued resource) name                                  (required)
  --zone=ZONE            e.g. us-east5-a for v5p, us-east1-d for v6e                        (required)
  --project=ID           default: gcloud's configured project
  --bucket=gs://B[/P]    where the run's workdir lives (gcsfuse) or is copied to   (required to run)
  --run=NAME             the workdir is <bucket>/<run>; the same name again resumes its newest
                         checkpoint (default: tpu-YYYYmmdd-HHMMSS)
  --accelerator=TYPE     slice type for create: v5p-16 (default), v6e-16, v5litepod-16, v4-16, ...
  --version=RUNTIME      TPU software version; default from the type: v2-alpha-tpuv5 (v5p),
                         v2-alpha-tpuv6e (v6e), v2-alpha-tpuv5-lite (v5e), tpu-ubuntu2204-base (v4)
  --spot                 create as Spot VMs (cheap, preemptible; a preempted slice must be deleted)
  --queued               create through a queued resource (waits for capacity) instead of tpu-vm create
  --module=MOD           psycho_jax.main (default) or psycho_jax.pipeline, or another entry point
  --workdir_on=WHERE     bucket (default): mount the bucket with gcsfuse at /mnt/gcs/BUCKET on every
                         worker and write there (needed on multi-host slices: every host writes its
                         checkpoint shards into one directory all hosts see);
                         local: write to /var/tmp/psycho_jax_runs/RUN on each worker's disk and
                         `gcloud storage rsync` it to the bucket afterwards (single-host slices only)
  --git_url=URL          clone URL on every worker instead of copying this checkout
  --git_ref=REF          branch, tag or commit to check out with --git_url (default: main)
  --python_version=V     Python for the workers' venv, installed with uv (default: 3.12)
  --libtpu_init_args=S   LIBTPU_INIT_ARGS (default: the collective-overlap hints below; '' for none)
  --env=NAME=VALUE       extra environment for the run on every worker (repeatable; printed and
                         logged, so no secrets)
  --log=FILE             local log of the streamed output (default: /tmp/psycho_jax_launch/TPU-RUN.log)
  --skip_create          do not describe/create; the slice must exist
  --skip_install         do not copy or install (the workers already have this checkout)
  --delete_after         delete the slice when the run ends (after the workdir is in the bucket)
  --delete               only delete the slice (and its queued resource with --queued), then exit
  --dry_run              print the commands, run nothing (also DRY_RUN=1)
  -h, --help             this message
EOF
}

# Prints a query as `+ cmd` and stores its output in the variable named $1: '' in a dry run, or when
# the query fails (a TPU that does not exist).
probe() {
  local var=$1 out=""
  shift
  echo "+ $(join_quoted "$@")"
  if [[ $DRY_RUN != 1 ]]; then
    out=$("$@" 2>/dev/null) || out=""
  fi
  printf -v "$var" '%s' "$out"
}

# As run, with stdout and stderr streamed to the terminal and appended to $LOG.
run_logged() {
  echo "+ $(join_quoted "$@") 2>&1 | tee -a $(quote "$LOG")"
  if [[ $DRY_RUN != 1 ]]; then
    mkdir -p "$(dirname "$LOG")"
    "$@" 2>&1 | tee -a "$LOG"
  fi
}

# ----------------------------------------------------------------------------------------------------
# LIBTPU_INIT_ARGS: flags for the TPU compiler (libtpu), read once when the TPU backend starts.
# None of them is needed for correctness; all are performance hints whose effect depends on the model,
# the slice and the libtpu release, and a flag that a later libtpu drops can make start-up fail (then
# pass --libtpu_init_args='' or your own set). The default is MaxText's "continuation fusion for
# all-gather" group (benchmarks/xla_flags_library.py: CF_FOR_ALL_GATHER), which its Llama 3.1 8B
# recipes use; it targets FSDP, where each layer's weights are all-gathered right before use (our
# llama3_8b configs shard over an fsdp axis). Descriptions follow JAX's docs/xla_flags.md:
#   --xla_tpu_enable_async_collective_fusion=true            fuse async collectives with the compute
#                                                            scheduled between their start and done
#   --xla_tpu_enable_async_collective_fusion_fuse_all_gather=true   ...including all-gathers
#   --xla_tpu_enable_async_collective_fusion_multiple_steps=true    continue one collective over
#                                                            several fusions
#   --xla_tpu_overlap_compute_collective_tc=true             overlap compute and communication on one
#                                                            TensorCore
#   --xla_enable_async_all_gather=true                       asynchronous all-gathers
# Others worth knowing, not set here:
#   --xla_tpu_scoped_vmem_limit_kib=98304                    MaxText's value for dense models on v6e
#                                                            (VMEM per op; tuned per chip generation)
#   --xla_tpu_enable_data_parallel_all_reduce_opt=true and
#   --xla_tpu_data_parallel_opt_different_sized_ops=true     overlap data-parallel all-reduces over DCN:
#                                                            only for multi-slice runs
DEFAULT_LIBTPU_INIT_ARGS="--xla_tpu_enable_async_collective_fusion=true \
--xla_tpu_enable_async_collective_fusion_fuse_all_gather=true \
--xla_tpu_enable_async_collective_fusion_multiple_steps=true \
--xla_tpu_overlap_compute_collective_tc=true \
--xla_enable_async_all_gather=true"

# Remote layout: ssh starts in the worker's home directory, where the code and the venv live.
REMOTE_CODE=psycho_jax
REMOTE_VENV=psycho_jax_venv
LOCAL_RUNS=/var/tmp/psycho_jax_runs
MOUNT_ROOT=/mnt/gcs

DRY_RUN=${DRY_RUN:-0}
TPU="" ZONE="" PROJECT="" BUCKET="" RUN_NAME="" ACCELERATOR=v5p-16 VERSION="" SPOT=0 QUEUED=0
MODULE=psycho_jax.main WORKDIR_ON=bucket GIT_URL="" GIT_REF=main PYTHON_VERSION=3.12 LOG=""
LIBTPU_INIT_ARGS_VALUE=$DEFAULT_LIBTPU_INIT_ARGS SKIP_CREATE=0 SKIP_INSTALL=0 DELETE_AFTER=0 DELETE=0
EXTRA_ENV=()
ARGS=()
SEEN_SEPARATOR=0
while (($#)); do
  case $1 in
    --tpu=*) TPU=${1#*=} ;;
    --zone=*) ZONE=${1#*=} ;;
    --project=*) PROJECT=${1#*=} ;;
    --bucket=*) BUCKET=${1#*=} ;;
    --run=*) RUN_NAME=${1#*=} ;;
    --accelerator=*) ACCELERATOR=${1#*=} ;;
    --version=*) VERSION=${1#*=} ;;
    --spot) SPOT=1 ;;
    --queued) QUEUED=1 ;;
    --module=*) MODULE=${1#*=} ;;
    --workdir_on=*) WORKDIR_ON=${1#*=} ;;
    --git_url=*) GIT_URL=${1#*=} ;;
    --git_ref=*) GIT_REF=${1#*=} ;;
    --python_version=*) PYTHON_VERSION=${1#*=} ;;
    --libtpu_init_args=*) LIBTPU_INIT_ARGS_VALUE=${1#*=} ;;
    --env=*) EXTRA_ENV+=("${1#*=}") ;;
    --log=*) LOG=${1#*=} ;;
    --skip_create) SKIP_CREATE=1 ;;
    --skip_install) SKIP_INSTALL=1 ;;
    --delete_after) DELETE_AFTER=1 ;;
    --delete) DELETE=1 ;;
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

[[ -n $TPU ]] || die "--tpu=NAME is required"
[[ -n $ZONE ]] || die "--zone=ZONE is required"
GCLOUD_WHERE=(--zone="$ZONE")
[[ -z $PROJECT ]] || GCLOUD_WHERE+=(--project="$PROJECT")

delete_slice() {
  if ((QUEUED)); then
    run gcloud compute tpus queued-resources delete "$TPU" "${GCLOUD_WHERE[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$TPU" "${GCLOUD_WHERE[@]}" --quiet
  fi
}

if ((DELETE)); then
  ((!SEEN_SEPARATOR)) || die "--delete takes no program arguments"
  delete_slice
  exit 0
fi

# Validation of a run.
if ((!SEEN_SEPARATOR || !${#ARGS[@]})); then
  die "the program's arguments are required after --, e.g. -- --config=configs/sft.py:llama3_8b"
fi
[[ $BUCKET =~ ^gs://[a-z0-9][-a-z0-9_.]*[a-z0-9](/.*)?$ ]] || die "--bucket=gs://BUCKET[/PREFIX] is required (got '${BUCKET}')"
[[ $WORKDIR_ON == bucket || $WORKDIR_ON == local ]] || die "--workdir_on must be bucket or local (got '$WORKDIR_ON')"
for arg in "${ARGS[@]}"; do
  case $arg in
    --workdir | --workdir=*) die "do not pass --workdir after --: the workdir is <bucket>/<run> (set --bucket and --run)" ;;
  esac
done
for kv in ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"}; do
  [[ $kv =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env takes NAME=VALUE (got '$kv')"
done
if [[ -z $VERSION ]]; then
  case $ACCELERATOR in
    v6e-*) VERSION=v2-alpha-tpuv6e ;;
    v5p-*) VERSION=v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) VERSION=v2-alpha-tpuv5-lite ;;
    v4-* | v3-* | v2-*) VERSION=tpu-ubuntu2204-base ;;
    *) die "no default --version for --accelerator=$ACCELERATOR; pass --version=RUNTIME" ;;
  esac
fi
RUN_NAME=${RUN_NAME:-tpu-$(date +%Y%m%d-%H%M%S)}
[[ $RUN_NAME =~ ^[A-Za-z0-9_.-]+$ ]] || die "--run must be letters, digits, '_', '.', '-' (got '$RUN_NAME')"
LOG=${LOG:-${TMPDIR:-/tmp}/psycho_jax_launch/$TPU-$RUN_NAME.log}

BUCKET=${BUCKET%/}
BUCKET_NAME=${BUCKET#gs://}
BUCKET_NAME=${BUCKET_NAME%%/*}
DEST=$BUCKET/$RUN_NAME
if [[ $WORKDIR_ON == bucket ]]; then
  WORKDIR=$MOUNT_ROOT/${BUCKET#gs://}/$RUN_NAME
else
  WORKDIR=$LOCAL_RUNS/$RUN_NAME
  echo "# note: --workdir_on=local suits single-host slices; on several hosts Orbax needs one shared directory" >&2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ssh_all() { # ssh_all COMMAND: runs one shell command on every worker of the slice
  run gcloud compute tpus tpu-vm ssh "$TPU" "${GCLOUD_WHERE[@]}" --worker=all --command="$1"
}

# 1. The slice: reuse it when it exists, else create it.
if ((!SKIP_CREATE)); then
  state="" qstate=""
  probe state gcloud compute tpus tpu-vm describe "$TPU" "${GCLOUD_WHERE[@]}" --format='value(state)'
  [[ $DRY_RUN != 1 ]] || echo "# dry run: assuming $TPU does not exist yet"
  case $state in
    READY) echo "# reusing $TPU (READY)" ;;
    PREEMPTED | TERMINATED)
      echo "tpu_pod.sh: $TPU is $state and cannot be restarted; delete it (--delete) and run again" >&2
      exit 1
      ;;
    "")
      spot=()
      ((!SPOT)) || spot=(--spot)
      if ((QUEUED)); then
        # A queued resource may already be waiting (an earlier call stopped during the wait).
        queued=(gcloud compute tpus queued-resources describe "$TPU" "${GCLOUD_WHERE[@]}" --format='value(state.state)')
        probe qstate "${queued[@]}"
        if [[ -z $qstate ]]; then
          run gcloud compute tpus queued-resources create "$TPU" "${GCLOUD_WHERE[@]}" --node-id="$TPU" \
            --accelerator-type="$ACCELERATOR" --runtime-version="$VERSION" ${spot[@]+"${spot[@]}"}
        fi
        until [[ $qstate == ACTIVE || $DRY_RUN == 1 ]]; do
          case $qstate in
            FAILED | SUSPENDED)
              echo "tpu_pod.sh: queued resource $TPU is $qstate; see its describe output, then --delete --queued" >&2
              exit 1
              ;;
          esac
          echo "# $TPU: queued resource ${qstate:-requested}; checking again in 60 s"
          sleep 60
          probe qstate "${queued[@]}"
        done
      else
        run gcloud compute tpus tpu-vm create "$TPU" "${GCLOUD_WHERE[@]}" \
          --accelerator-type="$ACCELERATOR" --version="$VERSION" ${spot[@]+"${spot[@]}"}
      fi
      ;;
    *) echo "# $TPU is $state; trying to use it" ;;
  esac
fi

# 2. The code and a venv on every worker. TPU VM images ship an older Python than the project needs
# (3.11+), so uv installs the interpreter. jax[tpu] brings libtpu from PyPI.
if ((!SKIP_INSTALL)); then
  if [[ -n $GIT_URL ]]; then
    fetch="rm -rf $REMOTE_CODE && git clone --quiet $(quote "$GIT_URL") $REMOTE_CODE && git -C $REMOTE_CODE checkout --quiet $(quote "$GIT_REF")"
  else
    tarball=${TMPDIR:-/tmp}/psycho_jax_src_${TPU}_$RUN_NAME.tar.gz
    [[ $DRY_RUN == 1 ]] || trap 'rm -f "$tarball"' EXIT
    run tar -czf "$tarball" -C "$REPO" --exclude=./.git --exclude=./.venv --exclude=./venv \
      --exclude=./runs --exclude=./workdir --exclude=__pycache__ --exclude='*.egg-info' \
      --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.jax_cache .
    run gcloud compute tpus tpu-vm scp "$tarball" "$TPU:$REMOTE_CODE.tar.gz" "${GCLOUD_WHERE[@]}" --worker=all
    fetch="rm -rf $REMOTE_CODE && mkdir $REMOTE_CODE && tar -xzf $REMOTE_CODE.tar.gz -C $REMOTE_CODE && rm $REMOTE_CODE.tar.gz"
  fi
  install="$fetch && python3 -m pip install --user --quiet --upgrade uv"
  install+=" && python3 -m uv venv --quiet --allow-existing --python $(quote "$PYTHON_VERSION") $REMOTE_VENV"
  install+=" && python3 -m uv pip install --quiet --python $REMOTE_VENV/bin/python -e './${REMOTE_CODE}[tpu]'"
  if [[ $WORKDIR_ON == bucket ]]; then
    # gcsfuse from Google's apt repository, as its installation guide does it.
    install+=" && { command -v gcsfuse >/dev/null || { echo \"deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-\$(lsb_release -cs) main\" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && sudo apt-get update -qq && sudo apt-get install -y -qq gcsfuse; }; }"
  fi
  ssh_all "$install"
fi

# 3. The run: one command, all workers at once. On TPU VMs jax.distributed.initialize() reads the
# slice's worker list from the metadata server, so no coordinator address is needed.
program=(env PSYCHO_JAX_DISTRIBUTED=1 "LIBTPU_INIT_ARGS=$LIBTPU_INIT_ARGS_VALUE" ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"}
  "../$REMOTE_VENV/bin/python" -m "$MODULE" "${ARGS[@]}" "--workdir=$WORKDIR" --distributed)
remote="cd $REMOTE_CODE"
if [[ $WORKDIR_ON == bucket ]]; then
  # A directory rename on gcsfuse copies objects one by one and is refused above --rename-dir-limit;
  # Orbax renames each finished checkpoint directory, so the limit is raised.
  mnt=$MOUNT_ROOT/$BUCKET_NAME
  remote+=" && { mountpoint -q $mnt || { sudo mkdir -p $mnt && sudo chown \"\$(id -u):\$(id -g)\" $mnt"
  remote+=" && gcsfuse --implicit-dirs --rename-dir-limit=200000 $BUCKET_NAME $mnt; }; }"
fi
remote+=" && $(join_quoted "${program[@]}")"
rc=0
run_logged gcloud compute tpus tpu-vm ssh "$TPU" "${GCLOUD_WHERE[@]}" --worker=all --command="$remote" || rc=$?

# 4. The workdir in the bucket, whether or not the run succeeded (a failed run's logs matter too).
# Each worker copies its own files into the same prefix, so per-host files all arrive.
if [[ $WORKDIR_ON == local ]]; then
  ssh_all "gcloud storage rsync --recursive $WORKDIR $(quote "$DEST")" || rc=$((rc ? rc : $?))
fi
run gcloud storage cp "$LOG" "$DEST/launch.log" || rc=$((rc ? rc : $?))
echo "# workdir: $DEST  (exit status $rc)"

# 5. Optionally, the slice goes away.
if ((DELETE_AFTER)); then
  delete_slice
fi
exit "$rc"
