"""Motion templates: the three reference layouts, round trip, hostile pickles, bad shapes.

Templates are built here, in the reference's layouts, rather than taken from the reference repo.
"""

import os
import pickle

import numpy as np
import pytest

from liveportrait_jax.io import (
    DEFAULT_MAX_TEMPLATE_FRAMES,
    InputError,
    MotionTemplate,
    UnsafePickleError,
    load_template,
    safe_load,
    save_template,
    template_from_dict,
    template_to_dict,
)

N = 4


def _frame(rng, rot_key='R', extra=False):
    f = {
        'scale': rng.random((1, 1), np.float32) + 1,
        rot_key: rng.standard_normal((1, 3, 3), np.float32),
        'exp': rng.standard_normal((1, 21, 3), np.float32),
        't': rng.standard_normal((1, 3), np.float32),
    }
    if extra:
        f['kp'] = rng.standard_normal((1, 21, 3), np.float32)
        f['x_s'] = rng.standard_normal((1, 21, 3), np.float32)
    return f


def _layout(kind, n=N, seed=0):
    rng = np.random.default_rng(seed)
    if kind == 'motion-only':  # (a)
        return {'n_frames': n, 'output_fps': 25, 'motion': [_frame(rng) for _ in range(n)]}
    if kind == 'legacy':  # (b)
        return {
            'n_frames': n,
            'output_fps': 30,
            'motion': [_frame(rng, 'R_d') for _ in range(n)],
            'c_d_eyes_lst': [rng.random((1, 2), np.float32) for _ in range(n)],
            'c_d_lip_lst': [rng.random((1, 1), np.float32) for _ in range(n)],
        }
    if kind == 'current':  # (c), as make_motion_template builds it
        return {
            'n_frames': n,
            'output_fps': 25,
            'motion': [_frame(rng, extra=True) for _ in range(n)],
            'c_eyes_lst': [rng.random((1, 2), np.float32) for _ in range(n)],
            'c_lip_lst': [rng.random((1, 1), np.float32) for _ in range(n)],
        }
    raise ValueError(kind)


