#!/usr/bin/env bash
# HTTP benchmark: `GET /v1/pen-names/{pen}/connections` on the engine, beside an axum
# hello-world (`GET /`) measured in the same run, with the same load, on loopback.
#
#   bench/http.sh                                  # defaults below
#   DURATION=30s CONNECTIONS=128 THREADS=2 ROUNDS=3 bench/http.sh
#
# Environment:
#   DURATION      each measured run (wrk -d)                     default 20s
#   WARMUP        warm-up before measuring, per server            default 5s
#   CONNECTIONS   open connections (wrk -c)                      default 64
#   THREADS       wrk threads (wrk -t)                           default 2
#   ROUNDS        measured rounds; each runs engine then hello   default 2
#   OUT           also write the Markdown table to this file     default: none
#   POSTS         posts scheduled on the connected account       default 1000
#
# A third server, an axum hello-world whose answer is padded to the engine's answer size
# (`hello_axum` with HELLO_BODY_BYTES), shows what the answer's size costs on its own: over
# loopback the receiving side's TCP work is charged to the sender.
#
# Installs wrk from Debian if missing (needs root), builds both examples in release mode,
# starts them on 127.0.0.1 (random ports), warms up, measures, prints a Markdown table
# (requests/s, p50 and p99 from wrk's --latency distribution, CPU of each side) and stops
# both servers on exit. Exits non-zero if a server does not start or wrk fails.
set -euo pipefail

DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-5s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-}
POSTS=${POSTS:-1000}
PEN=bench-author
START_TIMEOUT=${START_TIMEOUT:-120}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release/examples

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---- the load tool ----
if ! command -v wrk >/dev/null 2>&1; then
	[ "$(id -u)" -eq 0 ] || die "wrk is not installed; run as root (apt-get install -y wrk) or install it"
	log "installing wrk from Debian"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2; then
		apt-get update >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y wrk >&2
	fi
fi
command -v wrk >/dev/null 2>&1 || die "wrk is still missing"

# ---- the servers ----
log "building the examples (release)"
(cd "$ROOT" && cargo build --release --example http_bench_server --example hello_axum >&2)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/social-studio-http-bench.XXXXXX")
ENGINE_PID=
HELLO_PID=
SIZED_PID=
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	exec 3>&- # closing the engine's stdin also stops it
	for pid in $ENGINE_PID $HELLO_PID $SIZED_PID; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in $ENGINE_PID $HELLO_PID $SIZED_PID; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ "$status" -ne 0 ]; then
		for f in engine.err hello.err; do
			[ -s "$WORK/$f" ] && {
				log "--- last lines of $f ---"
				tail -n 20 "$WORK/$f" >&2
			}
		done
	fi
	rm -rf "$WORK"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Waits for "LISTENING ..." on the server's stdout; fails if the process dies first.
wait_listening() {
	local name=$1 pid=$2 out=$3 waited=0
	while ! grep -q '^LISTENING ' "$out" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || die "$name exited before listening"
		[ "$waited" -lt $((START_TIMEOUT * 10)) ] || die "$name did not listen within ${START_TIMEOUT}s"
		sleep 0.1
		waited=$((waited + 1))
	done
	grep -m1 '^LISTENING ' "$out"
}

# The engine reads stdin until it closes: give it a FIFO that only this script holds
# open, so it stops even if this script is killed without running its trap.
mkfifo "$WORK/engine.stdin"
BENCH_POSTS=$POSTS "$BIN/http_bench_server" <"$WORK/engine.stdin" >"$WORK/engine.out" 2>"$WORK/engine.err" &
ENGINE_PID=$!
exec 3>"$WORK/engine.stdin"
"$BIN/hello_axum" 0 </dev/null >"$WORK/hello.out" 2>"$WORK/hello.err" 3>&- &
HELLO_PID=$!

