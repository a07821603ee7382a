#!/usr/bin/env bash
# Train on a Cloud TPU VM or a multi-host pod slice: create it, install
# hashjax on every worker, run the same command on all workers.
#
#   launch/tpu_vm.sh [--dry-run] --name=NAME --zone=ZONE [--type=v4-32]
#       [--version=tpu-ubuntu2204-base] --repo=GIT_URL [--ref=main]
#       [--project=ID] [--skip-create] -- --config=configs/dgssh.py [...]
#
# Everything after `--` goes to `python -m hashjax.main`. On a pod slice
# every worker runs it; jax.distributed.initialize() detects the slice
# (TPU_WORKER_HOSTNAMES, hashjax/parallel.py), each host feeds its share of
# the global batch, and only process 0 writes logs and results. Use a
# --workdir that all workers see as a local path (NFS, Filestore or a
# gcsfuse mount): orbax saves from every host. --repo is the git URL of
# your hashjax checkout. --dry-run prints the commands instead.
set -euo pipefail

dry_run=0 name="" zone="" type="v4-8" version="tpu-ubuntu2204-base"
repo="" ref="main" project=""
skip_create=0
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --name=*) name="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --type=*) type="${1#*=}" ;;
    --version=*) version="${1#*=}" ;;
    --repo=*) repo="${1#*=}" ;;
    --ref=*) ref="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --skip-create) skip_create=1 ;;
    --) shift; break ;;
    *) echo "tpu_vm.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z "$name" || -z "$zone" || -z "$repo" || $# -eq 0 ]]; then
  echo "usage: $0 [--dry-run] --name=NAME --zone=ZONE --repo=GIT_URL [--type=v4-8] -- --config=configs/X.py [...]" >&2
  exit 2
fi

gcloud_tpu=(gcloud compute tpus tpu-vm)
common=(--zone="$zone")
if [[ -n "$project" ]]; then common+=(--project="$project"); fi

run() {   # prints the command; runs it unless --dry-run
  printf '+'; printf ' %q' "$@"; printf '\n'
  if ((dry_run == 0)); then "$@"; fi
}

printf -v train_args ' %q' "$@"
install="set -e; if [ ! -d hashjax ]; then git clone $repo hashjax; fi; \
cd hashjax && git fetch -q origin && git checkout -q $ref && \
python3 -m pip install -q -e '.[tpu]'"
train="cd hashjax && python3 -m hashjax.main$train_args"

if ((skip_create == 0)); then
  run "${gcloud_tpu[@]}" create "$name" "${common[@]}" \
    --accelerator-type="$type" --version="$version"
fi
run "${gcloud_tpu[@]}" ssh "$name" "${common[@]}" --worker=all \
  --command="$install"
run "${gcloud_tpu[@]}" ssh "$name" "${common[@]}" --worker=all \
  --command="$train"
