#!/usr/bin/env bash
# Run CloudFree's tests on a current QGIS: a Debian chroot (debootstrap) with the distribution's QGIS,
# torch, ONNX Runtime, safetensors, scikit-image and OpenCV; pip only for what Debian lacks
# (constraints-debian.txt). Usage, as root:
#
#   scripts/debian_chroot.sh [SUITE] [make target]      # default: trixie (Debian 13, QGIS 3.40) test-system
#
# The chroot is kept in $CLOUDFREE_CHROOT_CACHE (default ~/.cache/cloudfree-chroot/SUITE) and rebuilt only
# when the package list below changes. The checkout and ../shared are bind-mounted at their own paths,
# so the tests read the same files as on the host; everything is unmounted on exit.
set -euo pipefail
SUITE=${1:-trixie}
TARGET=${2:-test-system}
HERE=$(cd "$(dirname "$0")/.." && pwd)
SHARED=$(realpath "$HERE/../shared")
ROOTFS=${CLOUDFREE_CHROOT_CACHE:-$HOME/.cache/cloudfree-chroot}/$SUITE
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
APT="qgis python3-qgis qgis-providers gdal-bin python3-gdal python3-torch python3-onnxruntime python3-onnx \
python3-safetensors python3-skimage python3-opencv python3-sklearn python3-dask python3-distributed \
python3-pytest python3-pytestqt python3-pip make git"
STAMP="$ROOTFS/.cloudfree-$(echo "$APT $(cat "$HERE/constraints-debian.txt")" | sha1sum | cut -c1-12)"

[ "$(id -u)" = 0 ] || { echo "debian_chroot.sh needs root (debootstrap, chroot, mount)"; exit 2; }
started=$(date +%s)
if [ ! -e "$STAMP" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  if [ ! -x "$ROOTFS/usr/bin/apt-get" ]; then
    echo "==> debootstrap $SUITE into $ROOTFS"
    rm -rf "$ROOTFS"; mkdir -p "$ROOTFS"
    debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >/dev/null
  fi
fi

mounts=()
cleanup() { for ((i=${#mounts[@]}-1; i>=0; i--)); do umount -R "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" || true; done; }
trap cleanup EXIT
bind() { mkdir -p "$ROOTFS$2"; mount --rbind "$1" "$ROOTFS$2"; mount --make-rslave "$ROOTFS$2"; mounts+=("$ROOTFS$2"); }
mkdir -p "$ROOTFS/proc"; mount -t proc proc "$ROOTFS/proc"; mounts+=("$ROOTFS/proc")
bind /dev /dev
bind /sys /sys
bind "$HERE" "$HERE"
bind "$SHARED" "$SHARED"
SIBLING="$(dirname "$HERE")/shared"   # ../shared as the tests find it (often a symlink to $SHARED)
[ "$SIBLING" = "$SHARED" ] || bind "$SHARED" "$SIBLING"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

if [ ! -e "$STAMP" ]; then
  echo "==> installing QGIS and the Python packages from Debian $SUITE"
  chroot "$ROOTFS" bash -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $APT >/dev/null"
  echo "==> pip, for what Debian lacks (downloaded here, with this machine's certificates; installed offline)"
  rm -rf "$ROOTFS/tmp/cloudfree-wheels"; mkdir -p "$ROOTFS/tmp/cloudfree-wheels"
  grep -v '^#' "$HERE/constraints-debian.txt" > "$ROOTFS/tmp/cloudfree-wheels/requirements.txt"
  python3 -m pip download -q --no-deps -d "$ROOTFS/tmp/cloudfree-wheels" -r "$ROOTFS/tmp/cloudfree-wheels/requirements.txt"
  chroot "$ROOTFS" bash -c 'python3 -m pip install -q --root-user-action=ignore --break-system-packages --no-deps \
    --no-index /tmp/cloudfree-wheels/*.whl'
  rm -f "$ROOTFS"/.cloudfree-*; touch "$STAMP"
  echo "==> chroot ready in $(( $(date +%s) - started )) s"
fi
chroot "$ROOTFS" python3 -c "import qgis.core, torch, numpy, osgeo.gdal as g; print('QGIS', qgis.core.Qgis.QGIS_VERSION, 'torch', torch.__version__, 'numpy', numpy.__version__, 'GDAL', g.__version__)"
chroot "$ROOTFS" env -C "$HERE" HOME=/root make "$TARGET" PY=python3