def _dump(path, obj, protocol=4):
    with open(path, 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize('kind', ['motion-only', 'legacy', 'current'])
def test_reads_each_reference_layout(tmp_path, kind):
    d = _layout(kind)
    t = load_template(_dump(tmp_path / f'{kind}.pkl', d))
    assert t.layout == kind and t.n_frames == len(t) == N
    assert t.fps == d['output_fps']
    rot = 'R_d' if kind == 'legacy' else 'R'
    np.testing.assert_array_equal(t.R, np.concatenate([f[rot] for f in d['motion']]))
    np.testing.assert_array_equal(t.exp, np.concatenate([f['exp'] for f in d['motion']]))
    np.testing.assert_array_equal(t.t, np.concatenate([f['t'] for f in d['motion']]))
    np.testing.assert_array_equal(t.scale, np.concatenate([f['scale'] for f in d['motion']]))
    assert t.R.shape == (N, 3, 3) and t.exp.shape == (N, 21, 3) and t.t.shape == (N, 3)
    assert t.scale.shape == (N, 1) and t.R.dtype == np.float32
    if kind == 'motion-only':
        assert t.c_eyes is None and t.c_lip is None and t.kp is None and t.x_s is None
    else:
        eyes = d.get('c_eyes_lst', d.get('c_d_eyes_lst'))
        np.testing.assert_array_equal(t.c_eyes, np.concatenate(eyes))
        assert t.c_eyes.shape == (N, 2) and t.c_lip.shape == (N, 1)
    if kind == 'current':
        np.testing.assert_array_equal(t.x_s, np.concatenate([f['x_s'] for f in d['motion']]))
        assert t.kp.shape == (N, 21, 3)


def test_round_trip_writes_the_current_reference_layout(tmp_path):
    t = load_template(_dump(tmp_path / 'in.pkl', _layout('current')))
    path = tmp_path / 'out.pkl'
    save_template(path, t)
    back = load_template(path)
    assert back.layout == 'current' and back.fps == 25.0
    for field in ('R', 'exp', 't', 'scale', 'kp', 'x_s', 'c_eyes', 'c_lip'):
        np.testing.assert_array_equal(getattr(back, field), getattr(t, field))

    # What the reference's loader sees: plain dicts/lists of float32 arrays with a batch axis of 1.
    with open(path, 'rb') as f:
        raw = pickle.load(f)  # our own file, safe to load unrestricted
    assert raw['n_frames'] == N and raw['output_fps'] == 25 and isinstance(raw['output_fps'], int)
    frame = raw['motion'][0]
    assert {k: v.shape for k, v in frame.items()} == {
        'scale': (1, 1),
        'R': (1, 3, 3),
        't': (1, 3),
        'exp': (1, 21, 3),
        'kp': (1, 21, 3),
        'x_s': (1, 21, 3),
    }
    assert all(v.dtype == np.float32 for v in frame.values())
    assert raw['c_eyes_lst'][0].shape == (1, 2) and raw['c_lip_lst'][0].shape == (1, 1)
    assert os.listdir(tmp_path) == ['in.pkl', 'out.pkl']


def test_round_trip_from_arrays_omits_missing_fields(tmp_path):
    rng = np.random.default_rng(1)
    t = MotionTemplate(
        R=np.tile(np.eye(3), (2, 1, 1)),
        exp=rng.standard_normal((2, 21, 3)),
        t=np.zeros((2, 3)),
        scale=np.ones((2, 1)),
        fps=29.97,
    )
    assert t.exp.dtype == np.float32
    raw = template_to_dict(t)
    assert (
        'c_eyes_lst' not in raw
        and 'kp' not in raw['motion'][0]
        and raw['output_fps'] == pytest.approx(29.97)
    )
    back = load_template(save_template(tmp_path / 'a.pkl', t))
    assert back.layout == 'motion-only' and back.fps == pytest.approx(29.97)
    np.testing.assert_array_equal(back.exp, t.exp)


def test_numpy2_pickles_are_accepted(tmp_path):
    # numpy 2 names its array rebuild function numpy._core.multiarray._reconstruct; protocol 2 spells
    # globals as text, so the numpy 1 pickle can be rewritten to the numpy 2 spelling byte for byte.
    data = pickle.dumps(_layout('motion-only'), protocol=2)
    assert b'numpy.core.multiarray' in data
    path = tmp_path / 'np2.pkl'
    path.write_bytes(data.replace(b'numpy.core.multiarray', b'numpy._core.multiarray'))
    assert load_template(path).n_frames == N


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}',))


def test_hostile_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / 'pwned'
    d = _layout('motion-only')
    d['payload'] = _Evil(marker)
    path = _dump(tmp_path / 'evil.pkl', d)
    with pytest.raises(UnsafePickleError, match=r'evil\.pkl.*refused.*system'):
        load_template(path)
    assert not marker.exists()
    assert issubclass(UnsafePickleError, InputError)


@pytest.mark.parametrize(
    'module,name',
    [
        ('builtins', 'eval'),
        ('numpy.testing._private.utils', 'runstring'),
        ('numpy', 'load'),
        ('subprocess', 'Popen'),
    ],
)
def test_other_globals_are_refused(tmp_path, module, name):
    data = b'\x80\x02c' + f'{module}\n{name}\n'.encode() + b'X\x04\x00\x00\x00codeq\x00\x85R.'
    path = tmp_path / 'g.pkl'
    path.write_bytes(data)
    with pytest.raises(UnsafePickleError, match=f"'{module}.{name}'"):
        safe_load(path)


def _expect_error(tmp_path, obj, pattern):
    path = _dump(tmp_path / 'bad.pkl', obj)
    with pytest.raises(InputError, match=pattern):
        load_template(path)


