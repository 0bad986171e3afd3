#!/usr/bin/env bash
# GPU check: run mmdag's CUDA tests (pytest -m cuda) on a bare GPU machine.
#
#   bash tools/gpu_check.sh prepare          # where pip reaches the package index
#   bash tools/gpu_check.sh run [LOG_DIR [PYTEST_ARGS...]]   # on the GPU machine
#
# `prepare` fills .gpu_check/ (ignored by git, about 9 MB): the wheels that a
# machine with Python, a CUDA build of torch, numpy, scipy, matplotlib, opencv,
# pillow, pyyaml, rich, regex, six, tqdm and pytest lacks (mmengine, mmdet,
# mmsegmentation and their pure-Python needs; pycocotools and shapely as
# binary wheels for GPU_PYTHON_VERSION, default 3.12), a setuptools that still
# has pkg_resources (mmcv's build needs it), and mmcv 2.1.0's source.
#
# `pack-mmcv MMCV_TREE` packs an mmcv 2.1.0 source tree already built in place
# with CUDA ops (`MMCV_WITH_OPS=1 FORCE_CUDA=1 python setup.py build_ext
# --inplace`, against the GPU machine's torch and Python, on any machine with
# nvcc) into .gpu_check/mmcv-cuda-prebuilt.tar.gz (debug info stripped); `run`
# then uses it instead of building (the build takes about 1 CPU-hour).
#
# `run` needs no package index: it installs those wheels into $GPU_CHECK_SITE
# (default /tmp/mmdag_gpu_site), builds mmcv with its CUDA ops in place under
# .gpu_check/mmcv-cuda (MMCV_WITH_OPS=1 FORCE_CUDA=1, TORCH_CUDA_ARCH_LIST
# default 9.0 = H100/H200, MAX_JOBS = all cores; needs ninja) and times it,
# then runs the CUDA tests. A build cut off after MMCV_BUILD_TIMEOUT seconds
# (default 480) stops the run (exit 3); the same command again on the same
# machine resumes the build. If the CUDA build fails with an error, it builds
# mmcv with CPU ops instead and runs the checks that need no mmcv op on the
# GPU (segmentation, transfer, distributed; not the detectors, whose NMS and
# RoIAlign need mmcv's CUDA ops), and says so. Everything it prints is
# also in LOG_DIR (default gpu_check_logs/): gpu_check.log, mmcv_build.log,
# pytest_cuda.log. PYTEST_ARGS go to pytest (e.g. -k segmentation).
# GPU_CHECK_TESTS replaces the CUDA tests' paths (default tests/test_cuda; e.g.
# one file, to finish a run that was cut off). GPU_CHECK_MORE names more
# pytest node ids to run after them, on the GPU where the code puts its
# models there (pytest_more.log).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DIR=${GPU_CHECK_DIR:-$ROOT/.gpu_check}
PY=${PYTHON:-python3}
MODE=${1:-}

# pure-Python needs of mmengine / mmdet / mmseg, pinned to the tested stack
WHEELS="mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 addict==2.4.0 yapf==0.43.0
platformdirs==4.14.8 termcolor==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 terminaltables==3.1.10
prettytable==3.18.0 pycocotools==2.0.11 shapely==2.2.0 setuptools==80.10.2 adv-lib==0.2.8"

prepare() {
    local pyver=${GPU_PYTHON_VERSION:-3.12}
    mkdir -p "$DIR/wheels"
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$DIR/wheels" $WHEELS || exit 1
    # mmcv's sdist: pip prepares its metadata with setup.py, which needs torch
    # and a setuptools with pkg_resources: use the project's environment
    local vpy="$ROOT/.venv/bin/python"
    [ -x "$vpy" ] || vpy=$PY
    "$vpy" -m pip download -q --no-deps --no-binary :all: --no-build-isolation -d "$DIR" \
        mmcv==2.1.0 || exit 1
    echo "[gpu_check] prepared $(du -sh "$DIR" | cut -f1) in $DIR (Python $pyver wheels):"
    ls "$DIR" "$DIR/wheels"
}

unpack_mmcv() {   # the mmcv source tree to build in place, unpacked once
    [ -d "$1" ] || { mkdir -p "$1" && tar -xzf "$DIR/mmcv-2.1.0.tar.gz" -C "$1" --strip-components=1; }
}

