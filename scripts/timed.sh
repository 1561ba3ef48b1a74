#!/usr/bin/env bash
# Run a command and print how long it took: `scripts/timed.sh LABEL COMMAND [ARGS...]`
# prints "[make] LABEL took 12.3 s" after it (or "... failed after 12.3 s (exit N)") and
# exits with the command's status. The line goes to stderr, so that a step whose output is
# redirected still shows its time. The Makefile wraps each step of the loop in it.
set -u
label=$1
shift
now() {
    # Sub-second wall clock: bash 5's EPOCHREALTIME, else GNU date, else whole seconds.
    if [ -n "${EPOCHREALTIME:-}" ]; then
        echo "${EPOCHREALTIME/,/.}"
    else
        case $(date +%N 2>/dev/null) in
            *[!0-9]* | "") date +%s ;;
            *) date +%s.%N ;;
        esac
    fi
}
start=$(now)
"$@"
status=$?
end=$(now)
awk -v label="$label" -v s="$start" -v e="$end" -v rc="$status" 'BEGIN {
    if (rc == 0) printf "[make] %s took %.1f s\n", label, e - s
    else printf "[make] %s failed after %.1f s (exit %d)\n", label, e - s, rc
}' >&2
exit "$status"
