#!/usr/bin/env bash
# Build the three FROM-scratch images from static binaries in $1.
# Each image's build context holds only its binary, so builds are fast and
# need no registry.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${1:?usage: build-images.sh <dir with static binaries>}
for name in replica control-plane data-plane; do
  ctx=target/images/$name
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$bin_dir/$name" "$ctx/$name"
  if ldd "$ctx/$name" >/dev/null 2>&1 && ! ldd "$ctx/$name" 2>&1 | grep -q 'not a dynamic executable\|statically linked'; then
    echo "$name is dynamically linked; build it with 'make static'" >&2
    exit 1
  fi
  if ! log=$(docker build --quiet -t "ringlb-$name:latest" -f "docker/$name.Dockerfile" "$ctx" 2>&1); then
    echo "$log" >&2
    exit 1
  fi
  size=$(docker image inspect "ringlb-$name:latest" --format '{{.Size}}')
  awk -v n="ringlb-$name" -v s="$size" 'BEGIN { printf "%-22s %5.1f MB\n", n, s / 1000000 }'
done
