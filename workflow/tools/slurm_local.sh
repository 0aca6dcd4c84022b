#!/usr/bin/env bash
# slurm_local.sh -- throw-away single-node SLURM cluster for tests (Debian 12 "bookworm", root, no systemd).
# Idempotent: re-running installs nothing new, restarts nothing alive, and only restarts slurm daemons
# whose config changed.
#   (a) apt-installs munge + slurmctld + slurmd + slurm-client (Slurm 22.05.8) [+ slurmdbd + mariadb-server]
#   (b) writes munge key, slurm.conf, gres.conf (fake GPUs), slurmdbd.conf under $SLURM_LOCAL_DIR
#       -- nothing is written to /etc; client wrappers in $SLURM_LOCAL_DIR/bin carry SLURM_CONF
#   (c) starts munged, [mariadbd, slurmdbd,] slurmctld, slurmd in the background (PID files in run/)
#   (d) waits until `sinfo` shows the node idle
# Use afterwards:   eval "$(bash slurm_local.sh --env)"      # PATH=<dir>/bin:$PATH SLURM_CONF=... (quoted: %q)
# Stop:             bash slurm_stop.sh [--purge]             # kills only the PIDs recorded here
# Knobs (env):
#   SLURM_LOCAL_DIR=/tmp/slurm-local   SLURM_LOCAL_PARTITION=debug   SLURM_LOCAL_GPUS=2 (fake, 0=none)
#   SLURM_LOCAL_CPUS / SLURM_LOCAL_MEM_MB: advertise this many CPUs / MB instead of what slurmd detects
#     (SlurmdParameters=config_overrides), so that a workflow profile written for real cluster nodes fits a
#     small test machine; nothing enforces the limits (no cgroups), jobs merely share the real cores
#   SLURM_LOCAL_{CTLD,SLURMD,DBD,MYSQL}_PORT=6817/6818/6819/3307 (pick free ones to run beside another cluster)
#   SLURM_LOCAL_ACCOUNTING=slurmdbd|none
#     slurmdbd: MariaDB-backed accounting -> `sacct` works -> plugin defaults work unchanged (+~20 s install)
#     none    : no database; `sacct` fails ("Slurm accounting storage is disabled"), so snakemake MUST be
#               run with --slurm-status-command squeue (else the plugin silently loses jobs and hangs)
set -euo pipefail

BASE=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
CLUSTER=${SLURM_LOCAL_CLUSTER:-localcluster}
ACCOUNTING=${SLURM_LOCAL_ACCOUNTING:-slurmdbd}
NGPUS=${SLURM_LOCAL_GPUS:-2}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
DBD_PORT=${SLURM_LOCAL_DBD_PORT:-6819}
MYSQL_PORT=${SLURM_LOCAL_MYSQL_PORT:-3307}
WAIT_S=${SLURM_LOCAL_WAIT_S:-60}
export SLURM_CONF=$BASE/etc/slurm.conf

# --env prints shell text for eval: every value is quoted (printf %q), so a SLURM_LOCAL_DIR holding spaces, quotes,
# `$(...)` or `;` is a path, never a command
if [[ ${1:-} == --env ]]; then printf 'export SLURM_CONF=%q PATH=%q:"$PATH"\n' "$SLURM_CONF" "$BASE/bin"; exit 0; fi
[[ $ACCOUNTING =~ ^(slurmdbd|none)$ ]] || { echo "SLURM_LOCAL_ACCOUNTING must be slurmdbd or none" >&2; exit 2; }

t0=$(date +%s)
log() { echo "[slurm_local +$(( $(date +%s) - t0 ))s] $*"; }
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() { local n=$1; shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; return 1; }

