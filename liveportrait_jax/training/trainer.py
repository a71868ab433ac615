"""Fine-tuning loop for one head (stitching, eye, lip) or the openness regressor.

Only the head's parameters are optimised: F, W, G (and the openness regressor) enter the jitted step
as constants, so they get no gradients and no optimizer state. optax: AdamW with warmup + cosine
decay and global-norm clipping. The step is jitted with buffer donation of the parameters and the
optimizer state; a step whose loss or gradients are not finite is skipped (parameters and optimizer
state kept) and counted. Batches are sharded over all devices (data parallel, `jax.sharding`), the
parameters replicated. An orbax CheckpointManager keeps {params, opt_state, step, rng}; batches are a
pure function of (seed, step), so the step is the data position and a resumed run reproduces an
uninterrupted one exactly. Metrics go to the console and to wandb (disabled or offline by default).

Several processes (hosts): the entry point calls `liveportrait_jax.distributed.initialize()` before
anything else (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or config.distributed).
The mesh spans every process's devices; each process gathers only its rows of each global batch
(the draws are those of the whole batch, so any number of processes sees the same batches) and
builds the global array from them (`jax.make_array_from_process_local_data`). Every process takes
part in saving and restoring the one orbax checkpoint; the history, wandb and the exported head
come from process 0.

The same update on any number of devices (config.device_independent, the default): every example's
loss and gradient is computed on its own (a batch of one, `lax.map` on its device), the per-example
values are gathered to every device and summed in row order (`_row_sum`), then divided by the batch
size. Float additions are not associative, so XLA's usual data-parallel step (a sum per device, then
an all-reduce; a batched kernel whose rounding depends on how many rows it holds) gives other
low-order bits on another device count, and Adam's first steps (about lr * sign(grad) for each
weight) and the L1 objectives' kinks amplify them: 2 devices gave a 2.7 % different gradient norm by
step 4 (README "Fine-tuning"). A global batch that does not divide by the device count is padded
with copies of its rows that weigh nothing. device_independent=False is XLA's batched step (faster
with large per-device batches; the batch must divide by the device count).

Stop requests (liveportrait_jax.stopping: SIGTERM, SIGINT, SIGHUP): the step under way finishes
(a step runs inside `stopping.critical()`; the first compilation does not, and a stop during it
loses nothing), a checkpoint of that last completed step is saved (also inside `critical()`: a
second signal cannot cut it short; orbax writes a temporary folder and renames it), and `Stopped`
is raised: the same command resumes from there. With several
processes the request rides along in the step (a max over every device of each one's signal
number), so every process stops after the same step and takes part in the one collective save,
even when the signal reached only one of them.
"""

import dataclasses
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from liveportrait_jax import stopping
from liveportrait_jax.training import objectives
from liveportrait_jax.training.data import TrainData
from liveportrait_jax.training.openness import OpennessNet
from liveportrait_jax.training.openness import augment as augment_openness

HEADS = ('stitching', 'eye', 'lip', 'openness')
FROZEN = ('appearance_feature_extractor', 'warping_module', 'spade_generator')


@dataclasses.dataclass
class TrainResult:
    params: dict  # the trained head's parameters (pure dict)
    step: int
    history: list  # per logged step: dict of metrics
    workdir: str
    skipped_steps: int


def _host(x):
    """A replicated (or fully local) array as numpy, in any process."""
    if getattr(x, 'is_fully_addressable', True):
        return np.asarray(x)
    return np.asarray(x.addressable_data(0))


def _process_rows(batch_size, n_devices, pad):
    """(padded global batch size, this process's rows of it as global row numbers).

    Its devices are a contiguous block of the mesh, so its rows are a contiguous block too. With
    `pad`, a batch that does not divide by the device count gets extra rows (copies of row r mod
    batch_size, given no weight in the step); without, it is refused.
    """
    padded = -(-batch_size // n_devices) * n_devices
    if padded != batch_size and not pad:
        raise ValueError(
            f'batch_size {batch_size} must be a multiple of the {n_devices} devices with '
            'device_independent=False (the default, True, pads the batch)'
        )
    n, i = jax.process_count(), jax.process_index()
    per = padded // n  # every process has as many devices
    return padded, np.arange(i * per, (i + 1) * per)


def _row_sum(tree, keep):
    """Sum over the leading (row) axis in row order, leaving out rows whose `keep` is False: the
    same sequence of float additions on every device count (a reduction XLA splits across devices
    or vectorises adds in another order). Rows left out add an exact 0, so padding changes no bit."""

    def add(total, row):
        values, k = row
        return jax.tree.map(lambda t, v: t + jnp.where(k, v, 0), total, values), None

    zero = jax.tree.map(lambda v: jnp.zeros(v.shape[1:], v.dtype), tree)
    return jax.lax.scan(add, zero, (tree, keep))[0]


def _pure(module):
    graphdef, state = nnx.split(module)
    return graphdef, state, nnx.to_pure_dict(state)


def _merge(graphdef, template, pure):
    state = jax.tree.map(lambda x: x, template)
    nnx.replace_by_pure_dict(state, pure)
    return nnx.merge(graphdef, state)


def load_openness(path):
    """Restores an OpennessNet saved by a 'openness' training run (its workdir or final dir)."""
    import orbax.checkpoint as ocp

    net = OpennessNet(rngs=nnx.Rngs(0))
    graphdef, state, pure = _pure(net)
    target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), pure)
    final = os.path.join(path, 'final') if os.path.isdir(os.path.join(path, 'final')) else path
    restored = ocp.StandardCheckpointer().restore(os.path.abspath(final), target)
    return _merge(graphdef, state, restored)


