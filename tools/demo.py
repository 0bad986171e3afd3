"""The mmdag demo: DAG on a real MMSegmentation model, end to end, on this machine.

    make demo            # = python tools/demo.py

1. writes a synthetic VOC2012-format dataset (tools/make_synthetic_voc.py),
2. trains a tiny FCN on it with the stock runner (tools/train.py), cached,
3. attacks its val set through tools/test.py and the DAG config,
4. prints a Table-1-style row and where the report and pictures are.

Every step is an ordinary command that a user can run by hand; each is
skipped when its output is already there and up to date.
"""
import argparse
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)


def run(cmd, what):
    print(f'\n[demo] {what}\n[demo] $ {" ".join(cmd)}', flush=True)
    t = time.time()
    res = subprocess.run(cmd, cwd=ROOT)
    if res.returncode != 0:
        sys.exit(f'[demo] failed: {what} (exit {res.returncode}); see the output above')
    print(f'[demo] done in {time.time() - t:.0f} s', flush=True)


def digest(*paths, extra=''):
    h = hashlib.sha1(extra.encode())
    for p in paths:
        with open(osp.join(ROOT, p), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()[:16]


def main(argv=None):
    p = argparse.ArgumentParser(description='mmdag demo')
    p.add_argument('--data-root', default='data/synthetic_voc')
    p.add_argument('--work-dir', default='work_dirs/demo')
    p.add_argument('--num-train', type=int, default=240)
    p.add_argument('--num-val', type=int, default=40)
    p.add_argument('--train-iters', type=int, default=None,
                   help='training iterations (default: the config\'s)')
    p.add_argument('--attack-options', nargs='*', default=[],
                   help='DAG arguments passed to tools/test.py, e.g. max_iters=50')
    p.add_argument('--launcher-procs', type=int, default=1,
                   help='attack with this many processes (torchrun, gloo on the CPU)')
    a = p.parse_args(argv)
    py = sys.executable
    t0 = time.time()

    # 1. data
    ready = osp.join(ROOT, a.data_root, 'READY')
    want = f'{a.num_train} {a.num_val} 160 120 0\n'
    if not (osp.isfile(ready) and open(ready).read() == want):
        run([py, 'tools/make_synthetic_voc.py', a.data_root, '--num-train', str(a.num_train),
             '--num-val', str(a.num_val)], 'writing the synthetic VOC2012-format dataset')
    else:
        print(f'[demo] synthetic VOC set already at {a.data_root}')
    data_root = osp.join(a.data_root, 'VOCdevkit', 'VOC2012')

    # 2. train (cached on config + data + iterations)
    cfg = 'configs/demo/fcn_tiny_synthetic-voc.py'
    train_dir = osp.join(a.work_dir, 'seg_train')
    opts = [f'train_dataloader.dataset.data_root={data_root}',
            f'test_dataloader.dataset.data_root={data_root}',
            f'val_dataloader.dataset.data_root={data_root}']
    if a.train_iters:
        opts += [f'train_cfg.max_iters={a.train_iters}',
                 f'train_cfg.val_interval={a.train_iters + 1}',
                 f'param_scheduler.0.end={a.train_iters}',
                 f'default_hooks.checkpoint.interval={a.train_iters}']
    key = digest(cfg, extra=want + ' '.join(opts))
    stamp = osp.join(ROOT, train_dir, 'DONE')
    ckpt = osp.join(train_dir, 'demo_seg.pth')
    if not (osp.isfile(stamp) and open(stamp).read().strip() == key
            and osp.isfile(osp.join(ROOT, ckpt))):
        run([py, 'tools/train.py', cfg, '--work-dir', train_dir, '--cfg-options', *opts],
            'training the tiny FCN on the synthetic set (a few minutes on 2 cores)')
        last = open(osp.join(ROOT, train_dir, 'last_checkpoint')).read().strip()
        os.replace(osp.join(ROOT, last) if not osp.isabs(last) else last, osp.join(ROOT, ckpt))
        with open(stamp, 'w') as f:
            f.write(key + '\n')
    else:
        print(f'[demo] trained model already at {ckpt} (delete {train_dir} to retrain)')

    # 3. attack through the stock test tool
    seg_dir = osp.join(a.work_dir, 'seg')
    test = ['tools/test.py', 'configs/demo/fcn_tiny_synthetic-voc_dag.py', ckpt,
            '--work-dir', seg_dir, '--cfg-options', f'test_dataloader.dataset.data_root={data_root}']
    if a.attack_options:
        test += ['--attack-options', *a.attack_options]
    if a.launcher_procs > 1:
        cmd = [py, '-m', 'torch.distributed.run', f'--nproc_per_node={a.launcher_procs}',
               '--master_port=29533', *test, '--launcher', 'pytorch']
    else:
        cmd = [py, *test]
    run(cmd, 'attacking the val set with DAG (ORIG / ADVR / PERM in one run)')

    # 4. the table
    from mmdag.summary import format_table
    report_path = osp.join(ROOT, seg_dir, 'dag_report.json')
    with open(report_path) as f:
        report = json.load(f)
    print('\n' + format_table({'demo FCN (tiny, synthetic VOC)': report['metrics']}))
    print(f'\n[demo] report:   {osp.relpath(report_path, ROOT)}')
    print(f'[demo] pictures: {osp.join(seg_dir, "figures")}/')
    print(f'[demo] total {time.time() - t0:.0f} s')


if __name__ == '__main__':
    main()