# ---------------------------------------------------------------- (a) install
pkgs=(munge slurmctld slurmd slurm-client)
[[ $ACCOUNTING == slurmdbd ]] && pkgs+=(slurmdbd mariadb-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d in containers denies service start: fine, the daemons are started below, by hand
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"${TMPDIR:-/tmp}/slurm_local_apt.log" 2>&1 \
    || { tail -20 "${TMPDIR:-/tmp}/slurm_local_apt.log" >&2; exit 1; }
fi
# NB: never call a slurm client before $SLURM_CONF exists -- it retries for 60 s before failing
log "slurm $(dpkg-query -W -f='${Version}' slurmctld), accounting=$ACCOUNTING, fake gpus=$NGPUS"

# ---------------------------------------------------------------- (b) configure
mkdir -p "$BASE"/{etc,state,spool,log,run,munge,bin,dev,mysql}
chmod 700 "$BASE/munge"
KEY=$BASE/munge/munge.key
MSOCK=$BASE/munge/munge.socket.2
if [[ ! -s $KEY ]]; then
  mungekey --create --keyfile="$KEY" 2>/dev/null || dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none
  chmod 400 "$KEY"
fi

NODE=$(hostname -s)
# CPUs / memory as slurmd detects them (RealMemory minus 512 MB head-room)
read -r CPUS MEM < <(slurmd -C | awk '/^NodeName/{for(i=1;i<=NF;i++){split($i,a,"=");
  if(a[1]=="CPUs")c=a[2]; if(a[1]=="RealMemory")m=a[2]}} END{print c, m-512}')
overrides=""
if [[ -n ${SLURM_LOCAL_CPUS:-} || -n ${SLURM_LOCAL_MEM_MB:-} ]]; then
  CPUS=${SLURM_LOCAL_CPUS:-$CPUS}; MEM=${SLURM_LOCAL_MEM_MB:-$MEM}
  overrides="SlurmdParameters=config_overrides"
fi

gres_node=""; gres_types=""
if (( NGPUS > 0 )); then
  # fake GPUs: gres/gpu needs a character device per GPU; symlinks to /dev/null pass the check and the
  # trailing digit becomes the index -> jobs get CUDA_VISIBLE_DEVICES=0,1,... and queue on GPU slots
  for ((i = 0; i < NGPUS; i++)); do ln -sfn /dev/null "$BASE/dev/nvidia$i"; done
  gres_types="GresTypes=gpu"; gres_node="Gres=gpu:$NGPUS"
  echo "NodeName=$NODE Name=gpu File=$BASE/dev/nvidia[0-$((NGPUS - 1))]" >"$BASE/etc/gres.conf.new"
else
  : >"$BASE/etc/gres.conf.new"
fi

if [[ $ACCOUNTING == slurmdbd ]]; then
  acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for slurmdbd this 'password' is the munge socket path used by the slurmctld<->slurmdbd connection
AccountingStoragePass=$MSOCK
AccountingStorageTRES=gres/gpu
# keep the job comment (the plugin puts rule name + wildcards there): sacct -o Comment%60
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
else
  acct="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi

cat >"$SLURM_CONF.new" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MSOCK
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool/%n
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups, no systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
ReturnToService=2
$overrides
$acct
JobCompType=jobcomp/none
# keep finished jobs visible to squeue for 10 min (plugin's squeue status mode needs >= 3x init interval)
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

changed=0
for f in "$SLURM_CONF" "$BASE/etc/gres.conf"; do
  if ! cmp -s "$f.new" "$f"; then mv "$f.new" "$f"; changed=1; log "wrote $f"; else rm -f "$f.new"; fi
done

if [[ $ACCOUNTING == slurmdbd ]]; then
  cat >"$BASE/etc/slurmdbd.conf.new" <<EOF
AuthType=auth/munge
AuthInfo=socket=$MSOCK
DbdHost=$NODE
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$BASE/run/slurmdbd.pid
LogFile=$BASE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=slurm-local-only
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$BASE/etc/slurmdbd.conf.new"     # slurmdbd refuses a world-readable config
  if ! cmp -s "$BASE/etc/slurmdbd.conf.new" "$BASE/etc/slurmdbd.conf"; then
    mv "$BASE/etc/slurmdbd.conf.new" "$BASE/etc/slurmdbd.conf"; changed=1
  else rm -f "$BASE/etc/slurmdbd.conf.new"; fi
fi

# Client wrappers: snakemake-executor-plugin-slurm-jobstep strips every SLURM_* variable except a few
# job-identity ones (SLURM_CONF included) before its nested `srun`, so inside a job srun would look for
# /etc/slurm/slurm.conf and die ("Could not establish a configuration source").  PATH survives
# (sbatch --export=ALL), so these wrappers re-inject SLURM_CONF for every client command.
for c in $(dpkg -L slurm-client | sed -n 's#^/usr/bin/##p'); do
  printf '#!/bin/sh\nSLURM_CONF=%s exec /usr/bin/%s "$@"\n' "$SLURM_CONF" "$c" >"$BASE/bin/$c.new"
  chmod +x "$BASE/bin/$c.new"; mv "$BASE/bin/$c.new" "$BASE/bin/$c"
