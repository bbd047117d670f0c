"""Traced programs kept across runs: the epoch as a serialised `jax.export` artifact.

XLA's persistent cache skips compiling, but every run still traces and lowers the epoch (about
1.4 s of the built-in run's 7 s). Here the lowered program is saved once per key (source code, jax
version, device, settings, priors and argument shapes) and later runs load it instead of tracing.
Cold and warm runs both call the exported program, so their results are bit-identical. Needs the
`flatbuffers` package (jax's serialisation); without it, or on any unreadable entry, the epoch is
traced as usual.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any, Callable

import jax
import jaxlib

FORMAT = 1  # bump when the file layout below changes
# XLA options of the programs a run calls once or a few times (initialisation, the export's threshold
# table, the best-state copy): at the lowest backend optimisation level they compile in about
# half the time, and what they then lose in run time is microseconds. The epoch keeps XLA's default.
ONE_SHOT = {"xla_backend_optimization_level": 0}
# Settings that never reach the epoch program (the run directory, console, checkpoint cadence).
HOST_ONLY = frozenset({"out", "overwrite", "quiet", "plots", "compile_cache", "checkpoint_every", "keep_checkpoints"})


@functools.cache
def _source_digest() -> str:
    """sha256 of the package's Python sources: any code change is a new key."""
    root = os.path.dirname(os.path.abspath(__file__))
    h = hashlib.sha256()
    for dirpath, dirnames, files in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(dirpath, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read())
    return h.hexdigest()


def directory() -> str | None:
    """Where artifacts live: beside XLA's persistent cache, when that is on."""
    xla = jax.config.jax_compilation_cache_dir
    return os.path.join(xla, "exported") if xla else None


def key(settings: dict[str, Any], extra: bytes, leaves: list) -> str:
    """The artifact's name: everything the traced program depends on."""
    device = jax.devices()[0]
    parts = {"format": FORMAT, "source": _source_digest(), "jax": jax.__version__,
             "jaxlib": jaxlib.__version__,
             "device": [device.platform, device.device_kind, jax.device_count()],
             "settings": {k: v for k, v in settings.items() if k not in HOST_ONLY},
             "args": [[list(x.shape), str(x.dtype)] for x in leaves]}
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    h.update(extra)
    return h.hexdigest()[:32]


def _unflatten_dict(paths: list[list[str]], leaves) -> dict:
    out: dict = {}
    for path, leaf in zip(paths, leaves):
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = leaf
    return out


def _load(path: str):
    try:
        from jax import export
        with open(path + ".json") as f:
            meta = json.load(f)
        with open(path, "rb") as f:
            return export.deserialize(bytearray(f.read())), meta
    except Exception:  # noqa: BLE001 - a missing, stale or damaged entry only means tracing again
        return None


def _save(path: str, exported, meta: dict) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for suffix, data in ((".json", json.dumps(meta).encode()), ("", exported.serialize())):
            tmp = f"{path}{suffix}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path + suffix)  # whole files only: a concurrent run reads the old or the new
    except OSError:
        pass  # an unwritable cache costs the next run its tracing, nothing else


def _export(epoch: Callable, state, data):
    """Trace `epoch` once and export it with flat arguments; None when it cannot be exported (metrics
    that are not nested dicts, host callbacks)."""
    from jax import export
    treedef = jax.tree.structure((state, data))
    state_def = jax.tree.structure(state)
    paths: list[list[str]] = []

    def flat(*leaves):
        new_state, metrics = epoch(*jax.tree.unflatten(treedef, leaves))
        if jax.tree.structure(new_state) != state_def:
            raise TypeError("the epoch changed the state's structure")
        keyed = jax.tree_util.tree_flatten_with_path(metrics)[0]
        if not all(isinstance(k, jax.tree_util.DictKey) for p, _ in keyed for k in p):
            raise TypeError("the epoch's metrics are not nested dicts")
        paths[:] = [[str(k.key) for k in p] for p, _ in keyed]
        return (*jax.tree.leaves(new_state), *(leaf for _, leaf in keyed))

    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in jax.tree.leaves((state, data))]
    try:
        exported = export.export(jax.jit(flat))(*specs)
    except (TypeError, NotImplementedError):  # e.g. a host callback, which jax.export cannot serialise
        return None
    return exported, {"metric_paths": paths}


def compiled_epoch(epoch: Callable, state, data, cache_dir: str | None, settings: dict, extra: bytes) -> Callable:
    """The compiled `epoch(state, data) -> (state, metrics)` with `state` donated, loaded from
    `cache_dir` (see `directory`) when a run with the same key saved it (else traced, and saved there)."""
    if cache_dir:
        try:
            import flatbuffers  # noqa: F401 - jax.export's serialisation needs it
        except ImportError:
            cache_dir = None
    if not cache_dir:
        return jax.jit(epoch, donate_argnums=0).lower(state, data).compile()
    leaves = jax.tree.leaves((state, data))
    path = os.path.join(cache_dir, key(settings, extra, leaves))
    loaded = _load(path)
    if loaded is None:
        loaded = _export(epoch, state, data)
        if loaded is None:
            return jax.jit(epoch, donate_argnums=0).lower(state, data).compile()
        _save(path, *loaded)
    exported, meta = loaded
    state_def = jax.tree.structure(state)
    n_state = state_def.num_leaves
    call = jax.jit(exported.call, donate_argnums=tuple(range(n_state))).lower(*leaves).compile()

    def run(state, data):
        out = call(*jax.tree.leaves((state, data)))
        return jax.tree.unflatten(state_def, out[:n_state]), _unflatten_dict(meta["metric_paths"], out[n_state:])

    return run
