#!/usr/bin/env bash
# s3-ceph.sh — a throwaway single-node Ceph cluster whose RADOS Gateway is a real S3 server.
# The project's copy: spec/support/s3.ts runs it for the s3 driver's tests (free ports, a temp DIR);
# CI installs its packages in .ci/run.
#
# Usage: s3-ceph.sh start [DIR]    start (idempotent: a healthy running instance is kept)
#        s3-ceph.sh stop [DIR]     stop it (by recorded pid); logs stay in DIR
#        s3-ceph.sh status [DIR]   pids, RSS, whether S3 answers; exit 0 only if all is up
#        s3-ceph.sh env [DIR]      prints `export ...` lines: eval "$(s3-ceph.sh env)"
#
# Needs (Debian 12, as root):
#   apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd ceph-common
# (Ceph 16.2.15 "pacific"; ~60 MB download, ~265 MB installed, ~20 s.) Also curl.
#
# In a CI script:
#   apt-get update -qq
#   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
#     radosgw ceph-mon ceph-osd ceph-common
#   S3_CEPH_BUCKET=ci-blobs s3-ceph.sh start     # exits non-zero with log tails on failure
#   trap 's3-ceph.sh stop' EXIT                   # the daemons outlive the script otherwise
#   eval "$(s3-ceph.sh env)"                      # S3_ENDPOINT, AWS_ACCESS_KEY_ID, ...
#
# What `start` runs — plain processes, no systemd, no cephadm, no mgr, all state in DIR
# (default $S3_CEPH_DIR or /tmp/s3-ceph; wiped and rebuilt on every fresh start):
#   ceph-mon  mon.a          127.0.0.1:$S3_CEPH_MON_PORT (msgr v2, default 3300)
#   ceph-osd  osd.0          memstore (objects live in the OSD's RAM; nothing on disk), on
#                            127.0.0.1, 8 ports picked by Ceph from 6800-7300
#   radosgw   client.rgw.a   beast frontend, http://127.0.0.1:$S3_CEPH_PORT (default 7480)
# cephx auth between the daemons; pools of size 1 with 8 PGs; one S3 user "test".
# It is ready when a SigV4-signed ListBuckets answers 200: about 2-3 s after `start` on 2 cores.
#
# S3 client settings (AWS SDK v3): endpoint http://127.0.0.1:7480, region us-east-1,
# forcePathStyle: true, and requestChecksumCalculation/responseChecksumValidation
# 'WHEN_REQUIRED' (or the AWS_REQUEST_CHECKSUM_CALCULATION / AWS_RESPONSE_CHECKSUM_VALIDATION
# variables that `env` prints): with the SDK's default, a PutObject of a stream is sent
# aws-chunked with a trailing checksum, which this RGW refuses (411 MissingContentLength).
# Known RGW 16 quirks: CompleteMultipartUpload answers <ETag></ETag> (empty, so lib-storage's
# Upload().done() gives ETag ''); HeadObject after it gives the real "md5-of-part-md5s-N" ETag.
# Error bodies have an empty <Message> (the SDK's e.message is "UnknownError"; e.name is right).
#
# Environment (all optional):
#   S3_CEPH_DIR          state dir (default /tmp/s3-ceph); DIR as an argument wins
#                        (stop/status/env use the port/keys/bucket DIR's instance started with)
#   S3_CEPH_PORT         S3 port (default 7480)        S3_CEPH_MON_PORT  mon port (default 3300)
#   S3_CEPH_ACCESS_KEY   default s3cephtestaccesskey  S3_CEPH_SECRET_KEY  default s3cephtestsecretkey
#   S3_CEPH_BUCKET       a bucket to create at start (default: none)
#   S3_CEPH_MEM_MIB      memstore capacity in MiB (default 8192). Objects live in the OSD's RAM:
#                        its RSS grows ~1.7x the bytes stored (deleted objects' data is freed by
#                        RGW's garbage collector 1-2 min later). Past 99% of this the cluster is
#                        marked full a few seconds later and further writes HANG (no error).
#   S3_CEPH_TIMEOUT      seconds to wait for S3 to answer (default 120)
# Processes are only ever stopped by the pid this script recorded (DIR/pids/*.pid holds
# "pid starttime", so a reused pid is never signalled). Logs: DIR/log/.
set -euo pipefail

