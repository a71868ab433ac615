"""Model configs, their one home: `full` is the released LivePortrait config (identical to the
reference's models.yaml); `tiny` the small config of the test fixtures (tests/fixtures/tiny).

    python -c "from liveportrait_jax.models.configs import get_config; print(get_config('tiny'))"
"""

import ml_collections


def _stitching_retargeting():
    # The stitching/retargeting MLPs are full size in both configs (the tiny fixtures keep them).
    return dict(
        stitching=dict(input_size=126, hidden_sizes=[128, 128, 64], output_size=65),
        lip=dict(input_size=65, hidden_sizes=[128, 128, 64], output_size=63),
        eye=dict(input_size=66, hidden_sizes=[256, 256, 128, 128, 64], output_size=63),
    )


def _full():
    return dict(
        name='full',
        input_size=256,
        appearance_feature_extractor_params=dict(
            image_channel=3,
            block_expansion=64,
            num_down_blocks=2,
            max_features=512,
            reshape_channel=32,
            reshape_depth=16,
            num_resblocks=6,
        ),
        motion_extractor_params=dict(
            num_kp=21,
            backbone='convnextv2_tiny',
            depths=[3, 3, 9, 3],
            dims=[96, 192, 384, 768],
            num_bins=66,
        ),
        warping_module_params=dict(
            num_kp=21,
            block_expansion=64,
            max_features=512,
            num_down_blocks=2,
            reshape_channel=32,
            estimate_occlusion_map=True,
            dense_motion_params=dict(
                block_expansion=32, max_features=1024, num_blocks=5, reshape_depth=16, compress=4
            ),
        ),
        spade_generator_params=dict(
            upscale=2, block_expansion=64, max_features=512, num_down_blocks=2
        ),
        stitching_retargeting_module_params=_stitching_retargeting(),
    )


def _tiny():
    return dict(
        name='tiny',
        input_size=64,
        appearance_feature_extractor_params=dict(
            image_channel=3,
            block_expansion=8,
            num_down_blocks=2,
            max_features=64,
            reshape_channel=4,
            reshape_depth=16,
            num_resblocks=2,
        ),
        motion_extractor_params=dict(
            num_kp=21,
            backbone='convnextv2',
            depths=[1, 1, 2, 1],
            dims=[16, 32, 64, 128],
            num_bins=66,
        ),
        warping_module_params=dict(
            num_kp=21,
            block_expansion=4,
            max_features=64,
            num_down_blocks=2,
            reshape_channel=4,
            estimate_occlusion_map=True,
            dense_motion_params=dict(
                block_expansion=4, max_features=32, num_blocks=3, reshape_depth=16, compress=2
            ),
        ),
        spade_generator_params=dict(
            upscale=2, block_expansion=4, max_features=16, num_down_blocks=2
        ),
        stitching_retargeting_module_params=_stitching_retargeting(),
    )


VARIANTS = {'full': _full, 'tiny': _tiny}


def get_config(arg='full'):
    """Returns the model config for `arg` in {'full', 'tiny'}."""
    arg = arg or 'full'
    if arg not in VARIANTS:
        raise ValueError(f'unknown model config {arg!r}; choose one of {sorted(VARIANTS)}')
    return ml_collections.ConfigDict(VARIANTS[arg]())