def test_wrong_shapes_are_clear_errors(tmp_path):
    d = _layout('current')
    d['motion'][2]['exp'] = np.zeros((1, 20, 3), np.float32)
    _expect_error(
        tmp_path, d, r"bad\.pkl.*frame 2.*'exp' has shape \(1, 20, 3\), expected \(21, 3\)"
    )

    d = _layout('legacy')
    d['motion'][0]['R_d'] = np.zeros((1, 3, 2), np.float32)
    _expect_error(tmp_path, d, r"'R' has shape \(1, 3, 2\)")

    d = _layout('current')
    d['c_eyes_lst'] = d['c_eyes_lst'][:-1]
    _expect_error(tmp_path, d, r"'c_eyes_lst'.*expected 4 frames")

    d = _layout('current')
    d['c_lip_lst'][1] = np.zeros((1, 3), np.float32)
    _expect_error(tmp_path, d, r"'c_lip' has shape \(1, 3\)")

    d = _layout('motion-only')
    d['n_frames'] = 7
    _expect_error(tmp_path, d, r"'n_frames' is 7 but 'motion' has 4 frames")

    d = _layout('current')
    del d['motion'][3]['kp']
    _expect_error(tmp_path, d, r"'kp' is present in some frames but missing from frame 3")

    d = _layout('motion-only')
    del d['motion'][1]['t']
    _expect_error(tmp_path, d, r"frame 1 has no 't'")

    d = _layout('motion-only')
    d['motion'][0]['scale'] = np.array([[np.nan]], np.float32)
    _expect_error(tmp_path, d, 'NaN')

    d = _layout('motion-only')
    d['output_fps'] = -1
    _expect_error(tmp_path, d, 'output_fps')

    with pytest.raises(InputError, match=r"'exp' has shape \(2, 63\)"):
        MotionTemplate(
            R=np.zeros((2, 3, 3)), exp=np.zeros((2, 63)), t=np.zeros((2, 3)), scale=np.ones((2, 1))
        )


def test_not_a_template(tmp_path):
    _expect_error(tmp_path, [1, 2, 3], 'expected a dict, got list')
    _expect_error(tmp_path, {'frames': []}, "no 'motion' list")
    _expect_error(tmp_path, {'motion': []}, 'no frames')
    _expect_error(tmp_path, {'motion': [{'exp': np.zeros((1, 21, 3))}]}, "no rotation 'R'")

    data = pickle.dumps(_layout('current'), protocol=4)
    (tmp_path / 'cut.pkl').write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r'cut\.pkl.*truncated/corrupt'):
        load_template(tmp_path / 'cut.pkl')
    with pytest.raises(InputError, match='not found'):
        load_template(tmp_path / 'missing.pkl')
    (tmp_path / 'text.pkl').write_text('hello')
    with pytest.raises(InputError, match=r'text\.pkl'):
        load_template(tmp_path / 'text.pkl')


def test_abusable_numpy_objects_are_refused(tmp_path):
    # Object arrays would let a pickle smuggle arbitrary objects into "numeric" fields.
    (tmp_path / 'obj.pkl').write_bytes(pickle.dumps({'motion': np.array([1, None], object)}))
    with pytest.raises(UnsafePickleError, match='non-numeric dtype'):
        safe_load(tmp_path / 'obj.pkl')
    # A dtype state with the "holds object pointers" flags set on float32 would make numpy treat raw
    # bytes as pointers; the state must be the standard one.
    data = pickle.dumps(np.zeros(2, np.float32), protocol=2)
    tampered = data.replace(b'J\xff\xff\xff\xffK\x00t', b'J\xff\xff\xff\xffK\x3ft')
    assert tampered != data
    (tmp_path / 'flags.pkl').write_bytes(tampered)
    with pytest.raises(UnsafePickleError, match='non-standard state for dtype'):
        safe_load(tmp_path / 'flags.pkl')


@pytest.mark.parametrize('protocol', [0, 2, 3, 4, 5])
def test_all_pickle_protocols_load(tmp_path, protocol):
    d = _layout('legacy')
    d['extras'] = {'set': {1, 2}, 'bytes': b'ab', 'scalar': np.float32(1.5), 'int': np.int64(3)}
    t = load_template(_dump(tmp_path / 'p.pkl', d, protocol))
    np.testing.assert_array_equal(t.exp, np.concatenate([f['exp'] for f in d['motion']]))
    assert safe_load(tmp_path / 'p.pkl')['extras'] == d['extras']


def _repeated(n, kind='motion-only'):
    """A template of `n` frames that are all the same objects: pickle memoises them, so the file
    stays small whatever `n` claims."""
    d = _layout(kind, n=1)
    d['n_frames'] = n
    for key, value in d.items():
        if isinstance(value, list):
            d[key] = value * n
    return d


