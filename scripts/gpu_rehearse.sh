#!/usr/bin/env bash
# The GPU check rehearsed on this CPU (`make gpu-rehearse`): scripts/gpu_check.py --cpu, run as the GPU machine
# would run it, so that a missing wheel, an import of a package that is not there or a wrong option shows up
# before GPU time is spent.
#
#   bash scripts/gpu_rehearse.sh [RESULTS]     # default outputs/gpu_rehearse; needs `make gpu-wheels` first
#
# - Python: a virtual environment of Python $GPU_PYVER (3.12, the GPU machine's) holding only what that machine
#   has and the project uses: torch 2.11.0 and torchvision 0.26.0 (its versions) and the packages of its image
#   listed below. Built once (about 5 GB, a few minutes), in $GPU_REHEARSE_VENV.
# - Files: a copy of what the device tool sends (tracked files and untracked ones git does not ignore) plus the
#   wheel folder, in a temporary folder, so that nothing left in this checkout (data/, an installed egg-link,
#   an ignored build) is used.
# - Then gpu_check.py --cpu installs the wheels into a fresh --target folder, as on the machine.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
RESULTS=$(realpath -m "${1:-$ROOT/outputs/gpu_rehearse}")
WHEELS=$(realpath -m "${GPU_WHEEL_DIR:-$ROOT/.whl}")
PYVER=${GPU_PYVER:-3.12}
VENV=${GPU_REHEARSE_VENV:-$HOME/.cache/rigl-repro/gpu-image-py$PYVER}
# The GPU image's packages that the project imports (docs: the device tool's KINDS.md), at torch's versions there.
IMAGE_PACKAGES=(torch==2.11.0 torchvision==0.26.0 numpy pillow pytest pytest-timeout hypothesis pyyaml tqdm
                packaging scikit-learn pandas matplotlib safetensors)

if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "error: no wheels in $WHEELS; run make gpu-wheels first" >&2
    exit 2
fi

if [ ! -f "$VENV/.complete" ]; then
    python=""
    candidates=("python$PYVER")
    if command -v pyenv >/dev/null; then  # a pyenv shim runs only the versions selected: ask pyenv for its path
        version=$(pyenv versions --bare | grep "^$PYVER" | tail -1 || true)
        [ -n "$version" ] && candidates+=("$(PYENV_VERSION=$version pyenv which "python$PYVER" 2>/dev/null || true)")
    fi
    for candidate in "${candidates[@]}"; do
        if [ -n "$candidate" ] && "$candidate" -c "import venv" >/dev/null 2>&1; then
            python=$candidate
            break
        fi
    done
    if [ -z "$python" ]; then
        echo "error: no python$PYVER here (the GPU machine's Python); install it or set GPU_PYVER" >&2
        exit 2
    fi
    echo "building the GPU machine's stand-in: $VENV (Python $PYVER, ${IMAGE_PACKAGES[*]})"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
    touch "$VENV/.complete"
fi
# Every time: quick when nothing is missing, and a package added to the list above reaches an existing venv
# (or one whose first install was interrupted). This machine's pip settings warn about its local indexes.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${IMAGE_PACKAGES[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
"$VENV/bin/python" -c "import torch, torchvision"

COPY=$(mktemp -d /tmp/rigl-gpu-rehearse.XXXXXX)
trap 'rm -rf "$COPY"' EXIT
cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' file; do
    [ -f "$file" ] && printf '%s\0' "$file"
done | tar --null -T - -cf - | tar -xf - -C "$COPY"
cp -r "$WHEELS" "$COPY/.whl"

cd "$COPY"
start=$(date +%s)
status=0
env -u PYTHONPATH -u VIRTUAL_ENV -u OUT "$VENV/bin/python" scripts/gpu_check.py --cpu --wheels .whl "$RESULTS" \
    || status=$?
echo "rehearsal: exit code $status, wall time $(( $(date +%s) - start )) s, results in $RESULTS"
exit $status
