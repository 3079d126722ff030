# shellcheck shell=sh
# The Packer container's script, run as `/bin/sh -c` by POSIX shells: busybox sh in the hashicorp/packer
# image, dash or bash elsewhere. app/core/job.py renders it into the Job after a header that holds everything
# the PackerBuilder spec decides, each word quoted exactly once:
#
#   default_checkout_dir=...     the pod's checkout (git-sync's link) and termination log
#   default_termination_log=...
#   awk_program='...'            packer-filter.awk: the build log filter and termination message writer
#   enter_project() { cd -- ./<spec.builder.dir>; }
#   packer_init() { packer init ...; }
#   packer_validate() { packer validate ...; }
#   packer_build() { exec packer build -machine-readable ...; }
#
# packer_build execs: it is run only as a background job, whose pid is then Packer's own.
# CHECKOUT_DIR and TERMINATION_LOG may be set to run the script elsewhere (tests).
#
# The build's exit status is preserved through the awk filter without pipefail by running both in the
# background on a FIFO; that also gives the shell Packer's pid, so SIGTERM from the kubelet (delivered
# only to PID 1, the shell) is forwarded and Packer can clean up.
set -eu
: "${awk_program:?}" "${default_checkout_dir:?}" "${default_termination_log:?}"
: "${CHECKOUT_DIR:=$default_checkout_dir}"
: "${TERMINATION_LOG:=$default_termination_log}"
export TERMINATION_LOG
terminated=0
interrupted=0
packer_pid=
# shellcheck disable=SC2329  # invoked by the trap
on_term() {
  terminated=1
  interrupted=1
  if [ -n "$packer_pid" ]; then kill -TERM "$packer_pid" 2>/dev/null || :; fi
}
trap on_term TERM INT
# A trapped signal makes `wait` return 128+n while the child may still run (Packer cleaning up) or
# has exited unreported. Then poll instead of waiting again (bash 5.2 can miss a child that exits
# during a trap and wait forever); the foreground sleep also reaps it. 127: already reported.
reap() {
  reaped=0
  interrupted=0
  wait "$1" || reaped=$?
  if [ "$interrupted" -ne 0 ] && [ "$reaped" -gt 128 ]; then
    while kill -0 "$1" 2>/dev/null; do sleep 1; done
    again=0
    wait "$1" || again=$?
    if [ "$again" -ne 127 ]; then reaped="$again"; fi
  fi
}
cd -- "$CHECKOUT_DIR"
# The commit being built, for the termination message. git-sync v4 publishes the checkout as a link to
# .worktrees/<hash>, one worktree per commit named after its hash (git-sync itself reads the hash back
# the same way). The packer image may have no git, so the hash comes from the resolved path; anything
# but 40 lowercase hex digits directly under .worktrees/ means no commit line.
checkout=$(pwd -P)
commit=${checkout##*/}
case ${checkout%/*} in
  */.worktrees) ;;
  *) commit= ;;
esac
case $commit in
  *[!0123456789abcdef]*) commit= ;;
esac
if [ "${#commit}" -ne 40 ]; then commit=; fi
enter_project
packer_init
packer_validate
if [ "$terminated" -ne 0 ]; then exit 143; fi
# The build log must be live. mawk (Debian's awk) fills a 4 KiB input buffer before it looks at a line,
# so every line would wait until Packer exits (fflush() only flushes output); -W interactive makes it
# read line by line. busybox awk and gawk pass each line on as it arrives but reject or warn about that
# flag, so only mawk gets it; `awk -W version` names mawk (stdin is /dev/null in case an awk takes
# `version` for its program). The options are the positional parameters, unused otherwise.
set --
case $(awk -W version 2>&1 </dev/null || :) in
  mawk*) set -- -W interactive ;;
esac
fifo="${TMPDIR:-/tmp}/packer-build.$$"
rm -f "$fifo"
mkfifo "$fifo"
awk "$@" -v commit="$commit" "$awk_program" < "$fifo" &
awk_pid=$!
packer_build > "$fifo" &
packer_pid=$!
# The signal may have come before Packer's pid was known.
if [ "$terminated" -ne 0 ]; then kill -TERM "$packer_pid" 2>/dev/null || :; fi
reap "$packer_pid"
status="$reaped"
reap "$awk_pid"
filter="$reaped"
rm -f "$fifo"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$filter"