class _NumpySpy:
    """Stands in for numpy inside io.templates: records what asarray and stack are given."""

    def __init__(self):
        self.given = []

    def __getattr__(self, name):
        return getattr(np, name)

    def asarray(self, value, *args, **kwargs):
        self.given.append(value)
        if isinstance(value, (list, tuple)) and len(value) > 4096:  # fail now, not in hours
            raise AssertionError(f'a list of {len(value)} values reached numpy')
        return np.asarray(value, *args, **kwargs)

    def stack(self, values, *args, **kwargs):
        self.given.append(values)
        return np.stack(values, *args, **kwargs)


@pytest.fixture
def numpy_spy(monkeypatch):
    from liveportrait_jax.io import templates

    spy = _NumpySpy()
    monkeypatch.setattr(templates, 'np', spy)
    return spy


def test_huge_frame_count_is_refused_before_building_arrays(tmp_path, numpy_spy, monkeypatch):
    from liveportrait_jax.io import templates

    path = _dump(tmp_path / 'x.pkl', _repeated(2_000_000))
    assert os.path.getsize(path) < 8 << 20  # a few MB claiming two million frames

    def converted(value, field, where):
        raise AssertionError(f'{where}: {field!r} converted before the frame count was checked')

    monkeypatch.setattr(templates, '_as_frame_array', converted)
    with pytest.raises(InputError) as err:
        load_template(path)
    # Refused on the frame count alone: no frame's value was converted, no array built.
    assert numpy_spy.given == []
    assert str(err.value) == (
        f'{str(path)!r}: motion template has 2000000 frames, more than the limit of '
        f'{DEFAULT_MAX_TEMPLATE_FRAMES} (raise it with --max-template-frames)'
    )
    assert DEFAULT_MAX_TEMPLATE_FRAMES == 108_000


@pytest.mark.parametrize('kind', ['motion-only', 'legacy', 'current'])
def test_frame_limit_applies_to_every_layout(kind):
    d = _repeated(50, kind)
    with pytest.raises(InputError, match='has 50 frames, more than the limit of 49'):
        template_from_dict(d, "'t.pkl'", max_frames=49)
    assert template_from_dict(d, "'t.pkl'", max_frames=50).n_frames == 50
    assert template_from_dict(d, "'t.pkl'").n_frames == 50  # well under the default


def test_no_limit_allows_a_long_template(tmp_path):
    n = DEFAULT_MAX_TEMPLATE_FRAMES + 1
    path = _dump(tmp_path / 'long.pkl', _repeated(n))
    with pytest.raises(InputError, match=f'{n} frames, more than the limit'):
        load_template(path)
    assert load_template(path, max_frames=None).n_frames == n


def test_absurd_per_frame_values_are_refused_before_conversion(numpy_spy):
    # A per-frame 'exp' that is a list of 100,000 references to one list of 100,000 numbers: a
    # small pickle, 10^10 values for numpy to convert.
    row = [0.0] * 100_000
    bomb = [row] * 100_000
    rng = np.random.default_rng(0)
    for where in ('motion', 'c_eyes_lst'):
        d = _layout('current', n=1)
        if where == 'motion':
            d['motion'][0]['exp'] = bomb
            field = 'exp'
        else:
            d['c_eyes_lst'] = [bomb]
            field = 'c_eyes'
        with pytest.raises(InputError, match=f"'{field}' holds more than 4096 values"):
            template_from_dict(d, "'bomb.pkl'")
        # Refused before numpy saw it (converting it would take hours and all memory).
        assert not any(v is bomb or v is row for v in numpy_spy.given)
    # A numpy array that is too big, and a legitimately nested list, in the same field.
    d = _layout('motion-only', n=1)
    d['motion'][0]['exp'] = np.zeros((1000, 21, 3), np.float32)
    with pytest.raises(
        InputError, match=r"'exp' holds more than 4096 values, expected shape \(21, 3\)"
    ):
        template_from_dict(d)
    d['motion'][0]['exp'] = rng.standard_normal((1, 21, 3)).tolist()
    assert template_from_dict(d).exp.shape == (1, 21, 3)