CMD="${1:-}"
DIR="${2:-${S3_CEPH_DIR:-/tmp/s3-ceph}}"
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac
PORT="${S3_CEPH_PORT:-7480}"
MON_PORT="${S3_CEPH_MON_PORT:-3300}"
AK="${S3_CEPH_ACCESS_KEY:-s3cephtestaccesskey}"
SK="${S3_CEPH_SECRET_KEY:-s3cephtestsecretkey}"
BUCKET="${S3_CEPH_BUCKET:-}"
MEM_MIB="${S3_CEPH_MEM_MIB:-8192}"
TIMEOUT="${S3_CEPH_TIMEOUT:-120}"
REGION=us-east-1
DAEMONS=(mon osd rgw)
CONF="$DIR/ceph.conf"

log() { echo "[s3-ceph $(date +%H:%M:%S)] $*" >&2; }
die() { echo "[s3-ceph] ERROR: $*" >&2; exit 1; }

# --- pid bookkeeping -------------------------------------------------------------------
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
proc_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}'; }
# pid_of NAME -> the pid if NAME runs (pid file, process alive, same start time)
pid_of() {
  local f="$DIR/pids/$1.pid" pid="" start=""
  [ -f "$f" ] || return 1
  read -r pid start < "$f" || true
  [ -n "$pid" ] || return 1
  alive "$pid" || return 1
  [ "$(proc_start "$pid")" = "$start" ] || return 1
  echo "$pid"
}
# launch NAME CMD... : CMD in the background, own session, output to DIR/log/NAME.out
launch() {
  local name="$1" pid; shift
  setsid "$@" >>"$DIR/log/$name.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid $(proc_start "$pid")" > "$DIR/pids/$name.pid"
  disown "$pid" 2>/dev/null || true
}
alive() { local st; st="$(proc_state "$1")"; [ -n "$st" ] && [ "$st" != Z ]; }
# stop_pids NAME... : SIGTERM them together, wait up to 10 s, then SIGKILL
stop_pids() {
  local name pid pids=() i any
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  for ((i = 0; i < 100; i++)); do
    any=0
    for pid in "${pids[@]}"; do if alive "$pid"; then any=1; fi; done
    if [ "$any" = 0 ]; then break; fi
    sleep 0.1
  done
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then
      log "$name (pid $pid) still running 10 s after SIGTERM; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/pids/$name.pid"
  done
}

