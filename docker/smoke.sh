#!/usr/bin/env bash
# End-to-end check of the container image (make docker-smoke): build it with podman, serve a
# small exported p4 model from it on loopback, segment a real image, refuse garbage, stop.
#
#   bash docker/smoke.sh            (as root; installs podman & co. with apt-get when missing)
#
# Idempotent: the debootstrap base image (docker/base-image.sh) and podman's layer cache are
# kept between runs, so a second run only rebuilds what changed; the container, the exported
# model and every temporary file are removed on exit, success or not.
#
# Env: POLYPSEG_IMAGE (tag to build, default localhost/polypseg-serve:smoke),
#      POLYPSEG_BASE_IMAGE (default localhost/polypseg-base:bookworm, made when missing),
#      POLYPSEG_WHEELS (folder of local wheels; default pip's find-links, e.g. /opt/wheels),
#      POLYPSEG_CACHE (base rootfs cache, default /var/cache/polypseg).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$PWD
START=$(date +%s)
IMAGE="${POLYPSEG_IMAGE:-localhost/polypseg-serve:smoke}"
BASE="${POLYPSEG_BASE_IMAGE:-localhost/polypseg-base:bookworm}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
export CONTAINERS_CONF="${CONTAINERS_CONF:-$REPO/docker/containers.conf}"