mmcv_ops=none

setup_env() {   # install the wheels and mmcv (prebuilt or built here) into $GPU_CHECK_SITE
    local logs=$1
    local site=${GPU_CHECK_SITE:-/tmp/mmdag_gpu_site}
    mkdir -p "$logs"
    exec > >(tee -a "$logs/gpu_check.log") 2>&1
    echo "[gpu_check] $(date -u '+%Y-%m-%d %H:%M:%S') UTC on $(hostname), $(nproc) cores"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "[gpu_check] no nvidia-smi"
    "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), torch.cuda.device_count(), 'GPU(s)')" || exit 1
    command -v nvcc >/dev/null && nvcc --version | tail -2
    [ -d "$DIR/wheels" ] || { echo "[gpu_check] error: $DIR/wheels missing: run 'bash tools/gpu_check.sh prepare' where pip reaches the index, and bring .gpu_check along"; exit 2; }
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$DIR"/wheels/*.whl || exit 1
    export PYTHONPATH="$site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"

    local t0 rc
    local src_cuda="$DIR/mmcv-cuda" src_cpu="$DIR/mmcv-cpu"
    local prebuilt="$DIR/mmcv-cuda-prebuilt.tar.gz"
    if [ ! -f "$src_cuda/.built" ] && [ -f "$prebuilt" ]; then
        # mmcv built with CUDA ops elsewhere (pack-mmcv) for this torch and Python
        mkdir -p "$src_cuda" && tar -xzf "$prebuilt" -C "$src_cuda" && touch "$src_cuda/.built"
        echo "[gpu_check] unpacked the prebuilt mmcv with CUDA ops $(basename "$prebuilt")"
    fi
    if [ -f "$src_cuda/.built" ]; then
        export PYTHONPATH="$src_cuda:$PYTHONPATH"; mmcv_ops=cuda
        echo "[gpu_check] mmcv with CUDA ops already built in $src_cuda"
    elif "$PY" -c "import mmcv.ops" 2>/dev/null; then
        mmcv_ops=present
        echo "[gpu_check] mmcv with ops already importable: no build"
    else
        command -v ninja >/dev/null || echo "[gpu_check] warning: no ninja on PATH: the build will be serial and far slower"
        local cuda_home
        cuda_home=$("$PY" -c "from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME)" 2>/dev/null)
        if [ -n "$cuda_home" ] && [ ! -f "$cuda_home/include/cusparse.h" ] && [ -z "${CUDA_INC_PATH:-}" ]; then
            # torch's headers include cusparse/cublas: take them from the nvidia wheels
            CUDA_INC_PATH=$("$PY" -c "import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], 'cu13', 'include'))" 2>/dev/null)
            export CUDA_INC_PATH
        fi
        # built in place under $DIR (kept between runs on the same machine): a
        # build cut off by MMCV_BUILD_TIMEOUT resumes where it stopped on rerun
        unpack_mmcv "$src_cuda"
        t0=$(date +%s)
        echo "[gpu_check] building mmcv 2.1.0 with CUDA ops in $src_cuda, CUDA_HOME=$cuda_home CUDA_INC_PATH=${CUDA_INC_PATH:-} (log: $logs/mmcv_build.log)"
        (cd "$src_cuda" && MMCV_WITH_OPS=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} \
            MAX_JOBS=${MAX_JOBS:-$(nproc)} timeout -k 10 "${MMCV_BUILD_TIMEOUT:-480}" \
            "$PY" setup.py build_ext --inplace) >> "$logs/mmcv_build.log" 2>&1
        rc=$?
        echo "[gpu_check] mmcv CUDA build: exit $rc after $(( $(date +%s) - t0 )) s"
        if [ $rc -eq 0 ]; then
            touch "$src_cuda/.built"
            export PYTHONPATH="$src_cuda:$PYTHONPATH"; mmcv_ops=cuda
        elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            echo "[gpu_check] the CUDA build ran out of its ${MMCV_BUILD_TIMEOUT:-480} s: run the same command again on this machine to resume it"
            return 3
        else
            echo "[gpu_check] first errors of the CUDA build:"
            grep -m 8 -E '(: error|error:|Error:)' "$logs/mmcv_build.log"
            unpack_mmcv "$src_cpu"
            t0=$(date +%s)
            echo "[gpu_check] falling back to mmcv with CPU ops in $src_cpu"
            (cd "$src_cpu" && CUDA_VISIBLE_DEVICES= MMCV_WITH_OPS=1 FORCE_CUDA=0 \
                MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" setup.py build_ext --inplace) \
                >> "$logs/mmcv_build.log" 2>&1 && { export PYTHONPATH="$src_cpu:$PYTHONPATH"; mmcv_ops=cpu; }
            echo "[gpu_check] mmcv CPU-ops build: $mmcv_ops after $(( $(date +%s) - t0 )) s"
        fi
    fi
    # what the detectors need on the GPU: NMS and RoIAlign on CUDA tensors
    "$PY" - <<'EOF'
import torch, mmcv
from mmcv.ops import nms, roi_align
print('[gpu_check] mmcv', mmcv.__version__, 'imported')
if torch.cuda.is_available():
    try:
        b = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float, device='cuda')
        keep = nms(b, torch.tensor([0.9, 0.8, 0.7], device='cuda'), 0.5)[1]
        f = roi_align(torch.rand(1, 4, 16, 16, device='cuda'), torch.tensor([[0, 1., 1., 9., 9.]], device='cuda'), (7, 7))
        print('[gpu_check] mmcv CUDA ops: nms kept', keep.tolist(), 'roi_align', tuple(f.shape), 'on', f.device)
    except Exception as e:
        print('[gpu_check] mmcv CUDA ops unavailable:', type(e).__name__, str(e)[:200])
