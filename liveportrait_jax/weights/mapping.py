"""Checkpoint key tables: which PyTorch layer (state-dict key prefix) is which kind of layer.

Flax module paths equal the reference's attribute paths (the NNX modules are named after them), so a
prefix maps to the Flax path with the same dotted name, and each table row only has to say what kind
of layer sits there. A key that matches no row, a Flax parameter that no key fills, and a shape that
differs are all errors of strict loading (see weights/strict.py).
"""

from liveportrait_jax.weights.layers import BATCH_NORM, CONV, GRN, LAYER_NORM, LINEAR, SPECTRAL_CONV

# (regular expression over the layer prefix, layer kind)
APPEARANCE_FEATURE_EXTRACTOR = (
    (r'first\.conv', CONV),
    (r'first\.norm', BATCH_NORM),
    (r'down_blocks\.\d+\.conv', CONV),
    (r'down_blocks\.\d+\.norm', BATCH_NORM),
    (r'second', CONV),
    (r'resblocks_3d\.3dr\d+\.conv[12]', CONV),
    (r'resblocks_3d\.3dr\d+\.norm[12]', BATCH_NORM),
)

MOTION_EXTRACTOR = (
    (r'detector\.downsample_layers\.0\.0', CONV),  # stem: conv 4x4/4, then LayerNorm
    (r'detector\.downsample_layers\.0\.1', LAYER_NORM),
    (r'detector\.downsample_layers\.[1-9]\d*\.0', LAYER_NORM),  # LayerNorm, then conv 2x2/2
    (r'detector\.downsample_layers\.[1-9]\d*\.1', CONV),
    (r'detector\.stages\.\d+\.\d+\.dwconv', CONV),
    (r'detector\.stages\.\d+\.\d+\.norm', LAYER_NORM),
    (r'detector\.stages\.\d+\.\d+\.pwconv[12]', LINEAR),
    (r'detector\.stages\.\d+\.\d+\.grn', GRN),
    (r'detector\.norm', LAYER_NORM),
    (r'detector\.fc_(kp|scale|pitch|yaw|roll|t|exp)', LINEAR),
)

WARPING_MODULE = (
    (r'dense_motion_network\.hourglass\.encoder\.down_blocks\.\d+\.conv', CONV),
    (r'dense_motion_network\.hourglass\.encoder\.down_blocks\.\d+\.norm', BATCH_NORM),
    (r'dense_motion_network\.hourglass\.decoder\.up_blocks\.\d+\.conv', CONV),
    (r'dense_motion_network\.hourglass\.decoder\.up_blocks\.\d+\.norm', BATCH_NORM),
    (r'dense_motion_network\.hourglass\.decoder\.conv', CONV),
    (r'dense_motion_network\.hourglass\.decoder\.norm', BATCH_NORM),
    (r'dense_motion_network\.mask', CONV),
    (r'dense_motion_network\.compress', CONV),
    (r'dense_motion_network\.norm', BATCH_NORM),
    (r'dense_motion_network\.occlusion', CONV),
    (r'third\.conv', CONV),
    (r'third\.norm', BATCH_NORM),
    (r'fourth', CONV),
)

SPADE_GENERATOR = (
    (r'fc', CONV),
    (r'(G_middle_\d+|up_\d+)\.conv_[01s]', SPECTRAL_CONV),
    (r'(G_middle_\d+|up_\d+)\.norm_[01s]\.mlp_shared\.0', CONV),
    (r'(G_middle_\d+|up_\d+)\.norm_[01s]\.mlp_(gamma|beta)', CONV),
    (r'conv_img(\.0)?', CONV),
)

STITCHING_MLP = ((r'mlp\.\d+', LINEAR),)

TABLES = {
    'appearance_feature_extractor': APPEARANCE_FEATURE_EXTRACTOR,
    'motion_extractor': MOTION_EXTRACTOR,
    'warping_module': WARPING_MODULE,
    'spade_generator': SPADE_GENERATOR,
    'stitching': STITCHING_MLP,
    'lip': STITCHING_MLP,
    'eye': STITCHING_MLP,
}

# The stitching checkpoint is one file holding three state dicts under the reference's old names.
STITCHING_FILE_KEYS = {
    'stitching': 'retarget_shoulder',
    'lip': 'retarget_mouth',
    'eye': 'retarget_eye',
}
DDP_PREFIX = 'module.'
