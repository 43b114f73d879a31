#!/usr/bin/env bash
# Starts or stops the Docker daemon the tests use. `start` does nothing when a daemon
# already answers on /var/run/docker.sock; otherwise it starts dockerd (installed by
# bootstrap.sh) in the background and remembers its PID so `stop` ends only what it started.
set -euo pipefail
SOCKET=/var/run/docker.sock
PIDFILE=/run/plane-test-dockerd.pid
LOG=/tmp/plane-test-dockerd.log

answers() { curl -sf --unix-socket "$SOCKET" http://docker/version >/dev/null 2>&1; }

case "${1:-}" in
  start)
    if answers; then echo "docker-daemon: dockerd already answers on $SOCKET"; exit 0; fi
    command -v dockerd >/dev/null || { echo "docker-daemon: dockerd missing; run scripts/bootstrap.sh" >&2; exit 1; }
    dockerd --host "unix://$SOCKET" --pidfile "$PIDFILE" >"$LOG" 2>&1 &
    for _ in $(seq 300); do
      if answers; then echo "docker-daemon: dockerd started (pid $(cat "$PIDFILE"))"; exit 0; fi
      sleep 0.1
    done
    echo "docker-daemon: dockerd did not come up; its log:" >&2
    tail -n 30 "$LOG" >&2
    exit 1
    ;;
  stop)
    if [ -f "$PIDFILE" ]; then
      pid=$(cat "$PIDFILE")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$PIDFILE"
      echo "docker-daemon: stopped dockerd $pid"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 64
    ;;
esac