done
export PATH=$BASE/bin:$PATH

# a config change restarts the slurm daemons (munged / mariadbd keep running)
if ((changed)); then
  for d in slurmd slurmctld slurmdbd; do
    if alive "$BASE/run/$d.pid"; then
      log "config changed: restarting $d"
      pid=$(cat "$BASE/run/$d.pid"); kill "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
  done
fi

# ---------------------------------------------------------------- (c) start daemons
if ! alive "$BASE/run/munged.pid"; then
  log "starting munged"
  munged --force --key-file="$KEY" --socket="$MSOCK" --pid-file="$BASE/run/munged.pid" \
         --log-file="$BASE/log/munged.log" --seed-file="$BASE/munge/munged.seed"
fi
wait_for 50 test -S "$MSOCK"
munge -n -S "$MSOCK" | unmunge -S "$MSOCK" >/dev/null \
  || { echo "munge self-test failed; see $BASE/log/munged.log" >&2; exit 1; }

if [[ $ACCOUNTING == slurmdbd ]]; then
  DATADIR=$BASE/mysql/data SOCK=$BASE/mysql/mysqld.sock
  if [[ ! -d $DATADIR/mysql ]]; then
    log "initialising MariaDB in $DATADIR"
    mariadb-install-db --no-defaults --datadir="$DATADIR" --user=root \
      --auth-root-authentication-method=socket --skip-test-db >"$BASE/log/mariadb-install.log" 2>&1
  fi
  if ! alive "$BASE/run/mariadbd.pid"; then
    log "starting mariadbd (127.0.0.1:$MYSQL_PORT)"
    nohup /usr/sbin/mariadbd --no-defaults --datadir="$DATADIR" --socket="$SOCK" --user=root \
      --pid-file="$BASE/run/mariadbd.pid" --log-error="$BASE/log/mariadbd.log" \
      --bind-address=127.0.0.1 --port="$MYSQL_PORT" \
      --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
  fi
  wait_for 150 mariadb --no-defaults -S "$SOCK" -u root -e 'select 1' \
    || { echo "mariadbd did not come up; see $BASE/log/mariadbd.log" >&2; exit 1; }
  mariadb --no-defaults -S "$SOCK" -u root -e "
    CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm-local-only';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  if ! alive "$BASE/run/slurmdbd.pid"; then
    log "starting slurmdbd"
    slurmdbd           # finds slurmdbd.conf next to $SLURM_CONF; daemonizes, writes PidFile
  fi
  wait_for 100 sacctmgr -n list cluster \
    || { echo "slurmdbd not answering; see $BASE/log/slurmdbd.log" >&2; exit 1; }
fi

if ! alive "$BASE/run/slurmctld.pid"; then
  log "starting slurmctld"
  slurmctld -f "$SLURM_CONF"      # daemonizes, writes SlurmctldPidFile
fi
wait_for 100 sh -c 'scontrol ping | grep -q UP'

if ! alive "$BASE/run/slurmd.pid"; then
  log "starting slurmd"
  slurmd -f "$SLURM_CONF"         # daemonizes, writes SlurmdPidFile
fi

# ---------------------------------------------------------------- (d) wait for idle node
state=""
for _ in $(seq $((WAIT_S * 2))); do
  state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null | head -1 || true)
  case $state in
    idle|mix|alloc) break ;;
    down*|drain*|fail*|inval*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;;
  esac
  sleep 0.5
done
if [[ ! $state =~ ^(idle|mix|alloc)$ ]]; then
  echo "node $NODE not idle after ${WAIT_S}s (state='$state'); see $BASE/log/" >&2
  scontrol show node "$NODE" | grep -i reason >&2 || true
  exit 1
fi
if [[ $ACCOUNTING == slurmdbd ]]; then   # slurmctld registers the cluster itself; wait until it has
  wait_for 100 sh -c "sacctmgr -n -P list cluster format=cluster | grep -qx '$CLUSTER'" || true
fi
log "node $NODE is $state in partition $PARTITION"
sinfo -o "%P %a %l %D %t %N %G"
echo "export SLURM_CONF=$SLURM_CONF PATH=$BASE/bin:\$PATH"
