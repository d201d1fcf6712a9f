#!/usr/bin/env bash
# Installs what lae needs on a Debian/Ubuntu machine, idempotently:
#   - Debian packages: OpenCV 4.6 dev + cascades, FFmpeg 5.1 dev libraries, pkg-config, a C
#     compiler for cgo, PyTorch/ONNX/OpenCV/pytest for the training code, Chromium (the live
#     page's browser test), protoc (the generated-protobuf check and `task generate`), npm (to
#     fetch ONNX Runtime);
#   - the ONNX Runtime 1.24.3 shared library, taken from the onnxruntime-node npm tarball
#     (no Debian package ships it), checked against a pinned sha256, into .cache/ort/.
# `setup.sh --check` exits 0 when nothing is missing (Task uses it to skip the work).
# LAE_ORT_LIB pointing at an existing library (your own GPU build) skips the download.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ort_version=1.24.3
ort_sha256=92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682
ort_dir="$root/.cache/ort"
ort_lib="$ort_dir/libonnxruntime.so.1"

packages=(
  build-essential pkg-config
  libopencv-dev opencv-data
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavdevice-dev
  libavfilter-dev libswresample-dev libpostproc-dev
  python3 python3-torch python3-torchvision python3-onnx python3-opencv python3-pytest python3-numpy
  chromium
  protobuf-compiler
  ffmpeg
  ca-certificates
)

missing_packages() {
  local p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
  # npm only fetches ONNX Runtime; any npm will do (Debian's, or one that came with Node.js).
  if ! ort_ok && ! command -v npm >/dev/null 2>&1; then echo npm; fi
}

ort_ok() {
  if [ -n "${LAE_ORT_LIB:-}" ] && [ -f "${LAE_ORT_LIB}" ]; then return 0; fi
  [ -f "$ort_lib" ] && echo "$ort_sha256  $ort_lib" | sha256sum --check --status
}

if [ "${1:-}" = "--check" ]; then
  [ -z "$(missing_packages)" ] && ort_ok
  exit $?
fi

mapfile -t need < <(missing_packages)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "setup: installing Debian packages: ${need[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! ort_ok; then
  echo "setup: fetching ONNX Runtime $ort_version (onnxruntime-node npm tarball)" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ort_version" >/dev/null)
  tar -xzf "$tmp/onnxruntime-node-$ort_version.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  got="$(sha256sum "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | cut -d' ' -f1)"
  if [ "$got" != "$ort_sha256" ]; then
    echo "setup: libonnxruntime.so.1 sha256 mismatch: got $got, want $ort_sha256" >&2
    exit 1
  fi
  mkdir -p "$ort_dir"
  install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ort_lib"
  echo "setup: ONNX Runtime at $ort_lib" >&2
fi
