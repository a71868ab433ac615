"""`liveportrait-jax bench`: one short run on tiny random weights, checked section by section."""

import argparse
import json
import subprocess
import sys

import pytest

from liveportrait_jax.pipeline import bench
from liveportrait_jax.pipeline.options import number_flag


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The JSON of one tiny bench run (2 or 3 frames, chunk 2, peak RSS at 3 and 6 frames)."""
    from liveportrait_jax.cli import main

    out = tmp_path_factory.mktemp('bench') / 'bench.json'
    args = ['bench', '--config', 'tiny', '--chunk', '2', '--frames', '2', '--repeats', '1']
    args += ['--host-frames', '3', '--rss-frames', '3,6', '--rss-size', '64', '--json', str(out)]
    assert main(args) == 0
    return json.loads(out.read_text())


def test_bench_writes_json(data):
    assert data['device']['platform'] == 'cpu'
    stages = data['stages_ms_per_frame']['chunk 2']
    assert all(stages[k] > 0 for k in ('M (motion extractor)', 'W (warping)', 'G (generator)'))
    assert data['end_to_end']['2']['frames_per_s'] > 0


def test_bench_device_render_with_paste_back(data):
    stages, compiled = data['stages_ms_per_frame']['chunk 2'], data['compile_s']['2']
    for size in ('512x512', '1920x1080'):
        key = f'W+G+paste-back, image source {size} (device)'
        assert stages[key] > 0 and compiled[key] > 0


def test_bench_host_core_ms(data):
    host = data['host_core_ms_per_frame']
    assert set(host) == {'512', '1080p'}
    for size in host.values():
        for stage in (
            'decode',
            'landmarks',
            'driving crop (iter_driving_crops)',
            'upload + download',
        ):
            assert size[stage] > 0
        assert size['encode (h264)'] > 0 and size['comparison panel'] > 0
        assert size['animate() total'] > size['landmarks']
    # ffmpeg's CPU is counted (decode and encode run in child processes) and included above.
    ffmpeg = data['host_core_ms_per_frame_ffmpeg']
    for name, size in ffmpeg.items():
        assert 0 < size['decode'] <= host[name]['decode']
        assert 0 < size['encode (h264)'] <= host[name]['encode (h264)']
    assert data['host_frames'] == {'stages': 3, 'animate() total': 2}


def test_bench_peak_rss(data):
    rss = data['peak_rss_mb']
    assert list(rss) == ['3', '6'] and all(v > 50 for v in rss.values())
    assert data['peak_rss_ratio_longest_to_shortest'] == pytest.approx(rss['6'] / rss['3'])
    assert data['peak_rss_runs']['frames'] == {'3': 3, '6': 6}
    kids = data['peak_rss_mb_ffmpeg_children']['largest single process']
    assert all(v is None or v >= 0 for v in kids.values())


def test_core_clock_counts_child_processes():
    clock = bench.CoreClock()
    busy = 'import time\nt = time.process_time()\nwhile time.process_time() - t < 0.2: pass'
    with clock.counting():
        subprocess.run([sys.executable, '-c', busy], check=True)
    assert clock.children >= 0.15 and clock.total >= clock.children


def test_list_flags():
    assert number_flag('--rss-frames', many=True)('100,400') == (100, 400)
    assert number_flag('--rss-frames', many=True)('') == ()
    with pytest.raises(argparse.ArgumentTypeError, match="--chunk must be a number, got 'x'"):
        number_flag('--chunk', many=True)('1,x')
    with pytest.raises(argparse.ArgumentTypeError, match='--chunk must be >= 1, got 0'):
        number_flag('--chunk', many=True)('0')