# rgw first (its shutdown talks to the OSD and mon; it hangs if they are gone), then the osd
# (it tells the mon it is going), then the mon.
stop_all() {
  stop_pids rgw
  stop_pids osd
  stop_pids mon
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" 2>/dev/null || true; }

s3_ready() {
  local p
  for p in "${DAEMONS[@]}"; do pid_of "$p" >/dev/null || return 1; done
  [ "$(http_code -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:$REGION:s3" \
    --user "$AK:$SK" "http://127.0.0.1:$PORT/")" = 200 ]
}

tails() {
  local f
  for f in "$DIR"/log/*.log "$DIR"/log/*.out; do
    [ -s "$f" ] || continue
    echo "----- tail $f" >&2; tail -n 25 "$f" >&2
  done
}

fail_start() {
  echo "[s3-ceph] ERROR: $*" >&2
  tails
  log "stopping what was started (state kept in $DIR)"
  stop_all
  exit 1
}

write_conf() {
  cat > "$CONF" <<EOF
# generated by s3-ceph.sh — throwaway single-node cluster
[global]
fsid = $1
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $DIR/keyring
run dir = $DIR/run
crash dir = $DIR/crash
log file = $DIR/log/\$name.log
admin socket = $DIR/run/\$name.asok
# one OSD: replicas of 1; 8 PGs a pool (default 32: 7 RGW pools would sit near the 250-per-OSD
# cap, and each PG costs OSD threads/memory); cap raised anyway
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail warn = 2
mon data avail crit = 1
mon osd nearfull ratio = .97
mon osd backfillfull ratio = .98
mon osd full ratio = .99
osd failsafe full ratio = .995
# each pool create / osdmap change waits for a paxos round; shorten them (default 1 s)
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = $DIR/mon.\$id
mon allow pool delete = true

[osd]
osd data = $DIR/osd.\$id
osd objectstore = memstore
memstore device bytes = $((MEM_MIB * 1024 * 1024))

[client]
admin socket = $DIR/run/\$name.\$pid.asok
# an op sent before the OSD is up is retried on this tick (default 5 s: rgw start 7 s -> 2 s)
objecter tick interval = 0.5

[client.rgw.a]
admin socket = $DIR/run/\$name.asok
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $DIR/rgw
# free deleted objects' tails after a minute, not 2 h (memstore keeps them in RAM)
rgw gc obj min wait = 60
rgw gc processor period = 60
EOF
}

do_start() {
  local c
  for c in radosgw radosgw-admin ceph-mon ceph-osd ceph ceph-authtool monmaptool; do
    command -v "$c" >/dev/null ||
      die "$c not found: apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd ceph-common"
  done
  for c in curl setsid; do command -v "$c" >/dev/null || die "$c not found"; done

  if [ -f "$DIR/.s3-ceph" ] && s3_ready; then
    log "already running: http://127.0.0.1:$PORT (dir $DIR)"
    return 0
  fi
  # Not (fully) running: stop leftovers of ours, then rebuild DIR from scratch.
  if [ -e "$DIR" ]; then
    if [ -f "$DIR/.s3-ceph" ]; then
      stop_all
    elif [ -n "$(ls -A "$DIR" 2>/dev/null)" ]; then
      die "$DIR exists, is not empty and was not made by s3-ceph.sh; refusing to wipe it"
    fi
  fi
  port_busy "$PORT" && die "port $PORT is in use (set S3_CEPH_PORT)"
  port_busy "$MON_PORT" && die "port $MON_PORT is in use (set S3_CEPH_MON_PORT)"

  local t0=$SECONDS fsid osd_uuid
  rm -rf "$DIR"
  mkdir -p "$DIR"/{pids,log,run,crash,rgw,mon.a,osd.0}
  : > "$DIR/.s3-ceph"
  fsid="$(cat /proc/sys/kernel/random/uuid)"; osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
  write_conf "$fsid"

  # keys: mon., client.admin (CLI + radosgw-admin), osd.0, client.rgw.a — all in one keyring,
  # imported into the mon's auth database by mkfs.
  ceph-authtool --create-keyring --gen-key -n mon. --cap mon 'allow *' "$DIR/keyring" >/dev/null
  ceph-authtool --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *' "$DIR/keyring" >/dev/null
  ceph-authtool --gen-key -n osd.0 --cap mon 'allow profile osd' --cap mgr 'allow profile osd' \
    --cap osd 'allow *' "$DIR/keyring" >/dev/null
  ceph-authtool --gen-key -n client.rgw.a --cap mon 'allow rw' --cap osd 'allow rwx' \
    --cap mgr 'allow rw' "$DIR/keyring" >/dev/null

  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DIR/monmap" >/dev/null \
    || fail_start "monmaptool failed"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" \
    >>"$DIR/log/mkfs.out" 2>&1 || fail_start "ceph-mon --mkfs failed"
  launch mon ceph-mon -c "$CONF" -i a -f

  # One `ceph` run (commands on stdin; it waits for the mon to answer): register osd.0 and
  # create the pools radosgw would otherwise create one by one, lazily (the data pool on the
  # first PutObject: +0.8 s on that request).
  {
    echo "osd new $osd_uuid 0"
    for pool in .rgw.root default.rgw.log default.rgw.control default.rgw.meta \
      default.rgw.buckets.index default.rgw.buckets.data default.rgw.buckets.non-ec; do
      echo "osd pool create $pool 8 8"
      echo "osd pool application enable $pool rgw"
    done
  } | timeout 60 ceph -c "$CONF" --connect-timeout 50 >>"$DIR/log/mkfs.out" 2>&1 \
    || fail_start "'ceph osd new' / 'osd pool create' failed (mon not answering?)"
  grep -q "^pool 'default.rgw.buckets.non-ec' created" "$DIR/log/mkfs.out" \
    || fail_start "creating the pools failed (see $DIR/log/mkfs.out)"
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$DIR/log/mkfs.out" 2>&1 \
    || fail_start "ceph-osd --mkfs failed"
  launch osd ceph-osd -c "$CONF" -i 0 -f

  # radosgw writes its default realm/zone objects once the OSD is up, then listens
  launch rgw radosgw -c "$CONF" -n client.rgw.a -f
  log "mon, osd, rgw started (dir $DIR); waiting for http://127.0.0.1:$PORT"
  local deadline=$((SECONDS + TIMEOUT)) p
  until [ "$(http_code "http://127.0.0.1:$PORT/")" = 200 ]; do
    for p in "${DAEMONS[@]}"; do pid_of "$p" >/dev/null || fail_start "$p exited during start-up"; done
    [ $SECONDS -lt $deadline ] || fail_start "radosgw did not answer on 127.0.0.1:$PORT within ${TIMEOUT}s"
    sleep 0.2
  done

  radosgw-admin -c "$CONF" user create --uid=test --display-name="s3-ceph test user" \
    --access-key="$AK" --secret-key="$SK" >"$DIR/user.json" 2>>"$DIR/log/mkfs.out" \
    || fail_start "radosgw-admin user create failed"
  printf 'port=%s\nmon_port=%s\naccess_key=%s\nsecret_key=%s\nbucket=%s\n' \
    "$PORT" "$MON_PORT" "$AK" "$SK" "$BUCKET" > "$DIR/s3.env"

  # ready = a SigV4-signed request (ListBuckets) as the new user answers 200
  until s3_ready; do
    [ $SECONDS -lt $deadline ] || fail_start "signed ListBuckets did not answer 200 within ${TIMEOUT}s"
    sleep 0.2
  done
  if [ -n "$BUCKET" ]; then
    local code
    code="$(http_code -X PUT -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:$REGION:s3" \
      --user "$AK:$SK" "http://127.0.0.1:$PORT/$BUCKET")"
    [ "$code" = 200 ] || [ "$code" = 409 ] || fail_start "creating bucket $BUCKET answered $code"
  fi
  log "ready in $((SECONDS - t0))s: http://127.0.0.1:$PORT access=$AK${BUCKET:+ bucket=$BUCKET}"
}

do_stop() {
  if [ ! -f "$DIR/.s3-ceph" ]; then log "nothing to stop in $DIR"; return 0; fi
  stop_all
  log "stopped (logs kept in $DIR/log)"
}

do_status() {
  local p pid rc=0
  for p in "${DAEMONS[@]}"; do
    if pid="$(pid_of "$p")"; then
      echo "$p: running pid $pid rss $(awk '/VmRSS/{print $2" "$3}' "/proc/$pid/status")"
    else
      echo "$p: not running"; rc=1
    fi
  done
  if s3_ready; then echo "s3: http://127.0.0.1:$PORT answers (signed ListBuckets 200)"
  else echo "s3: http://127.0.0.1:$PORT not answering"; rc=1; fi
  if pid_of mon >/dev/null; then
    echo "ceph: $(timeout 15 ceph -c "$CONF" --connect-timeout 10 health 2>&1 | head -n 1)"
  fi
  return $rc
}

do_env() {
  cat <<EOF
export S3_ENDPOINT=http://127.0.0.1:$PORT
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$PORT
export AWS_ACCESS_KEY_ID=$AK
export AWS_SECRET_ACCESS_KEY=$SK
export AWS_REGION=$REGION
export AWS_DEFAULT_REGION=$REGION
export S3_FORCE_PATH_STYLE=true
export AWS_REQUEST_CHECKSUM_CALCULATION=WHEN_REQUIRED
export AWS_RESPONSE_CHECKSUM_VALIDATION=WHEN_REQUIRED
EOF
  [ -z "$BUCKET" ] || echo "export S3_BUCKET=$BUCKET"
}

# stop/status/env: use what the instance in DIR was started with (port, keys, bucket)
load_saved() {
  local f="$DIR/s3.env" v
  [ -f "$f" ] || return 0
  v="$(sed -n 's/^port=//p' "$f")"; PORT="${v:-$PORT}"
  v="$(sed -n 's/^access_key=//p' "$f")"; AK="${v:-$AK}"
  v="$(sed -n 's/^secret_key=//p' "$f")"; SK="${v:-$SK}"
  BUCKET="$(sed -n 's/^bucket=//p' "$f")"
}

case "$CMD" in
  start) do_start ;;
  stop) do_stop ;;
  status) load_saved; do_status ;;
  env) load_saved; do_env ;;
  *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
