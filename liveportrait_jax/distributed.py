"""Processes: JAX's distributed runtime for the commands that run on several hosts.

`train`, `prepare-data` (and any multi-process entry point) call `initialize()` before anything
else touches JAX: `jax.distributed.initialize()` must come before the XLA backend starts, and
building a model, `jax.devices()` or any array starts it. The process layout comes from the
environment (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID: the same command on every
host, README "Several hosts") or from the caller (a training config's `distributed` block). On CPU
the cross-process collectives are JAX's gloo implementation, so 2 processes on one machine work the
same way as 2 hosts (the tests do that).
"""

import logging
import os
import signal
import threading

log = logging.getLogger('liveportrait_jax')

ENV = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')


def _backend_started():
    try:
        from jax._src import xla_bridge

        return xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):  # a JAX without the private probe: let JAX say it
        return False


def is_initialized():
    import jax

    try:
        return jax.distributed.is_initialized()
    except AttributeError:  # older JAX
        from jax._src import distributed

        return distributed.global_state.client is not None


def initialize(coordinator=None, num_processes=None, process_id=None, *, say=None):
    """Joins the job's processes (a no-op for one process, or when already joined); returns
    (process_index, process_count).

    coordinator ('host:port'), num_processes, process_id: default to JAX_COORDINATOR_ADDRESS,
    JAX_NUM_PROCESSES and JAX_PROCESS_ID. Must run before any other JAX call: a clear error says
    so when the backend was already started.
    """
    import jax

    say = say or log.info
    coordinator = coordinator or os.environ.get('JAX_COORDINATOR_ADDRESS') or None
    num = num_processes or os.environ.get('JAX_NUM_PROCESSES')
    pid = process_id if process_id is not None else os.environ.get('JAX_PROCESS_ID')
    if coordinator is None and num in (None, '', 1, '1'):
        return 0, 1
    if is_initialized():
        return jax.process_index(), jax.process_count()
    if coordinator is None or num is None or pid is None:
        missing = [k for k, v in zip(ENV, (coordinator, num, pid)) if v in (None, '')]
        raise ValueError(f'several processes need {", ".join(ENV)}; missing: {missing}')
    if _backend_started():
        raise RuntimeError(
            'jax.distributed.initialize() must run before anything starts the JAX backend '
            '(building models, jax.devices(), arrays): call '
            'liveportrait_jax.distributed.initialize() first'
        )
    # Cross-process collectives on CPU (tests, CPU clusters); GPUs use NCCL regardless.
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    # jax.distributed.initialize makes JAX's preemption notifier the SIGTERM handler: a SIGTERM then
    # only marks a "preemption sync point" for orbax and the run goes on to the end (seen: exit 0).
    # SIGTERM stays with what the command installed (liveportrait_jax.stopping: the trainer stops
    # after the step, saves it and exits 143) or the default (the process ends).
    sigterm = signal.getsignal(signal.SIGTERM)
    jax.distributed.initialize(coordinator, int(num), int(pid))
    if sigterm is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, sigterm)
    local = jax.local_devices()
    say(
        f'process {jax.process_index()} of {jax.process_count()}: {jax.device_count()} global '
        f'devices ({len(local)} local: {local[0].platform})'
    )
    return jax.process_index(), jax.process_count()


def initialize_from_config(config):
    """initialize() with a training config's `distributed` block (coordinator, num_processes,
    process_id; '' / 0 / -1 unset: the environment decides)."""
    dist = config.get('distributed', None)
    dist = dist if hasattr(dist, 'get') else {}
    pid = dist.get('process_id', -1)
    return initialize(
        dist.get('coordinator') or None,
        dist.get('num_processes') or None,
        None if pid is None or pid < 0 else pid,
    )


def process_index():
    """This process's index (0 when JAX's distributed runtime is not initialised)."""
    import jax

    return jax.process_index()


def process_count():
    import jax

    return jax.process_count()


def barrier(name):
    """Waits until every process got here (nothing to wait for with one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def gather_json(value, directory, name):
    """Every process's `value` (anything json can write), in process order, for process 0; None
    in the others. Through files in a folder all processes share: each writes
    <directory>/parts/<name>.<i>-of-<n>.json (atomically), then all wait for each other. With one
    process, [value] and nothing written."""
    import json

    from liveportrait_jax.io import atomic_write_path

    count, index = process_count(), process_index()
    if count == 1:
        return [value]
    parts = os.path.join(directory, 'parts')
    os.makedirs(parts, exist_ok=True)
    path = lambda i: os.path.join(parts, f'{name}.{i}-of-{count}.json')  # noqa: E731
    with atomic_write_path(path(index)) as tmp:
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(value, f)
    barrier(f'liveportrait-{name}-parts')
    if index != 0:
        return None
    out = []
    for i in range(count):
        with open(path(i), encoding='utf-8') as f:
            out.append(json.load(f))
    return out
