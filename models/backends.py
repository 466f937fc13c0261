"""Which engine runs a network at inference, torch or ONNX Runtime, chosen once per run behind one callable.

:func:`prepare` takes a loaded network and returns a :class:`Runner`, called exactly as the
network's module is (``runner(x)``, ``runner(x, prior)``: tensors in, a tensor out, on the
network's device), so the tiler and every algorithm use it without knowing which engine it is.
The choice (``backend``):

- ``auto`` (the default): the faster of ONNX Runtime and torch, timed on a batch of the run's tile
  and batch size (at most :data:`TIMED_PIXELS`) the first time and remembered for later runs in the
  same situation (:mod:`.backend_choice`), when ONNX Runtime and ``onnx`` are installed and
  the ONNX copy of the network verifies; torch otherwise. Neither engine wins everywhere
  (benchmarks/inference.py: ONNX Runtime on the transposed-convolution generator and the fusion
  net, torch's inference form on the guided generators' narrow U-Nets), so the choice is measured
  on this machine for this network, not assumed. On a CUDA device ONNX Runtime takes part only
  with its CUDA execution provider (the ``onnxruntime-gpu`` package).
- ``torch``: torch, on the network's :func:`.networks.inference_form` (the same outputs, faster).
- ``onnxruntime``: ONNX Runtime (CUDA provider on a CUDA device when available, else the CPU).

The learned part of the network goes to ONNX Runtime: the whole network, or for a generator
that computes a prior in ``forward`` (a smooth fill, linear unmixing: data-dependent loops and
quantiles that the exporter cannot trace) its U-Net ``core``, the prior staying in torch. That
part is exported once (:mod:`.onnx_export`, cached per weights) and verified on every run
against torch on a probe batch of random inputs of the run's tile size: the largest difference
is logged, and beyond :data:`TOLERANCE` (relative to the outputs' magnitude) the ONNX copy is
refused. Whatever keeps ONNX Runtime from running the network (an operator the exporter cannot
handle, a file it cannot load, a failed verification) falls back to torch with a log line that
says why; :attr:`Runner.detail` says what runs, for the algorithm's log.

ONNX Runtime runs with as many intra-op threads as torch uses (torch's default: the physical
cores), and all graph optimisations. A runner pickles as the recipe it was made from (the network
and the engine chosen here), so a scaled-out run ships it to each worker, which prepares the same
engine there: every tile of a run goes through one engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import backend_choice
from .errors import DependencyError, InputError
from .onnx_export import cache_folder
from .runtime import install_hint, log, missing_packages

BACKENDS = ("auto", "torch", "onnxruntime")
TOLERANCE = 1e-3      # largest |ONNX - torch| on the probe, relative to max(1, largest |torch output|)
PROBE_BATCH = 2       # the export traces one tile, the probe checks that any batch size works
PROBE_SEED = 17
TIMED_RUNS = 3        # runs of each engine when ``auto`` measures which is faster (after a warm-up)
TIMED_PIXELS = 1 << 18  # at most this many pixels in the batch ``auto`` times: engines rank differently by batch
                        # (torch ran the fusion net at 2.7 MP/s on 2 tiles of 256 px and 1.8 on 4, measured)


@dataclass
class Runner:
    """A network ready to run: ``runner(*tensors)`` as the module is called; ``backend`` is ``torch``
    or ``onnxruntime``, ``detail`` one line for the log (engine, provider, threads, verification),
    ``part`` runs only the learned part (what :func:`faster` times), ``recipe`` the arguments of
    :func:`prepare` that made it."""

    forward: Callable
    backend: str
    detail: str
    part: Callable = None
    recipe: tuple = ()

    def __call__(self, *args):
        import torch

        with torch.inference_mode():
            return self.forward(*args)

    def __reduce__(self):
        return prepare, self.recipe


def check_backend(name: str) -> str:
    name = (name or "auto").strip().lower()
    if name not in BACKENDS:
        raise InputError(f"Unknown inference backend '{name}': use {', '.join(BACKENDS)}.")
    return name


def prepare(network, device=None, backend: str = "auto", tile: int = 64, batch: int = PROBE_BATCH,
            cache: str | None = None) -> Runner:
    """The :class:`Runner` of ``network`` (a loaded module in eval mode) on ``device`` for ``backend``.

    ``tile``: the height and width of the tiles the run will give it (the probe's size; for a
    network with a dense layer, its fixed input size); ``batch``: how many tiles the network is
    called with, as the engine calls it (what ``auto`` times: engines rank differently on small and
    large batches).
    ``cache``: the folder of exported files (default :func:`.onnx_export.cache_folder`).
    """
    import torch

    backend = check_backend(backend)
    device = torch.device(device) if device is not None else next(network.parameters()).device
    network.eval()
    runner = choose(network, device, backend, tile, batch, cache)
    runner.recipe = (network, str(device), runner.backend, tile, batch, cache)  # what was chosen, not "auto"
    log.info("Inference: %s", runner.detail)
    return runner


def choose(network, device, backend: str, tile: int, batch: int, cache: str | None) -> Runner:
    """The runner for ``backend``, falling back to torch where ONNX Runtime cannot run the network."""
    if backend == "torch":
        return torch_runner(network, "asked for")
    missing = missing_packages(("onnxruntime", "onnx"))  # the runtime, and the package torch's exporter writes with
    if missing:
        if backend == "onnxruntime":
            raise DependencyError(install_hint(missing))
        return torch_runner(network, f"{' and '.join(missing)} not installed")
    providers = ort_providers(device)
    if device.type == "cuda" and providers[0] != "CUDAExecutionProvider" and backend == "auto":
        return torch_runner(network, "this onnxruntime has no CUDA provider (onnxruntime-gpu)")
    folder = cache or cache_folder()
    key = backend_choice.situation_key(network, learned_part(network), device, tile, batch)
    record = backend_choice.remembered(folder, key) if backend == "auto" else None
    if record is not None and record["backend"] == "torch":
        return torch_runner(network, backend_choice.describe(record))
    probe = probe_batch(learned_part(network), PROBE_BATCH, tile, device)
    try:
        onnx = onnx_runner(network, device, providers, probe, cache)
    except Exception as exc:  # noqa: BLE001 - any failure of the exporter or of ONNX Runtime means: use torch
        log.warning("ONNX Runtime cannot run %s (%s: %s); running it with torch", type(network).__name__,
                    type(exc).__name__, exc)
        return torch_runner(network, f"ONNX Runtime refused it: {type(exc).__name__}: {str(exc)[:200]}")
    if backend == "onnxruntime":
        return onnx
    if record is not None:  # remembered as the faster, and verified again above
        onnx.detail = f"{onnx.detail[:-1]}; {backend_choice.describe(record)})"
        return onnx
    timed = whole_input(network, max(1, min(batch, TIMED_PIXELS // (tile * tile))), tile, device)
    chosen, speeds = faster(onnx, torch_runner(network, "auto"), timed)
    backend_choice.remember(folder, key, chosen.backend, speeds)
    return chosen


def probe_batch(part, batch: int, tile: int, device):
    """The same random batch every run: ``batch`` tiles of ``tile`` px with the part's input channels."""
    import torch

    gen = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randn(batch, input_channels(part), tile, tile, generator=gen).to(device)


