# shellcheck shell=bash
# The library every remote script shares: `shell.shell(name)` (tasks/core/shell.py) sends this file first, then
# scripts/<name>.sh (docs/scripts.md). It only defines functions; nothing runs here.
#
# In (only for the functions that need them): APP_USER (as_app, as_owner, app_pid), ROOT
# (as_owner), CURRENT (current_target, current_release), ANSWER_GRACE (wait_healthy),
# HEALTH_HOST (probe's Host header; empty or unset: the URL's host:port).
# Out: nothing; each function says what it prints.

as_app() {  # CMD ARGS...: run one command as $APP_USER (empty: the SSH user; sudo -n -u
  # only for another user). What lies in the app user's directories (shared/<data>,
  # shared/log, /run/<app>) is read, written and signalled this way, never as the deploy
  # user or root (docs/security.md#ownership).
  : "${_fabdeploy_me:=$(id -un)}"
  if [ -z "${APP_USER:-}" ] || [ "$_fabdeploy_me" = "$APP_USER" ]; then "$@"; else sudo -n -u "$APP_USER" -- "$@"; fi
}

listed() {  # DIR NAME: true when DIR's listing has an entry NAME (names only: nothing in DIR is
  # opened or followed, so the deploy user may ask it of the app user's /run/<app>)
  local names
  names=$(ls -A -- "$1" 2>/dev/null) || return 1
  grep -qxF -- "$2" <<< "$names"
}

app_pid() {  # PIDFILE: the pid in PIDFILE (in the app user's /run/<app>), read as the app user;
  # "" when there is none
  local pid=""
  if listed "${1%/*}" "${1##*/}"; then
    pid=$(as_app cat -- "$1" 2>/dev/null) || pid=""
    pid=${pid%%$'\n'*}
  fi
  if [[ $pid =~ ^[0-9]+$ ]]; then echo "$pid"; fi
}

as_owner() {  # CMD ARGS...: run one command as the owner of $ROOT: the SSH user (who owns
  # the code side: the lock, revisions.log, releases), so the app user can neither forge nor
  # remove the lock, nor rewrite the history. A root the app user owns (set up before the
  # ownership model: `fab setup` migrates it) leaves no choice but the app user (as_app).
  if [ -O "$ROOT" ] || [ -z "${APP_USER:-}" ]; then "$@"; else as_app "$@"; fi
}

alive() {  # PID: true for a live process that is not a zombie
  [[ ${1:-} =~ ^[0-9]+$ ]] && [ -r "/proc/$1/stat" ] || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

current_target() {  # the target of $CURRENT as written (releases/<name>; "" when none)
  readlink -- "$CURRENT" 2>/dev/null || true
}

current_release() {  # the name of the release $CURRENT points to ("" when none)
  local target
  target=$(current_target)
  echo "${target##*/}"
}

kv() {  # KEY VALUE: one key=value output line (newlines in VALUE become spaces)
  local value=${2-}
  printf '%s=%s\n' "$1" "${value//$'\n'/ }"
}

healthy() {  # STATUS: the one rule of health: HTTP 200 is healthy, anything else is not
  [ "${1:-}" = 200 ]
}

failing() {  # STATUS: a canary probe's status that fails it: a 5xx, or no answer (000); a
  # redirect or a 4xx does not (tasks/host/service.py's `failing` is the same rule)
  [[ ${1:-000} =~ ^(5[0-9][0-9]|000)$ ]]
}

probe_urls() {  # URLS (one a line): each once (probe); false at the first that fails
  # (failing), which $bad names; prints "probe URL answered CODE" for each
  local url code
  # shellcheck disable=SC2034  # read by the caller
  bad=""
  while IFS= read -r url; do
    [ -n "$url" ] || continue
    code=$(probe "$url")
    echo "probe $url answered $code"
    # shellcheck disable=SC2034  # read by the caller
    if failing "$code"; then bad="probe $url answered $code"; return 1; fi
  done <<< "$1"
}
probe() {  # URL: print the HTTP status it answers (000: no answer); bash's /dev/tcp, no process
  # The Host header is $HEALTH_HOST, else the URL's host:port; the User-Agent fabdeploy-probe
  # (the canary's count leaves these requests out: tasks/host/canary.py's AGENT).
  local rest=${1#http://} hostport host port code
  hostport=${rest%%/*}
  host=${hostport%:*} port=${hostport##*:}
  host=${host#[} host=${host%]}
  if exec 3<>"/dev/tcp/$host/$port"; then
    printf 'GET /%s HTTP/1.0\r\nHost: %s\r\nUser-Agent: fabdeploy-probe\r\nConnection: close\r\n\r\n' "${rest#*/}" "${HEALTH_HOST:-$hostport}" >&3
    if IFS=' ' read -r -t 5 _ code _ <&3 && [[ $code =~ ^[0-9]{3}$ ]]; then
      exec 3<&-
      echo "$code"
      return
    fi
    exec 3<&-
  fi 2>/dev/null
  echo 000
}

wait_healthy() {  # URL SECONDS [PID]: wait until URL is healthy; print the last status
  # Gives up early when PID dies, or when the app keeps answering another status than 200 for
  # $ANSWER_GRACE seconds (no answer at all waits the whole SECONDS).
  local until=$((SECONDS + $2)) code=000 failing=""
  while :; do
    code=$(probe "$1")
    healthy "$code" && { echo "$code"; return 0; }
    if [ -n "${3:-}" ] && ! alive "$3"; then echo "$code (master $3 exited)"; return 1; fi
    [ $SECONDS -ge $until ] && { echo "$code"; return 1; }
    if [ "$code" = 000 ]; then
      failing=""
    else  # the app answers, but not healthy: give it a few seconds, not the whole timeout
      failing=${failing:-$SECONDS}
      [ $((SECONDS - failing)) -ge "$ANSWER_GRACE" ] && { echo "$code"; return 1; }
    fi
    sleep 0.1
  done
}
