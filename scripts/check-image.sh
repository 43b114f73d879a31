#!/usr/bin/env bash
# Builds the plane-test-server image with the build-image package plugin (as a user would
# from a fresh clone), loads it into dockerd and checks that the container answers.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"

swift package --allow-writing-to-package-directory build-image --product plane-test-server --tag image-check
docker load -i .build/plane-images/plane-test-server/plane-test-server.tar
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
name="plane-image-check-$$"
docker run -d --rm --network host -e PORT="$port" --name "$name" plane-test-server:image-check >/dev/null
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
for _ in $(seq 200); do
  body=$(curl -sf "http://127.0.0.1:$port/" || true)
  [ "$body" = "Hello World!" ] && { echo "image-check: plane-test-server:image-check answers on port $port"; exit 0; }
  sleep 0.05
done
echo "image-check: the container did not answer; its logs:" >&2
docker logs "$name" >&2 || true
exit 1