def whole_input(network, batch: int, tile: int, device):
    """A random batch laid out as the whole network takes it (what ``auto`` times): for a generator
    with a prior, its bands (4 for a guided one), a 0/1 mask and, for a guided one, guide validity 1; for a
    residual generator its bands, its mask (when it starts from the fill) and radar with validity 1; else the
    learned part's input."""
    import torch

    from .networks import FillResidualGenerator, GuidedGenerator, ResidualGenerator

    if isinstance(network, ResidualGenerator):  # bands, [mask], [radar, radar validity]
        fill = network.start == "fill"
        bands, mask_at = network.bands, (network.bands if fill else None)
        channels = bands + fill + (network.radar + 1 if network.radar else 0)
        valid_at = channels - 1 if network.radar else None
    elif isinstance(network, GuidedGenerator):
        bands, mask_at, valid_at = 4, 4, 9
        channels = 2 * bands + 2 + network.radar
    elif isinstance(network, FillResidualGenerator):
        bands, mask_at, valid_at = network.bands, network.bands, None
        channels = input_channels(network.core) - network.bands
    else:
        return probe_batch(network, batch, tile, device)
    gen = torch.Generator().manual_seed(PROBE_SEED)
    x = torch.rand(batch, channels, tile, tile, generator=gen)
    if mask_at is not None:
        x[:, mask_at] = (x[:, mask_at] > 0.5).float()
    if valid_at is not None:
        x[:, valid_at] = 1.0
    return x.to(device)


def faster(onnx: Runner, fast_torch: Runner, batch) -> tuple:
    """``(runner, speeds)``: whichever runs the network as the engine calls it (for a generator: the prior in
    torch and the learned part in each engine) on ``batch`` in less time (best of :data:`TIMED_RUNS`), and
    each engine's megapixels per second, which the runner's detail gains."""
    mp = batch.shape[0] * batch.shape[-2] * batch.shape[-1] / 1e6
    speed = {r.backend: mp / best_seconds(r.forward, batch) for r in (onnx, fast_torch)}
    chosen, other = (onnx, fast_torch) if speed["onnxruntime"] >= speed["torch"] else (fast_torch, onnx)
    chosen.detail = (f"{chosen.detail[:-1]}; the faster on {batch.shape[0]} tiles: {speed[chosen.backend]:.2f} MP/s, "
                     f"{other.backend} {speed[other.backend]:.2f})")
    return chosen, speed