EOF
}

run() {
    local logs=${1:-$ROOT/gpu_check_logs}
    shift || true
    setup_env "$logs" || return $?
    tests "$logs" "$@"
}

tests() {
    local logs=$1 rc
    shift
    local select=()
    if [ "$mmcv_ops" = cpu ]; then
        select=(-k 'not detect')
        echo "[gpu_check] NOT covered: detectors on CUDA (mmcv has CPU ops only)"
    fi
    echo "[gpu_check] running the CUDA tests"
    local t_tests; t_tests=$(date +%s)
    # shellcheck disable=SC2086
    "$PY" -m pytest ${GPU_CHECK_TESTS:-tests/test_cuda} -m cuda -v -rs -p no:cacheprovider \
        --durations=5 "${select[@]}" "$@" 2>&1 | tee "$logs/pytest_cuda.log"
    rc=${PIPESTATUS[0]}
    echo "[gpu_check] CUDA tests: exit $rc after $(( $(date +%s) - t_tests )) s; mmcv ops: $mmcv_ops"
    if [ -n "${GPU_CHECK_MORE:-}" ]; then
        # more tests that run on the GPU where one is present (e.g. the slow
        # resume test, whose tools/test.py runs put the model on CUDA)
        local more; t_tests=$(date +%s)
        echo "[gpu_check] running $GPU_CHECK_MORE"
        # shellcheck disable=SC2086
        "$PY" -m pytest $GPU_CHECK_MORE -v -rs -p no:cacheprovider --durations=5 2>&1 \
            | tee "$logs/pytest_more.log"
        more=${PIPESTATUS[0]}
        echo "[gpu_check] more tests: exit $more after $(( $(date +%s) - t_tests )) s"
        [ "$more" -eq 0 ] || rc=$more
    fi
    return "$rc"
}