def make_task(config, models):
    """(trainable module, frozen states, loss(head_module, frozen, batch) -> (loss, metrics))."""
    head = config.head
    if head not in HEADS:
        raise ValueError(f'config.head must be one of {HEADS}, got {head!r}')
    if head == 'openness':
        net = OpennessNet(rngs=nnx.Rngs(config.seed), width=config.get('openness_width', 32))
        return net, {}, lambda m, frozen, batch: objectives.openness_loss(m, batch)
    graphdefs = {n: models.graphdefs[n] for n in FROZEN}
    frozen = {n: models.states[n] for n in FROZEN}
    size, dtype = models.input_size, models.dtype
    module = models.networks[head]
    if head == 'stitching':
        return (
            module,
            frozen,
            lambda m, fr, b: objectives.stitching_loss(
                m, fr, graphdefs, b, config.loss, size, dtype
            ),
        )
    if config.get('openness_checkpoint'):
        opener = load_openness(config.openness_checkpoint)
    else:  # tests: an untrained regressor (documented: real runs must pass a trained one)
        opener = OpennessNet(rngs=nnx.Rngs(0))
    og, ostate = nnx.split(opener)
    frozen['openness'] = ostate

    def loss(m, fr, b):
        return objectives.retargeting_loss(
            head, m, fr, graphdefs, nnx.merge(og, fr['openness']), b, config.loss, size, dtype
        )

    return module, frozen, loss


def make_optimizer(config):
    warmup = max(1, config.warmup_steps)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        config.learning_rate,
        warmup,
        max(warmup + 1, config.total_steps),
        end_value=config.learning_rate * config.get('final_lr_fraction', 0.1),
    )
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, weight_decay=config.weight_decay),
    ), schedule


def _batch_arrays(batch):
    return {k: np.asarray(v, np.float32) if v.dtype.kind == 'f' else v for k, v in batch.items()}