def best_seconds(fn: Callable, x) -> float:
    """The shortest of :data:`TIMED_RUNS` runs of ``fn(x)`` after one warm-up run."""
    import time

    import torch

    times = []
    with torch.inference_mode():
        for _ in range(TIMED_RUNS + 1):
            t0 = time.perf_counter()
            fn(x)
            if x.device.type == "cuda":
                torch.cuda.synchronize(x.device)
            times.append(time.perf_counter() - t0)
    return min(times[1:])


# --------------------------------------------------------------------------- torch


def torch_runner(network, why: str) -> Runner:
    """torch on the network's :func:`~.networks.inference_form`; ``why`` torch runs it, for the log."""
    import torch

    from .networks import inference_form

    fast = inference_form(network)
    fast_part = learned_part(fast)

    def forward(*args):
        return fast(*args).contiguous()

    detail = f"torch {torch.__version__.split('+')[0]} (inference form, threads {torch.get_num_threads()}; {why}"
    return Runner(forward, "torch", detail + ")", part=lambda x: fast_part(x).contiguous())


# --------------------------------------------------------------------------- ONNX Runtime


class OrtFailure(RuntimeError):
    """ONNX Runtime's copy of a network is unusable (differs from torch); the caller falls back to torch."""


def learned_part(network):
    """What ONNX Runtime runs: the generator's U-Net ``core`` when it has one, else the whole network."""
    from torch import nn

    core = getattr(network, "core", None)
    return core if isinstance(core, nn.Module) else network


def input_channels(module) -> int:
    from torch import nn

    return next(m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))).in_channels


def ort_providers(device) -> list:
    """Execution providers for ``device``: CUDA first on a CUDA device when this ONNX Runtime has it."""
    import onnxruntime

    gpu = device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    return (["CUDAExecutionProvider"] if gpu else []) + ["CPUExecutionProvider"]


def ort_session(path: str, device, providers: list):
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no notices on the console of QGIS
    # no busy-waiting threads after a run: torch (a generator's prior) and numpy (the tiler) work between
    # runs, and spinning ORT threads took their cores (a guided generator ran at half speed, measured)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    chosen = [("CUDAExecutionProvider", {"device_id": device.index or 0}) if p == "CUDAExecutionProvider" else p
              for p in providers]
    return onnxruntime.InferenceSession(path, options, providers=chosen)


def ort_forward(session, device) -> Callable:
    """Tensor in, tensor out, through the session (CPU tensors are shared with numpy, not copied)."""
    import numpy as np
    import torch

    from .onnx_export import INPUT

    def forward(x):
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(session.run(None, {INPUT: array})[0]).to(device)

    return forward


def onnx_runner(network, device, providers: list, probe, cache: str | None) -> Runner:
    """The network with its learned part in ONNX Runtime, exported if needed and verified on ``probe``."""
    import onnxruntime
    import torch

    from .onnx_export import exported_file

    part = learned_part(network)
    path, fresh = exported_file(part, probe[:1], cache)
    try:
        session = ort_session(path, device, providers)
    except Exception:  # noqa: BLE001 - a damaged cached file: export it again, once
        if fresh:
            raise
        path, _ = exported_file(part, probe[:1], cache, rebuild=True)
        session = ort_session(path, device, providers)
    run_part = ort_forward(session, device)
    difference = verify(part, run_part, probe)
    forward = run_part if part is network else (lambda *args: network(*args, core=run_part))
    provider = session.get_providers()[0]
    detail = (f"onnxruntime {onnxruntime.__version__} ({provider}, threads {torch.get_num_threads()}; "
              f"{'the U-Net core, the prior in torch; ' if part is not network else ''}"
              f"max |difference| to torch {difference:.1e} on a probe batch")
    log.info("ONNX file of %s: %s%s", type(part).__name__, path, " (exported now)" if fresh else "")
    return Runner(forward, "onnxruntime", detail + ")", part=run_part)


def verify(part, run_part: Callable, probe) -> float:
    """Largest |ONNX Runtime - torch| on ``probe``; :class:`OrtFailure` beyond :data:`TOLERANCE`."""
    import torch

    with torch.inference_mode():
        want, got = part(probe), run_part(probe)
    if tuple(got.shape) != tuple(want.shape):
        raise OrtFailure(f"its output has shape {tuple(got.shape)} where torch gives {tuple(want.shape)}")
    difference = float((got - want).abs().max())
    scale = max(1.0, float(want.abs().max()))
    if not difference <= TOLERANCE * scale:  # also catches NaN
        raise OrtFailure(f"its output differs from torch's by up to {difference:.3g} on a probe batch "
                         f"(tolerance {TOLERANCE * scale:.3g})")
    return difference
