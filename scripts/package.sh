#!/usr/bin/env bash
# `make package`: what an operator installs.
#   .build/package/plane_<version>_<arch>.deb  the binary (/usr/bin/plane, Swift's runtime
#       linked in statically), systemd units for controller and drone (hardened), example
#       configurations (installed as /etc/plane/*.toml when absent), the docs, and a
#       postinst that makes the `plane` system user the controller runs as;
#   .build/plane-images/plane/  an OCI image (layout and `docker load` archive) of plane
#       itself, made by the package's BuildImage plugin: `plane controller` or `plane drone`.
# BINARY=<path> packages that binary instead of building one (the tests use the debug
# build); NO_IMAGE=1 skips the image; DEB_COMPRESSION (default xz) is dpkg-deb's -Z.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
BINARY=${BINARY:-}
NO_IMAGE=${NO_IMAGE:-}
DEB_COMPRESSION=${DEB_COMPRESSION:-xz}
OUT=${OUT:-.build/package}

version=$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/PlaneCore/PlaneVersion.swift)
arch=$(dpkg --print-architecture)
if [ -z "$BINARY" ]; then
  echo "package: building plane (release, Swift's runtime linked in statically)"
  swift build -c release --static-swift-stdlib -Xswiftc -enforce-exclusivity=unchecked --product plane >/dev/null
  BINARY=.build/release/plane
  if ldd "$BINARY" | grep -q libswift; then echo "package: $BINARY still links Swift's runtime dynamically" >&2; exit 1; fi
fi
root=$(mktemp -d)
chmod 0755 "$root"
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$BINARY" "$root/usr/bin/plane"
install -D -m 0644 scripts/packaging/plane-controller.service "$root/lib/systemd/system/plane-controller.service"
install -D -m 0644 scripts/packaging/plane-drone.service "$root/lib/systemd/system/plane-drone.service"
install -D -m 0644 scripts/packaging/controller.toml "$root/usr/share/plane/examples/controller.toml"
install -D -m 0644 scripts/packaging/drone.toml "$root/usr/share/plane/examples/drone.toml"
for doc in docs/*.md README.md; do install -D -m 0644 "$doc" "$root/usr/share/doc/plane/$(basename "$doc")"; done
install -d "$root/DEBIAN"
for script in postinst prerm postrm; do install -m 0755 "scripts/packaging/$script" "$root/DEBIAN/$script"; done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: plane
Version: $version
Architecture: $arch
Maintainer: Plane for Swift <plane@example.invalid>
Installed-Size: $size
Depends: libc6, libstdc++6, libsqlite3-0, libseccomp2, libzstd1, zlib1g, adduser
Recommends: nats-server, crun | runc, iptables
Suggests: docker.io
Section: admin
Priority: optional
Homepage: https://github.com/plane-for-swift/plane
Description: orchestrator for session backends (controller and drone)
 Starts a process (a container speaking HTTP or WebSocket) per key on one of many
 machines, gives it its own hostname, proxies HTTPS and WebSocket traffic to it, and
 stops it when no connection has touched it for a while. Wire-compatible with Plane
 0.3 over NATS. Units: plane-controller.service, plane-drone.service.
CONTROL
mkdir -p "$OUT"
deb="$OUT/plane_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$DEB_COMPRESSION" --build "$root" "$deb" >/dev/null
echo "package: $deb"
if [ -z "$NO_IMAGE" ]; then
  swift package --allow-writing-to-package-directory build-image --product plane --tag "$version" >/dev/null
  echo "package: .build/plane-images/plane/ (OCI layout oci/, docker archive plane.tar), tag $version"
fi