def train(config, workdir, *, models=None, data=None, devices=None, log=print, evaluate=None):
    """Trains config.head for config.total_steps (resuming from workdir if it has checkpoints).

    evaluate(step, params) -> {name: float}: run by process 0 every config.eval.every steps
    (before the last; the caller judges the final head), with the head's params as numpy; what it
    returns is logged (and sent to wandb). The other processes wait at their next step meanwhile.
    """
    import orbax.checkpoint as ocp

    from liveportrait_jax import distributed

    distributed.initialize_from_config(config)  # a no-op if the entry point did it already
    if jax.process_index() != 0:  # metrics and messages come from process 0
        log = lambda *a, **k: None  # noqa: E731
    devices = list(devices if devices is not None else jax.devices())
    exact = config.get('device_independent', True)
    padded, rows = _process_rows(config.batch_size, len(devices), pad=exact)
    mesh = Mesh(np.array(devices), ('data',))
    batch_sharding = NamedSharding(mesh, P('data'))
    replicated = NamedSharding(mesh, P())
    if data is None:
        data = TrainData(config.data_dir)
    train_idx, _ = data.split(list(config.get('held_out_videos', [])))
    module, frozen, loss_fn = make_task(config, models)
    graphdef, template, params = _pure(module)
    tx, schedule = make_optimizer(config)
    # The step donates params and optimizer state; start from copies, never from the model's own
    # arrays (donation would delete them under the caller's LivePortraitModels).
    params = jax.device_put(jax.tree.map(lambda x: jnp.array(x, copy=True), params), replicated)
    frozen = jax.device_put(frozen, replicated)
    opt_state = jax.device_put(tx.init(params), replicated)

    def loss_of(p, fr, batch):
        loss, metrics = loss_fn(_merge(graphdef, template, p), fr, batch)
        return loss, metrics

    def example_loss(p, fr, example):  # one example as a batch of one
        return loss_of(p, fr, jax.tree.map(lambda x: x[None], example))

    # -> (loss, metrics, grads, {'sample': (rows, H, W, 3)} or {}, stop): the batch's means, and
    # the largest stop request (a signal number, 0: none) of any device. Per device.
    @functools.partial(
        jax.shard_map,
        mesh=mesh,
        in_specs=(P(), P(), P('data'), P('data'), P('data')),
        out_specs=(P(), P(), P(), P('data'), P()),
        check_vma=False,  # the gathered sums are replicated: every device computes the same
    )
    def exact_grads(params, frozen, batch, weight, stop):
        value_and_grad = jax.value_and_grad(example_loss, has_aux=True)
        (loss, metrics), grads = jax.lax.map(lambda ex: value_and_grad(params, frozen, ex), batch)
        samples = {'sample': metrics.pop('sample')} if 'sample' in metrics else {}
        gathered = jax.lax.all_gather((loss, metrics, grads), 'data', tiled=True)
        keep = jax.lax.all_gather(weight, 'data', tiled=True)
        loss, metrics, grads = jax.tree.map(
            lambda x: x / config.batch_size, _row_sum(gathered, keep)
        )
        return loss, metrics, grads, samples, jax.lax.pmax(stop, 'data')

    def batched_grads(params, frozen, batch, weight, stop):  # XLA's data parallel step
        (loss, metrics), grads = jax.value_and_grad(loss_of, has_aux=True)(params, frozen, batch)
        samples = {'sample': metrics.pop('sample')[None]} if 'sample' in metrics else {}
        return loss, metrics, grads, samples, jnp.max(stop, keepdims=True)

    grads_of = exact_grads if exact else batched_grads

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def train_step(params, opt_state, frozen, batch, weight, stop):
        loss, metrics, grads, samples, stop = grads_of(params, frozen, batch, weight, stop)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        keep = lambda new, old: jnp.where(finite, new, old)
        params = jax.tree.map(keep, new_params, params)
        opt_state = jax.tree.map(keep, new_opt, opt_state)
        metrics = dict(metrics, loss=loss, grad_norm=grad_norm, skipped=~finite)
        if samples:
            metrics['sample'] = samples['sample'][0]
        return params, opt_state, metrics, stop[0]

    os.makedirs(workdir, exist_ok=True)
    manager = ocp.CheckpointManager(
        os.path.abspath(os.path.join(workdir, 'checkpoints')),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.get('keep_checkpoints', 3),
            save_interval_steps=config.checkpoint_every,
        ),
    )
    step = 0
    if manager.latest_step() is not None:
        step = manager.latest_step()
        abstract = jax.tree.map(
            ocp.utils.to_shape_dtype_struct,
            {
                'params': params,
                'opt_state': opt_state,
                'step': np.array(0, np.int64),
                'seed': np.array(0, np.int64),
            },
        )
        restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
        if int(restored['seed']) != config.seed:
            raise ValueError(
                f'{workdir}: checkpoints were made with seed {int(restored["seed"])}, '
                f'the config says {config.seed}'
            )
        params, opt_state = restored['params'], restored['opt_state']
        log(f'resumed from step {step} ({workdir})')

    run = None
    wandb_cfg = config.get('wandb', {})
    if wandb_cfg.get('mode', 'disabled') != 'disabled' and jax.process_index() == 0:
        import wandb

        run = wandb.init(
            project=wandb_cfg.get('project', 'liveportrait-jax'),
            mode=wandb_cfg['mode'],
            dir=workdir,
            config=config.to_dict(),
            resume='allow',
            id=wandb_cfg.get('run_id'),
        )

    def save(force=False):
        manager.save(
            step,
            args=ocp.args.StandardSave(
                {
                    'params': params,
                    'opt_state': opt_state,
                    'step': np.array(step, np.int64),
                    'seed': np.array(config.seed, np.int64),
                }
            ),
            force=force,
        )

    history, skipped = [], 0
    start, compiled = step, None
    source_rows = rows % config.batch_size  # padding rows repeat real ones (and weigh nothing)
    weight = jax.make_array_from_process_local_data(
        batch_sharding, rows < config.batch_size, (padded,)
    )
    t0 = time.perf_counter()
    while step < config.total_steps:
        if jax.process_count() == 1 and stopping.requested():
            break  # several processes agree on the step to stop at through the step itself
        # One process takes the whole batch (a data source need not know about rows then).
        share = {'rows': source_rows} if jax.process_count() > 1 else {}
        batch = data.sample(config.seed, step, config.batch_size, train_idx, **share)
        if not share and padded != config.batch_size:
            batch = {k: v[source_rows] for k, v in batch.items()}
        if config.head == 'openness' and config.get('augment', True):
            # One generator per global row: the same draws however the batch is split.
            rngs = [np.random.default_rng([config.seed, step, 1, int(r)]) for r in source_rows]
            batch = augment_openness(batch, rngs)
        batch = {
            k: jax.make_array_from_process_local_data(batch_sharding, v, (padded,) + v.shape[1:])
            for k, v in _batch_arrays(batch).items()
        }
        # This process's stop request (a signal number; 0: none), one entry per local device.
        stop = jax.make_array_from_process_local_data(
            batch_sharding,
            np.full(mesh.local_mesh.size, stopping.requested() or 0, np.int32),
            (len(devices),),
        )
        if compiled is None:  # compiling may take long: a stop request may cut it short
            compiled = train_step.lower(params, opt_state, frozen, batch, weight, stop).compile()
        with stopping.critical():  # a compiled step is short: a stop request lets it finish
            params, opt_state, metrics, agreed = compiled(
                params, opt_state, frozen, batch, weight, stop
            )
            step += 1
            skipped += int(metrics['skipped'])
            agreed = int(_host(agreed))
        if step % config.log_every == 0 or step == config.total_steps:
            scalars = {k: float(_host(v)) for k, v in metrics.items() if k != 'sample'}
            scalars.update(
                step=step,
                lr=float(schedule(step)),
                seconds_per_step=(time.perf_counter() - t0) / config.log_every,
            )
            t0 = time.perf_counter()
            history.append(scalars)
            log(
                f'step {step}: '
                + ', '.join(f'{k} {v:.4g}' for k, v in scalars.items() if k != 'step')
            )
            sample = None
            wandb_on = wandb_cfg.get('mode', 'disabled') != 'disabled'
            if wandb_on and 'sample' in metrics and step % config.get('sample_every', 100) == 0:
                from jax.experimental import multihost_utils

                sample = multihost_utils.process_allgather(metrics['sample'])  # every process
            if run is not None:
                payload = dict(scalars)
                if sample is not None:
                    import wandb

                    payload['sample'] = wandb.Image(np.asarray(sample))
                run.log(payload, step=step)
        if agreed:  # some process was asked to stop: every process stops after this step
            stopping.request(agreed)
            break
        every = config.get('eval', {}).get('every', 0)
        if evaluate and every and step % every == 0 and step < config.total_steps:
            if jax.process_index() == 0:
                try:
                    scores = evaluate(step, jax.tree.map(_host, params))
                except stopping.Stopped:
                    scores = None  # the next step carries the request to every process
                if scores is not None:
                    log(f'step {step}: ' + ', '.join(f'{k} {v:.4g}' for k, v in scores.items()))
                    if run is not None:
                        run.log(scores, step=step)
        save()  # orbax keeps every config.checkpoint_every'th
    if stopping.requested() and step < config.total_steps:
        with stopping.critical():  # a second signal cannot cut the save short
            manager.wait_until_finished()
            if step > start and manager.latest_step() != step:
                save(force=True)
            manager.wait_until_finished()
        if step:
            log(f'stopped after step {step}; the checkpoint of step {step} is saved (run the same '
                'command again to resume from it)')  # fmt: skip
        stopping.check()
    manager.wait_until_finished()
    final = os.path.abspath(os.path.join(workdir, 'final'))
    if jax.process_index() == 0:
        import shutil

        shutil.rmtree(final, ignore_errors=True)
    distributed.barrier('liveportrait-final-cleared')
    # Every process takes part (orbax synchronises them); the replicated values are written once.
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(final, params)
    ckptr.wait_until_finished()
    if jax.process_index() == 0:
        with open(os.path.join(workdir, 'history.json'), 'w') as f:
            json.dump({'history': history, 'skipped_steps': skipped}, f, indent=1)
    if run is not None:
        run.finish()
    return TrainResult(jax.tree.map(_host, params), step, history, workdir, skipped)


def evaluate_openness(net_params, data, indices, batch=32):
    """Mean abs error of the regressor against MediaPipe's ratios on frames `indices`."""
    net = OpennessNet(rngs=nnx.Rngs(0))
    graphdef, template, _ = _pure(net)
    model = _merge(graphdef, template, net_params)
    preds = []
    for i in range(0, len(indices), batch):
        idx = indices[i : i + batch]
        preds.append(np.asarray(model(jnp.asarray(data.arrays['crops'][idx], jnp.float32) / 255)))
    pred = np.concatenate(preds)
    labels = np.concatenate([data.arrays['eye'][indices], data.arrays['lip'][indices]], axis=1)
    err = np.abs(pred - labels)
    corr = [
        float(np.corrcoef(pred[:, j], labels[:, j])[0, 1])
        if labels[:, j].std() > 0
        else float('nan')
        for j in range(3)
    ]
    return {
        'frames': int(len(indices)),
        'eye_mae': float(err[:, :2].mean()),
        'lip_mae': float(err[:, 2].mean()),
        'eye_left_corr': corr[0],
        'eye_right_corr': corr[1],
        'lip_corr': corr[2],
    }