bench_rows() {   # the speed benchmark's rows on this machine's device (CUDA when present)
    local logs=$1 iters=${BENCH_ITERS:-50} n=${BENCH_IMAGES:-8} data=$ROOT/data/synthetic_voc
    local sq=$ROOT/data/synthetic_voc_512 rc=0
    mkdir -p "$logs"
    [ -d "$data/VOCdevkit" ] || "$PY" tools/make_synthetic_voc.py "$data" >/dev/null || return 1
    # FCN-R50 at 512x512: images of that size pass the zoo test pipeline unchanged
    [ -d "$sq/VOCdevkit" ] || "$PY" tools/make_synthetic_voc.py "$sq" --num-train 1 \
        --num-val "$n" --width 512 --height 512 >/dev/null || return 1
    local voc=(--cfg-options test_dataloader.dataset.ann_file=VOC2012/ImageSets/Main/val.txt
               test_dataloader.dataset.data_prefix.sub_data_root=VOC2012/)
    bench_one() {
        echo "[gpu_check] benchmark: $*"
        PYTHONUNBUFFERED=1 "$PY" tools/analysis/benchmark.py "$@" 2>&1 | tee -a "$logs/benchmark.log" \
            | grep -v -i warn
        [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    }
    bench_one --config mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py \
        --data-root "$sq/VOCdevkit/VOC2012" --num-images "$n" --iters "$iters"
    bench_one --config mmseg::fcn/fcn_r50-d8_4xb4-20k_voc12aug-512x512.py \
        --data-root "$sq/VOCdevkit/VOC2012" --num-images "$n" --iters "$iters" \
        --methods floor mmdag --amp --channels-last
    if [ "$mmcv_ops" != cpu ]; then
        bench_one --config mmdet::pascal_voc/faster-rcnn_r50_fpn_1x_voc0712.py \
            --data-root "$data/VOCdevkit/" "${voc[@]}" --num-images "$n" --iters "$((iters / 2))" \
            --methods floor mmdag stock_roialign plain
        bench_one --config mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py \
            --data-root "$data/VOCdevkit/" "${voc[@]}" --num-images "$n" --iters "$((iters / 2))" \
            --methods floor mmdag plain
    fi
    [ "${BENCH_DEMO:-1}" = 1 ] || return $rc
    if [ -f work_dirs/demo/seg_train/model.pth ]; then
        bench_one --checkpoint work_dirs/demo/seg_train/model.pth --data-root "$data/VOCdevkit/VOC2012" \
            --num-images 8 --iters 200
    fi
    if [ -f work_dirs/demo/det_train/model.pth ] && [ "$mmcv_ops" != cpu ]; then
        bench_one --config configs/demo/faster-rcnn_tiny_synthetic-voc.py \
            --checkpoint work_dirs/demo/det_train/model.pth --data-root "$data/VOCdevkit/" \
            --num-images 4 --iters 100 --methods floor mmdag stock_roialign plain
    fi
    return $rc
}

pack_mmcv() {   # pack an mmcv source tree built in place with CUDA ops (setup.py build_ext --inplace)
    local tree=${1:?usage: pack-mmcv MMCV_TREE}
    local so; so=$(ls "$tree"/mmcv/_ext*.so 2>/dev/null | head -1)
    [ -n "$so" ] || { echo "[gpu_check] error: no mmcv/_ext*.so in $tree: build it there first"; exit 2; }
    local tmp; tmp=$(mktemp -d)
    (cd "$tree" && tar --exclude='mmcv/ops/csrc' --exclude='*.so' --exclude='__pycache__' -cf - mmcv) | tar -xf - -C "$tmp"
    strip --strip-debug -o "$tmp/mmcv/$(basename "$so")" "$so"
    mkdir -p "$DIR"
    tar -czf "$DIR/mmcv-cuda-prebuilt.tar.gz.tmp" -C "$tmp" mmcv && mv "$DIR/mmcv-cuda-prebuilt.tar.gz.tmp" "$DIR/mmcv-cuda-prebuilt.tar.gz"
    rm -rf "$tmp"
    echo "[gpu_check] packed $(du -h "$DIR/mmcv-cuda-prebuilt.tar.gz" | cut -f1) into $DIR/mmcv-cuda-prebuilt.tar.gz"
}

case "$MODE" in
    prepare) prepare ;;
    pack-mmcv) shift; pack_mmcv "$@" ;;
    run) shift; run "$@" ;;
    bench) shift; logs=${1:-$ROOT/gpu_check_logs}; setup_env "$logs" && bench_rows "$logs" ;;
    bench-only) shift; bench_rows "${1:-$ROOT/gpu_check_logs}" ;;
    all) shift; logs=${1:-$ROOT/gpu_check_logs}; shift || true
         setup_env "$logs" || exit $?
         bench_rows "$logs"; b=$?; tests "$logs" "$@"; t=$?
         echo "[gpu_check] benchmark: exit $b; CUDA tests: exit $t"; [ $b -eq 0 ] && [ $t -eq 0 ] ;;
    *) echo "usage: bash tools/gpu_check.sh prepare | pack-mmcv MMCV_TREE | run|bench|all [LOG_DIR [PYTEST_ARGS...]] | bench-only [LOG_DIR]" >&2; exit 2 ;;
esac
