#!/usr/bin/env bash
# Builds the images on a machine with no Docker daemon and no registry (this project's
# development machines and CI): podman with a Docker-API socket and a local Python 3.11 base
# image from Debian, both set up by ../shared/containers/setup.sh; torch for the serving image
# from the machine's local wheel folder. Prints each image's build time and size.
#
#   images/build-local.sh [cpu] [serving] [gpu]      # default: cpu serving
#
# The gpu image pulls PyPI's CUDA build of torch (its nvidia-* wheels are several GB): built only
# when named; GPU_TORCH=cpu builds it with the local CPU wheel instead (CI: no GPU to use CUDA on).
# A user's machine builds with `make images` and the official python base image.
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${SHARED:-../shared/containers}
eval "$("$SHARED/setup.sh")"
TAG=${TAG:-dev}
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(cpu serving)
for image in "${images[@]}"; do
  args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
  if [ "$image" = serving ] || { [ "$image" = gpu ] && [ "${GPU_TORCH:-cuda}" = cpu ]; }; then
    args+=(--build-arg "TORCH_INSTALL=--find-links /opt/wheels torch==2.13.0+cpu")
  fi
  started=$(date +%s)
  "$SHARED/build.sh" -f "images/$image.Dockerfile" -t "lungsurv-$image:$TAG" "${args[@]}" .
  seconds=$(( $(date +%s) - started ))
  size=$(podman image inspect "lungsurv-$image:$TAG" --format '{{.Size}}')
  echo "lungsurv-$image:$TAG built in ${seconds} s, $(( size / 1000000 )) MB"
done
