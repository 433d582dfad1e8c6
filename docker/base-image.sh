#!/usr/bin/env bash
# Build (once) and cache a local Debian bookworm base image with python3 + venv, for builds that
# cannot pull from a registry: debootstrap --variant=minbase, then `podman import`.
#
# Usage: docker/base-image.sh [TAG]          (default TAG: localhost/polypseg-base:bookworm)
# Env:   POLYPSEG_CACHE   cache folder for the rootfs tarball (default /var/cache/polypseg)
#        DEBIAN_MIRROR    override the mirror (default: read from this machine's apt sources)
#
# Idempotent: an existing image is kept; a cached tarball is re-imported without debootstrap.
set -euo pipefail

TAG="${1:-localhost/polypseg-base:bookworm}"
CACHE="${POLYPSEG_CACHE:-/var/cache/polypseg}"
TARBALL="$CACHE/bookworm-python3.tar"
SUITE=bookworm
PACKAGES=python3,python3-venv

log() { printf '[base-image] %s\n' "$*" >&2; }

# The Debian mirror this machine's apt already uses: deb822 (*.sources) or one-line format.
apt_mirror() {
  local file uri
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    # First URIs: of a stanza whose Suites name the plain suite (not -security / -updates only).
    uri=$(awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (u != "" && s) { print u; exit } u=""; s=0; next }
      /^URIs:/   { u=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) s=1 }
      END { if (u != "" && s) print u }' "$file" | head -n1)
    if [ -n "$uri" ]; then echo "$uri"; return 0; fi
  done
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    uri=$(awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i == suite) {
            for (j = 2; j < i; j++) if ($j !~ /^\[/) { print $j; exit } } }' "$file" | head -n1)
    if [ -n "$uri" ]; then echo "$uri"; return 0; fi
  done
  return 1
}

if podman image exists "$TAG"; then
  log "cached image $TAG"
  exit 0
fi

if [ ! -s "$TARBALL" ]; then
  command -v debootstrap >/dev/null || { log "debootstrap is not installed"; exit 1; }
  MIRROR="${DEBIAN_MIRROR:-$(apt_mirror || true)}"
  [ -n "$MIRROR" ] || { log "no '$SUITE' mirror in /etc/apt/sources*; set DEBIAN_MIRROR"; exit 1; }
  mkdir -p "$CACHE"
  ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$ROOTFS" "$TARBALL.tmp"' EXIT
  log "debootstrap $SUITE from $MIRROR (+ $PACKAGES) into $ROOTFS"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >&2
  # Trim what a runtime never reads: apt lists and caches, docs, man pages, locales.
  rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/usr/share/doc/* \
         "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/var/log/*.log
  find "$ROOTFS"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'en*' -exec rm -rf {} +
  tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$ROOTFS"
  trap - EXIT
fi

log "podman import $TARBALL as $TAG"
podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  "$TARBALL" "$TAG" >/dev/null
log "done: $TAG"
