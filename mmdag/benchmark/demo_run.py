"""The demo's steps (``tools/demo.py``, ``make demo``, ``mmdag demo``): the
synthetic set, the tiny models trained with the stock runners (cached), the
attack of their val sets through ``tools/test.py``, Table 1.

Every step is an ordinary command that a user can run by hand, printed
before it runs; each is skipped when its output is already there and up to
date. Data and outputs go below the current directory.
"""
import hashlib
import os
import os.path as osp
import subprocess
import sys
import time

from mmdag.contract import REPORT_FILE
from mmdag.summary import format_table, read_report


def here(path: str) -> str:
    """``path`` relative to the current directory when it lies below it (a
    clone: the reports name configs/... as before), else as it is (mmdag's
    installed configs)."""
    return osp.relpath(path) if path.startswith(os.getcwd() + os.sep) else path


def run(cmd, what):
    shown = [here(c) for c in cmd]
    print(f'\n[demo] {what}\n[demo] $ {" ".join(shown)}', flush=True)
    t = time.time()
    res = subprocess.run(cmd)
    if res.returncode != 0:
        sys.exit(f'[demo] failed: {what} (exit {res.returncode}); see the output above')
    print(f'[demo] done in {time.time() - t:.0f} s', flush=True)


def free_port() -> int:
    """A TCP port free on this host now, for the launcher's rendezvous (a
    fixed port makes two demo runs on one host collide)."""
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def digest(*paths, extra=''):
    h = hashlib.sha1(extra.encode())
    for p in paths:
        with open(p, 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:16]


TASKS = {
    # task: (train config, attack config, data root below --data-root, title,
    #        test images attacked (None: all), attack processes)
    'seg': ('configs/demo/fcn_tiny_synthetic-voc.py', 'configs/demo/fcn_tiny_synthetic-voc_dag.py',
            'VOCdevkit/VOC2012', 'demo FCN (tiny, synthetic VOC)', None, 1),
    # the detector's attack spends ~90% of its time in mmcv's single-threaded
    # CPU RoIAlign: two processes (gloo) nearly halve it; 16 of the val images
    # keep `make demo` within its time budget
    'det': ('configs/demo/faster-rcnn_tiny_synthetic-voc.py',
            'configs/demo/faster-rcnn_tiny_synthetic-voc_dag.py', 'VOCdevkit/',
            'demo Faster R-CNN (tiny, synthetic VOC)', 16, 2),
    # not in the default run (`make demo` stays within its time budget): DINO
    # trains for about 21 min on 2 cores; `python tools/demo.py --tasks dino`
    'dino': ('configs/demo/dino_tiny_synthetic-voc.py',
             'configs/demo/dino_tiny_synthetic-voc_dag.py', 'VOCdevkit/',
             'demo DINO (tiny, synthetic VOC)', 16, 2),
}


def train_cached(py, tools, cfg, train_dir, data_root, data_key, iters):
    """Train with tools/train.py unless a checkpoint for this config, data and
    iteration count is already there; return the checkpoint path."""
    opts = [f'{k}_dataloader.dataset.data_root={data_root}' for k in ('train', 'val', 'test')]
    if iters:
        opts += [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
                 f'default_hooks.checkpoint.interval={iters}']
    key = digest(cfg, extra=data_key + ' '.join(opts))
    stamp = osp.join(train_dir, 'DONE')
    ckpt = osp.join(train_dir, 'model.pth')
    if (osp.isfile(stamp) and open(stamp).read().strip() == key
            and osp.isfile(ckpt)):
        print(f'[demo] trained model already at {ckpt} (delete {train_dir} to retrain)')
        return ckpt
    run([py, osp.join(tools, 'train.py'), cfg, '--work-dir', train_dir, '--cfg-options', *opts],
        f'training {osp.basename(cfg)} on the synthetic set (2 to 21 minutes on 2 cores)')
    last = open(osp.join(train_dir, 'last_checkpoint')).read().strip()
    os.replace(last, ckpt)
    with open(stamp, 'w') as f:
        f.write(key + '\n')
    return ckpt


def run_demo(a, root: str) -> None:
    """The demo with the tool's arguments ``a`` (see ``tools/demo.py``);
    ``root`` holds its ``configs/`` and ``tools/`` (a clone, or mmdag's
    installed ``.mim``)."""
    tools = osp.join(root, 'tools')
    py = sys.executable
    t0 = time.time()

    ready = osp.join(a.data_root, 'READY')
    want = f'{a.num_train} {a.num_val} 160 120 0\n'
    if not (osp.isfile(ready) and open(ready).read() == want):
        run([py, osp.join(tools, 'make_synthetic_voc.py'), a.data_root,
             '--num-train', str(a.num_train), '--num-val', str(a.num_val)],
            'writing the synthetic VOC2012-format dataset')
    else:
        print(f'[demo] synthetic VOC set already at {a.data_root}')

    rows, reports = {}, []
    for k, task in enumerate(a.tasks):
        cfg, attack_cfg, sub, title, limit, procs = TASKS[task]
        cfg, attack_cfg = here(osp.join(root, cfg)), here(osp.join(root, attack_cfg))
        if task == 'det' and a.det_val_images is not None:
            limit = a.det_val_images or None
        procs = a.launcher_procs or procs
        data_root = osp.join(a.data_root, sub)
        iters = a.train_iters[k] if a.train_iters and k < len(a.train_iters) else None
        ckpt = train_cached(py, tools, cfg, osp.join(a.work_dir, f'{task}_train'), data_root,
                            want, iters)
        if a.train_only:
            continue
        out = osp.join(a.work_dir, task)
        test = [osp.join(tools, 'test.py'), attack_cfg, ckpt, '--work-dir', out,
                '--cfg-options', f'test_dataloader.dataset.data_root={data_root}']
        if limit and limit < a.num_val:
            test.append(f'test_dataloader.dataset.indices={limit}')
        if a.attack_options:
            test += ['--attack-options', *a.attack_options]
        if procs > 1:
            cmd = [py, '-m', 'torch.distributed.run', f'--nproc_per_node={procs}',
                   f'--master_port={free_port()}', *test, '--launcher', 'pytorch']
        else:
            cmd = [py, *test]
        n = min(limit or a.num_val, a.num_val)
        run(cmd, f'attacking {n} {task} val images with DAG (ORIG / ADVR / PERM in one run, '
                 f'{procs} process{"es" if procs > 1 else ""})')
        report_path = osp.join(out, REPORT_FILE)
        rows[title] = read_report(report_path)['metrics']
        reports.append((report_path, osp.join(out, 'figures')))

    if a.train_only:
        print(f'[demo] models trained, nothing attacked (--train-only); total '
              f'{time.time() - t0:.0f} s')
        return
    print('\n' + format_table(rows))
    for report_path, figures in reports:
        print(f'[demo] report:   {report_path}')
        print(f'[demo] pictures: {figures}/')
    print(f'[demo] total {time.time() - t0:.0f} s')