ENGINE_LINE=$(wait_listening http_bench_server "$ENGINE_PID" "$WORK/engine.out") || exit 1
HELLO_LINE=$(wait_listening hello_axum "$HELLO_PID" "$WORK/hello.out") || exit 1
read -r _ ENGINE_BASE _ TOKEN <<<"$ENGINE_LINE"
read -r _ HELLO_BASE <<<"$HELLO_LINE"
[ -n "$TOKEN" ] || die "http_bench_server printed no token"
ENGINE_URL=$ENGINE_BASE/v1/pen-names/$PEN/connections
HELLO_URL=$HELLO_BASE/
ENGINE_BYTES=$(curl -s -H "Authorization: Bearer $TOKEN" "$ENGINE_URL" | wc -c)
HELLO_BODY_BYTES=$ENGINE_BYTES "$BIN/hello_axum" 0 </dev/null >"$WORK/sized.out" 2>"$WORK/sized.err" 3>&- &
SIZED_PID=$!
SIZED_LINE=$(wait_listening hello_axum "$SIZED_PID" "$WORK/sized.out") || exit 1
read -r _ SIZED_BASE <<<"$SIZED_LINE"
SIZED_URL=$SIZED_BASE/
log "engine: $ENGINE_URL (pid $ENGINE_PID, $ENGINE_BYTES-byte answers); hello: $HELLO_URL (pid $HELLO_PID); hello padded to the same size: $SIZED_URL (pid $SIZED_PID)"

# ---- measuring ----
TICKS=$(getconf CLK_TCK)

# utime+stime of a process, all threads (clock ticks).
proc_cpu() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# cutime+cstime of this shell: the CPU of the children it has waited for (wrk).
children_cpu() { awk '{ sub(/^.*\) /, ""); print $14 + $15 }' "/proc/$$/stat"; }
# busy and total jiffies of the whole machine.
machine_cpu() { awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }
now_ns() { date +%s%N; }

# run_wrk TARGET URL SERVER_PID [extra wrk args...] — appends one row's fields to $ROWS.
ROWS=()
run_wrk() {
	local target=$1 url=$2 pid=$3 round=$4
	shift 4
	local out=$WORK/wrk.$target.$round.txt
	local load s0 c0 m0 t0 s1 c1 m1 t1
	load=$(cut -d' ' -f1-3 /proc/loadavg)
	s0=$(proc_cpu "$pid")
	c0=$(children_cpu)
	read -r mb0 mt0 <<<"$(machine_cpu)"
	t0=$(now_ns)
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$@" "$url" >"$out" 3>&- ||
		die "wrk against $target failed: $(cat "$out")"
	t1=$(now_ns)
	s1=$(proc_cpu "$pid")
	c1=$(children_cpu)
	read -r mb1 mt1 <<<"$(machine_cpu)"
	kill -0 "$pid" 2>/dev/null || die "$target died during the run"
	ROWS+=("$(
		awk -v target="$target" -v round="$round" -v load="$load" \
			-v scpu=$((s1 - s0)) -v wcpu=$((c1 - c0)) -v ticks="$TICKS" \
			-v wall_ns=$((t1 - t0)) -v mbusy=$((mb1 - mb0)) -v mtotal=$((mt1 - mt0)) '
			function ms(v) {
				if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
				if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
				if (v ~ /m$/)  return substr(v, 1, length(v) - 1) * 60000
				if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
				return v + 0
			}
			function bytes(v) {
				if (v ~ /GB$/) return substr(v, 1, length(v) - 2) * 1073741824
				if (v ~ /MB$/) return substr(v, 1, length(v) - 2) * 1048576
				if (v ~ /KB$/) return substr(v, 1, length(v) - 2) * 1024
				if (v ~ /B$/)  return substr(v, 1, length(v) - 1) + 0
				return v + 0
			}
			/^ +Latency / && !lat_max { lat_max = ms($4) }
			/^ +50% / { p50 = ms($2) }
			/^ +90% / { p90 = ms($2) }
			/^ +99% / { p99 = ms($2) }
			/ requests in / { n = $1; read = bytes($5) }
			/^Requests\/sec:/ { rps = $2 }
			/Non-2xx or 3xx responses:/ { bad = $NF }
			/^ +Socket errors:/ { errs = $0; sub(/^ +Socket errors: /, "", errs) }
			END {
				wall = wall_ns / 1e9
				printf "%s|%s|%.0f|%.2f|%.2f|%.2f|%.2f|%s|%d|%s|%.2f|%.0f|%.2f|%.0f%%|%s\n",
					round, target, rps, p50, p90, p99, lat_max, n, (n ? read / n : 0),
					(bad == "" ? "0" : bad) (errs == "" ? "" : "; " errs),
					scpu / ticks / wall, (n ? 1e6 * scpu / ticks / n : 0), wcpu / ticks / wall,
					(mtotal ? 100 * mbusy / mtotal : 0), load
			}' "$out"
	)")
	log "$target round $round: $(grep '^Requests/sec' "$out" | tr -s ' ')"
}