log() { printf '[smoke %4ss] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

# ---- tools ------------------------------------------------------------------------------------
missing=()
for tool in podman buildah runc debootstrap newuidmap slirp4netns; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -e /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "missing ${missing[*]}; run as root or install them"
  log "installing podman buildah runc debootstrap uidmap slirp4netns containernetworking-plugins"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah runc debootstrap uidmap \
    slirp4netns containernetworking-plugins >/dev/null
fi
[ -x "$PY" ] || fail "no $PY: run make setup first"

# ---- cleanup ----------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/polypseg-smoke.XXXXXX")
CONTAINER=""  # the running one; each gets its own name
CONTAINERS=()
cleanup() {
  for name in "${CONTAINERS[@]}"; do
    podman rm --force --time 2 "$name" >/dev/null 2>&1 || true
  done
  # stale layers of earlier builds of this Dockerfile (untagged, unused); the cache stays
  podman image prune --force --filter label=org.opencontainers.image.vendor=polypseg >/dev/null \
    2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---- base image (cached) ----------------------------------------------------------------------
bash docker/base-image.sh "$BASE"

# ---- a small exported p4 model ----------------------------------------------------------------
log "making and exporting a small p4 model (ONNX and TorchScript)"
"$PY" - "$WORK/run" <<'EOF'
import sys

import torch
import zoo

from polypseg.checkpoint import CheckpointMeta, InputSpec, ModelSpec, save_checkpoint

torch.manual_seed(0)
model = zoo.create("p4", in_channels=3, out_channels=1, width=4, depth=3)
spec = ModelSpec.of(model)
meta = CheckpointMeta(
    model=spec, metrics={},
    input=InputSpec(size=128, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                    threshold=0.5, depth=spec.depth),
)
save_checkpoint(f"{sys.argv[1]}/checkpoints/best", model, meta)
EOF
"$PY" -m polypseg export "$WORK/run" --format onnx --out "$WORK/onnx" >&2
"$PY" -m polypseg export "$WORK/run" --format torchscript --out "$WORK/torchscript" >&2
# No chmod: the export folder and its files get the modes mkdir/open give under the umask, so
# the container's uid 10001 reads them as the README mounts them (umask 022, the default).
[ "$(stat -c %a "$WORK/onnx")" = 755 ] || log "note: umask $(umask) makes the export unreadable by uid 10001"

# ---- build ------------------------------------------------------------------------------------
build_args=(--build-arg "BASE_IMAGE=$BASE")
volumes=()
pip_extra=""
if [ -s "$CA_BUNDLE" ]; then  # pip inside the build trusts the host's CA bundle
  volumes+=(--volume "/etc/ssl/certs:/etc/ssl/certs:ro")
  pip_extra="--cert $CA_BUNDLE"
fi
WHEELS="${POLYPSEG_WHEELS:-$("$PY" -m pip config get global.find-links 2>/dev/null || true)}"
WHEELS="${WHEELS%% *}"
if [ -n "$WHEELS" ] && compgen -G "$WHEELS/torch-*cpu*.whl" >/dev/null; then
  # the CPU torch wheel on disk: pin its local version so that PyPI's CUDA build never wins
  torch_version=$(basename "$(compgen -G "$WHEELS/torch-*cpu*.whl" | head -n1)" | cut -d- -f2)
  volumes+=(--volume "$WHEELS:/wheels:ro")
  pip_extra="$pip_extra --find-links /wheels"
  build_args+=(--build-arg "TORCH_SPEC=torch==$torch_version" --build-arg "TORCH_PIP_ARGS=")
fi
build_args+=(--build-arg "PIP_EXTRA_ARGS=$pip_extra")
log "building $IMAGE on $BASE"
build_start=$(date +%s)
# The deps and app stages are tagged too: the runtime image only copies from them, so untagged
# they would look unused to the prune on exit, and the next build would start from scratch.
for target in deps app runtime; do
  tag="$IMAGE"
  [ "$target" = runtime ] || tag="$IMAGE-$target"
  podman build --pull=never --format docker --layers "${build_args[@]}" "${volumes[@]}" \
    --target "$target" -f docker/Dockerfile -t "$tag" . >>"$WORK/build.log" 2>&1 \
    || { tail -n 40 "$WORK/build.log" >&2; fail "podman build --target $target"; }
done
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
log "built in $(($(date +%s) - build_start)) s; image size $((size / 1000000)) MB"

# ---- run and check ----------------------------------------------------------------------------
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="http://127.0.0.1:$PORT"
IMAGE_FILE=$(find "$REPO/../shared/data/Kvasir-SEG/images" -name '*.jpg' 2>/dev/null | sort | head -n1 || true)

serve() {  # serve FORMAT: start the container on the export folder and wait until ready
  if [ -n "$CONTAINER" ]; then
    podman stop --time 5 "$CONTAINER" >/dev/null 2>&1 || true
    podman rm --force "$CONTAINER" >/dev/null 2>&1 || true
  fi
  CONTAINER="polypseg-smoke-$$-$1"
  CONTAINERS+=("$CONTAINER")
  # podman's stderr goes to a file: without systemd it complains about healthcheck timers
  # (`podman healthcheck run` below still runs the image's HEALTHCHECK)
  # mounted as the README shows: the export folder read-only, a read-only root, /tmp in memory
  podman run --detach --name "$CONTAINER" -p "127.0.0.1:$PORT:8000" \
    -v "$WORK/$1:/models/model:ro" --read-only --tmpfs /tmp \
    "$IMAGE" /models/model --threads 2 >/dev/null 2>"$WORK/run.err" \
    || { cat "$WORK/run.err" >&2; fail "podman run"; }
  for _ in $(seq 1 120); do
    if "$PY" -c "import urllib.request as u; u.urlopen('$URL/readyz', timeout=2)" 2>/dev/null; then
      return 0
    fi
    [ "$(podman inspect --format '{{.State.Running}}' "$CONTAINER")" = true ] \
      || { podman logs "$CONTAINER" >&2; fail "container exited"; }
    sleep 0.5
  done
  podman logs "$CONTAINER" >&2
  fail "server not ready after 60 s"
}

check() {  # check: POST an image, check the mask; POST garbage, check the 4xx; probes
  "$PY" - "$URL" "${IMAGE_FILE:-}" <<'EOF'
import json
import sys
import urllib.error
import urllib.request

import cv2
import numpy as np

url, path = sys.argv[1], sys.argv[2]
if path:
    data = open(path, "rb").read()
    height, width = cv2.imread(path).shape[:2]
else:  # no shared data: a generated image
    height, width = 300, 420
    image = np.zeros((height, width, 3), np.uint8)
    cv2.circle(image, (200, 150), 80, (60, 80, 230), -1)
    data = cv2.imencode(".png", image)[1].tobytes()


def post(body, query=""):
    request = urllib.request.Request(f"{url}/v1/segment{query}", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers.get("content-type"), response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("content-type"), err.read()


status, kind, body = post(data)
assert status == 200 and kind == "image/png", (status, kind, body[:200])
mask = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
assert mask.shape == (height, width), (mask.shape, (height, width))
assert set(np.unique(mask).tolist()) <= {0, 255}, np.unique(mask)
status, kind, body = post(data, "?format=json")
summary = json.loads(body)
assert status == 200 and 0.0 <= summary["foreground_fraction"] <= 1.0, summary
status, kind, body = post(b"GARBAGE" * 100)
assert status == 415 and kind == "application/json", (status, kind)
assert b"Traceback" not in body and b"/opt/venv" not in body, body
assert json.loads(urllib.request.urlopen(f"{url}/healthz").read()) == {"status": "ok"}
info = json.loads(urllib.request.urlopen(f"{url}/v1/model").read())
assert b"v1/segment" in urllib.request.urlopen(f"{url}/").read()  # the browser page (package data)
print(f"mask {width}x{height} ok ({'shared image' if path else 'generated image'}), "
      f"garbage -> 415, model {info['model_id']} ({info['format']})")
EOF
}

log "serving the ONNX export"
serve onnx
check >&2 || fail "checks against the ONNX export"
podman healthcheck run "$CONTAINER" >/dev/null || fail "HEALTHCHECK reports unhealthy"
log "HEALTHCHECK healthy"
log "serving the TorchScript export"
serve torchscript
check >&2 || fail "checks against the TorchScript export"
podman stop --time 5 "$CONTAINER" >/dev/null 2>&1 || fail "podman stop"
log "OK: image $IMAGE ($((size / 1000000)) MB), total $(($(date +%s) - START)) s"
