"""Compare a converted model set with reference outputs saved from the PyTorch code.

    python tools/parity_report.py WEIGHTS_DIR reference_outputs.npz [--dtype bfloat16] [--json OUT]

The npz uses the keys of tests/fixtures/tiny/reference_outputs.npz (reference layouts, NCHW/NCDHW).
Prints max / mean abs error per output; exits 1 if any max error exceeds --tol (default 1e-3).
"""

import argparse
import json
import sys
import time

import jax.numpy as jnp
import numpy as np

import liveportrait_jax as lp


def channels_last(x):
    return np.moveaxis(x, 1, -1)


def report(models, ref):
    img = channels_last(ref['image'])
    f_s_ref = channels_last(ref['feature_3d'])
    rows = []

    def add(name, got, want):
        err = np.abs(np.asarray(got, np.float64) - want)
        rows.append((name, float(err.max()), float(err.mean())))

    t = time.time()
    add('F feature_3d', models.extract_feature_3d(img), f_s_ref)
    raw = models.motion_heads(img)
    for k in ('pitch', 'yaw', 'roll', 't', 'exp', 'scale', 'kp'):
        add(f'M {k}', raw[k], ref[f'motion_{k}'])
    info = models.get_kp_info(img)
    for k in ('pitch', 'yaw', 'roll'):
        add(f'kp_info {k} (deg)', info[k], ref[f'kp_info_{k}'])
    ref_info = {k[8:]: ref[k] for k in ref if k.startswith('kp_info_')}
    add(
        'rotation',
        lp.get_rotation_matrix(ref_info['pitch'], ref_info['yaw'], ref_info['roll']),
        ref['rotation'],
    )
    add('transform_keypoints', lp.transform_keypoints(ref_info), ref['kp_transformed'])
    x_s, x_d = ref['kp_source'], ref['kp_driving']
    add('S stitching', models.stitching(x_s, x_d), ref['stitching_out'])
    add('S eye', models.retarget_eye(x_s, ref['eye_ratio']), ref['retarget_eye_out'])
    add('S lip', models.retarget_lip(x_s, ref['lip_ratio']), ref['retarget_lip_out'])
    w = models.warp(f_s_ref, x_s, x_d)
    add('W dense mask', w['mask'], channels_last(ref['dense_mask']))
    add('W deformation', w['deformation'], ref['warp_deformation'])
    add('W occlusion', w['occlusion_map'], channels_last(ref['warp_occlusion_map']))
    add('W out', w['out'], channels_last(ref['warp_out']))
    add(
        'G (on reference W out)',
        models.decode(channels_last(ref['warp_out'])),
        channels_last(ref['generator_out']),
    )
    add('W+G warp_decode', models.decode(w['out']), channels_last(ref['generator_out']))
    return rows, time.time() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('weights')
    ap.add_argument('reference_npz')
    ap.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16', 'float16'))
    ap.add_argument('--tol', type=float, default=1e-3)
    ap.add_argument('--json')
    args = ap.parse_args(argv)
    models = lp.load_models(args.weights, dtype=jnp.dtype(args.dtype))
    with np.load(args.reference_npz) as z:
        ref = {k: z[k] for k in z.files}
    rows, seconds = report(models, ref)
    width = max(len(r[0]) for r in rows)
    print(f'{"output":{width}}  {"max abs err":>12}  {"mean abs err":>12}   ({args.dtype})')
    for name, mx, mean in rows:
        flag = '' if mx <= args.tol else '  > tol'
        print(f'{name:{width}}  {mx:12.3e}  {mean:12.3e}{flag}')
    print(f'({seconds:.1f} s including compilation)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(
                {
                    'dtype': args.dtype,
                    'rows': [dict(output=n, max_abs=m, mean_abs=a) for n, m, a in rows],
                },
                f,
                indent=1,
            )
    return 0 if all(r[1] <= args.tol for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