log "warming up: ${WARMUP} each"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" -H "Authorization: Bearer $TOKEN" "$ENGINE_URL" >/dev/null 3>&-
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$HELLO_URL" >/dev/null 3>&-
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" "$SIZED_URL" >/dev/null 3>&-

for round in $(seq "$ROUNDS"); do
	log "round $round/$ROUNDS: engine, then hello (${DURATION} each)"
	run_wrk engine "$ENGINE_URL" "$ENGINE_PID" "$round" -H "Authorization: Bearer $TOKEN"
	run_wrk hello "$HELLO_URL" "$HELLO_PID" "$round"
	run_wrk sized "$SIZED_URL" "$SIZED_PID" "$round"
done

# ---- the table ----
NPROC=$(nproc)
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
WRK_VERSION=$(wrk -v 2>&1 | head -n1 | awk '{ print $2 }' || true)
{
	echo "| round | server | route | req/s | p50 ms | p90 ms | p99 ms | max ms | requests | bytes/resp | non-2xx; socket errors | server CPU (cores) | server CPU µs/req | wrk CPU (cores) | machine busy | loadavg before (1/5/15 min) |"
	echo "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
	for row in "${ROWS[@]}"; do
		IFS='|' read -r round target rps p50 p90 p99 max n bpr bad scpu uspr wcpu busy load <<<"$row"
		if [ "$target" = engine ]; then
			route="GET /v1/pen-names/$PEN/connections"
			server="engine (http_bench_server)"
		elif [ "$target" = sized ]; then
			route="GET /"
			server="axum hello-world, answer padded to $ENGINE_BYTES bytes"
		else
			route="GET /"
			server="axum hello-world"
		fi
		echo "| $round | $server | \`$route\` | $rps | $p50 | $p90 | $p99 | $max | $n | $bpr | $bad | $scpu | $uspr | $wcpu | $busy | $load |"
	done
	echo
	echo "Ratio (engine / hello, mean of rounds): $(
		printf '%s\n' "${ROWS[@]}" | awk -F'|' '
			$2 == "engine" { er += $3; ep += $6; ec += $12; en++ }
			$2 == "hello"  { hr += $3; hp += $6; hc += $12; hn++ }
			$2 == "sized"  { sr += $3; sc += $12; sn++ }
			END { printf "throughput %.2f×, p99 %.2f×, server CPU per request %.1f×; against the hello-world padded to the same answer size: throughput %.2f×, server CPU per request %.1f×", (er/en) / (hr/hn), (ep/en) / (hp/hn), (ec/en) / (hc/hn), (er/en) / (sr/sn), (ec/en) / (sc/sn) }')"
	echo
	echo "Setup: wrk ${WRK_VERSION:-?} \`-t$THREADS -c$CONNECTIONS -d$DURATION --latency\` after a ${WARMUP} warm-up per server; loopback (127.0.0.1), HTTP/1.1 keep-alive; all servers multi-thread tokio (one worker per core) and mimalloc; the engine route with \`Authorization: Bearer <admin token>\`, pen name \`$PEN\` connected to X (sandbox) with $POSTS scheduled posts, the other eight platforms not connected; engine logging as \`social-studio serve\` (\`warn,social_studio=info\`, RUST_LOG=${RUST_LOG:-unset}). Release build (\`debug = 1\`)."
	echo
	echo "Machine: $(uname -m), ${NPROC} CPU(s), ${CPU_MODEL:-unknown CPU}, Linux $(uname -r)."
	echo
	echo "Notes: CPU columns are CPU time over wall time (1.00 = one core busy); \"server CPU µs/req\" is the server's CPU time divided by the requests it answered, which depends less on what else runs than req/s does. Server, wrk and anything else on the machine share the same ${NPROC} core(s): wrk's own CPU is load the server competes with, so on a small machine these figures are a floor for the server, not its capacity; \"machine busy\" is all CPU use (including other users' jobs) during the run, and the load averages were read just before each run."
} >"$WORK/table.md"

cat "$WORK/table.md"
if [ -n "$OUT" ]; then
	cp "$WORK/table.md" "$OUT"
	log "table written to $OUT"
fi
