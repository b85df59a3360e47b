"""The benchmark behind ``make bench``: speed of the optimisation loop, per resolution.

For each resolution it times the project's stylizer and, in the same run, taking turns with it:
the same stylizer forced to fp32 (the path ``--precision auto`` took on every CPU before bf16 was
detected; only when the default path is not fp32 already), and a plain reference loop (the
straightforward Gatys implementation: fp32, NCHW, the network's weights not frozen so their
gradients are computed too, the loss read back with ``.item()`` at every evaluation). Every figure
therefore comes with ratios that hold on a noisy, shared machine, where absolute times do not.
FLOPs are counted analytically from the conv layers that actually run.

Run it as ``python -m bench`` (``--help`` for options). Other modes:
``--compare-pastiche`` (our CLI against the ``pastiche`` CLI) and ``--schedule-study`` (which
multi-scale schedule and iteration count reach the quality of a plain long run); both live in
``bench/quality.py``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from bench.common import (
    CONTENT_CANDIDATES,
    STYLE_CANDIDATES,
    VIDEO_CANDIDATES,
    bench_parser,
    describe_device,
    first_existing,
    run_main,
)
from pipeline.config import CONTENT_LAYER, STYLE_LAYERS, EngineConfig, StyleConfig
from pipeline.engine.features import VGGFeatures, build_features
from pipeline.engine.losses import content_loss, gram, style_loss, tv_loss
from pipeline.engine.optimize import Stylizer
from pipeline.media.images import load_rgb, resize

# (height, width) of each named resolution.
RESOLUTIONS = {
    "64": (64, 64),
    "128": (128, 128),
    "256": (256, 256),
    "512": (512, 512),
    "720p": (720, 1280),
    "1080p": (1080, 1920),
    "4k": (2160, 3840),
}
GPU_SIZES = ("256", "512", "720p", "1080p")
CPU_SIZES = ("256",)  # a CPU takes seconds per evaluation at 512 px and more



# ----------------------------------------------------------------------------- FLOP counting


def conv_shapes(features: VGGFeatures, height: int, width: int) -> list[tuple[str, int, int, int, int]]:
    """``(name, c_in, c_out, h, w)`` of every conv the truncated network runs on an ``height x width`` input."""
    shapes = []
    h, w = height, width
    for name, module in features.stack.named_children():
        if isinstance(module, nn.Conv2d):
            shapes.append((name, module.in_channels, module.out_channels, h, w))
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            h, w = h // 2, w // 2
    return shapes


def iteration_flops(features: VGGFeatures, height: int, width: int, style_layers=STYLE_LAYERS) -> dict[str, int]:
    """Floating-point operations of one evaluation (forward + backward to the input), counted analytically.

    A 3x3 conv costs ``2 * c_in * c_out * 9 * h * w`` forward and about the same again for the
    gradient to its input (no weight gradients). A Gram matrix ``C x C`` over ``h*w`` positions costs
    ``2 * C^2 * h * w`` forward and as much backward (one product, ``(S + S^T) F``: losses.gram).
    Elementwise work (ReLU, pooling, losses) is left out: it is memory-bound and small next to these.
    The total agrees with torch's FlopCounterMode.
    """
    shapes = conv_shapes(features, height, width)
    forward = sum(2 * cin * cout * 9 * h * w for _, cin, cout, h, w in shapes)
    out_shape = {name.replace("conv", "relu"): (cout, h, w) for name, _, cout, h, w in shapes}
    grams = sum(2 * 2 * c * c * h * w for c, h, w in (out_shape[n] for n in style_layers if n in out_shape))
    return {"forward": forward, "backward": forward, "gram": grams, "total": 2 * forward + grams}


# ----------------------------------------------------------------------------- the two loops


class ReferenceLoop:
    """The plain Gatys loop, as most implementations write it: the yardstick for every speed-up.

    Same truncated network and losses as the stylizer, but fp32 and NCHW, no autocast, the weights'
    gradients computed (nobody froze them), the loss read back to the host at every evaluation.
    """

    def __init__(self, features: VGGFeatures, style: torch.Tensor, config: StyleConfig, device: torch.device):
        self.net = copy.deepcopy(features).float().to(device)
        self.net.requires_grad_(True)
        self.config, self.device = config, device
        self.style = style

    def run(self, content: torch.Tensor, iterations: int, on_progress: Callable[[int], None]) -> float:
        cfg = self.config
        content = content.to(self.device)
        with torch.no_grad():
            style_feats = self.net(resize(self.style, content.shape[-2:]).to(self.device))
            targets = [gram(style_feats[n]) for n in STYLE_LAYERS]
            content_target = self.net(content)[CONTENT_LAYER]
        x = content.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([x], lr=1.0, max_iter=iterations, max_eval=iterations,
                                      tolerance_grad=0.0, tolerance_change=0.0, history_size=50)
        last = [0.0]
        count = [0]

        def closure():
            optimizer.zero_grad()
            self.net.zero_grad()
            feats = self.net(x)
            loss = (cfg.content_weight * content_loss(feats[CONTENT_LAYER], content_target)
                    + cfg.style_weight * style_loss([gram(feats[n]) for n in STYLE_LAYERS], targets,
                                                    cfg.style_layer_weights)
                    + cfg.tv_weight * tv_loss(x)).sum()
            loss.backward()
            last[0] = loss.item()
            count[0] += 1
            on_progress(count[0])
            return loss

        optimizer.step(closure)
        return last[0]


class ConvReference:
    """The machine's own yardstick: the network's 3x3 convolutions alone, at the same shapes, forward and
    backward to their inputs, in the stylizer's dtype and layout (no ReLU, pooling, Gram matrices, losses
    or optimiser). What an evaluation achieves against it is the share of the convolutions' own speed
    that the rest of an evaluation leaves."""

    def __init__(self, features: VGGFeatures, height: int, width: int, batch: int = 1):
        gen = torch.Generator().manual_seed(0)
        fmt = torch.channels_last if features.channels_last else torch.contiguous_format
        self.layers = []
        for name, cin, cout, h, w in conv_shapes(features, height, width):
            conv = dict(features.stack.named_children())[name]
            x = torch.randn((batch, cin, h, w), generator=gen).to(features.device, features.dtype)
            x = x.contiguous(memory_format=fmt).requires_grad_(True)
            grad = torch.randn((batch, cout, h, w), generator=gen).to(features.device, features.dtype)
            self.layers.append((conv, x, grad.contiguous(memory_format=fmt)))
        self.flops = sum(2 * 2 * cin * cout * 9 * h * w * batch for _, cin, cout, h, w in
                         conv_shapes(features, height, width))

    def run(self, iterations: int, on_progress: Callable[..., None]) -> None:
        for _ in range(iterations):
            outputs = [(conv(x), grad) for conv, x, grad in self.layers]
            for out, grad in reversed(outputs):
                out.backward(grad)
            for _, x, _ in self.layers:
                x.grad = None
            on_progress()


class Clock:
    """Timestamps of evaluations: CUDA events on a GPU (no host sync inside the loop), else perf_counter."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self, *_args) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def ms_per_step(self) -> float:
        """Milliseconds per evaluation, from the first mark to the last (setup excluded)."""
        if len(self.marks) < 2:
            raise ValueError("need at least two evaluations to time one")
        if self.cuda:
            torch.cuda.synchronize()
            elapsed = self.marks[0].elapsed_time(self.marks[-1])
        else:
            elapsed = 1000.0 * (self.marks[-1] - self.marks[0])
        return elapsed / (len(self.marks) - 1)


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: writing 5 resets the process's peak resident size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by tensors, or on CPU the process's peak resident size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class LoopTiming:
    ms_per_iteration: float
    repeats_ms: list[float]
    peak_memory_mb: float | None
    tflops: float = 0.0


def time_loops(loops: dict[str, Callable[[Clock], None]], device: torch.device, repeats: int) -> dict[str, LoopTiming]:
    """Median over ``repeats`` runs of each loop's time per evaluation, and its peak memory.

    The loops take turns, in alternating order, so that a neighbour's load on a shared machine
    falls on all of them alike and their ratio stays meaningful.
    """
    samples: dict[str, list[float]] = {name: [] for name in loops}
    peaks: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(repeats):
        order = list(loops) if repeat % 2 == 0 else list(reversed(loops))
        for name in order:
            clock = Clock(device)
            peak_memory_reset(device)
            loops[name](clock)
            samples[name].append(clock.ms_per_step())
            peak = peak_memory_mb(device)
            if peak is not None:
                peaks[name].append(peak)
    return {name: LoopTiming(statistics.median(samples[name]), samples[name], max(peaks[name], default=None))
            for name in loops}


@dataclass
class SizeResult:
    name: str
    height: int
    width: int
    gflop_per_iteration: float
    fast: LoopTiming | None = None
    reference: LoopTiming | None = None
    speedup: float | None = None
    fp32: LoopTiming | None = None  # the stylizer forced to fp32, when the default path is not fp32
    vs_fp32: float | None = None  # default path's time / fp32 path's time (below 1 = faster)
    conv: LoopTiming | None = None  # the convolutions alone (ConvReference), its tflops their own
    vs_conv: float | None = None  # default path's TFLOP/s / the convolutions' own (1 = no overhead at all)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def bench_size(name: str, stylizer: Stylizer, reference: ReferenceLoop | None, content: torch.Tensor,
               iterations: int, repeats: int, warmup: int, fp32: Stylizer | None = None,
               convs: bool = True) -> SizeResult:
    height, width = RESOLUTIONS[name]
    flops = iteration_flops(stylizer.features, height, width)
    conv_reference = ConvReference(stylizer.features, height, width) if convs else None
    result = SizeResult(name, height, width, flops["total"] / 1e9)
    image = resize(content, (height, width))
    device = stylizer.device

    def fast(clock: Clock) -> None:
        stylizer.stylize(image, iterations=iterations, scales=1, on_progress=clock.mark)

    def plain(clock: Clock) -> None:
        reference.run(image, iterations, clock.mark)

    def full_precision(clock: Clock) -> None:
        fp32.stylize(image, iterations=iterations, scales=1, on_progress=clock.mark)

    def convolutions(clock: Clock) -> None:
        clock.mark()
        conv_reference.run(iterations, clock.mark)

    try:
        # Warm-up: cuDNN autotuning, allocator growth, the style Gram matrices for this size.
        stylizer.stylize(image, iterations=warmup, scales=1)
        loops = {"fast": fast}
        if fp32 is not None:
            fp32.stylize(image, iterations=warmup, scales=1)
            loops["fp32"] = full_precision
        if reference is not None:
            reference.run(image, warmup, lambda _n: None)
            loops["reference"] = plain
        if conv_reference is not None:
            conv_reference.run(warmup, lambda: None)
            loops["conv"] = convolutions
        timings = time_loops(loops, device, repeats)
        result.fast, result.reference, result.fp32 = timings["fast"], timings.get("reference"), timings.get("fp32")
        result.conv = timings.get("conv")
    except torch.OutOfMemoryError as exc:
        result.error = f"out of memory: {str(exc).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001 - the benchmark reports a failed size and goes on
        from pipeline.errors import StylizeError

        if not isinstance(exc, StylizeError):
            raise
        result.error = str(exc)
    for timing in (result.fast, result.reference, result.fp32):
        if timing is not None:
            timing.tflops = flops["total"] / (timing.ms_per_iteration / 1000) / 1e12
    if result.conv is not None:
        result.conv.tflops = conv_reference.flops / (result.conv.ms_per_iteration / 1000) / 1e12
        if result.fast is not None:
            result.vs_conv = result.fast.tflops / result.conv.tflops
    if result.fast and result.reference:
        result.speedup = result.reference.ms_per_iteration / result.fast.ms_per_iteration
    if result.fast and result.fp32:
        result.vs_fp32 = result.fast.ms_per_iteration / result.fp32.ms_per_iteration
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


# ----------------------------------------------------------------------------- video


def video_fps(clip: Path | None, frames: int, device: str, style: Path) -> dict:
    """End-to-end frames per second of the video job with its default settings, when it exists."""
    try:
        from pipeline.config import VIDEO_STYLE, JobConfig, StyleImage, VideoConfig, VideoJobConfig
        from pipeline.jobs.video import stylize_video
    except ImportError as exc:
        return {"skipped": f"the video job is not available ({exc})"}
    if clip is None or not clip.is_file():
        return {"skipped": "no video clip found (pass --video-clip)"}
    import tempfile

    job = JobConfig(styles=(StyleImage(style),), style=VIDEO_STYLE, engine=EngineConfig(device=device))
    with tempfile.TemporaryDirectory() as tmp:
        summary = stylize_video(clip, Path(tmp) / "bench.mp4", job,
                                VideoJobConfig(video=VideoConfig(max_frames=frames)), overwrite=True)
    return {"clip": str(clip), "frames": summary.stylized_frames, "seconds": summary.seconds,
            "fps": summary.stylized_frames / summary.seconds, "work_size": [summary.work_width, summary.work_height],
            "settings": {"video": asdict(VideoConfig(max_frames=frames)), "style": asdict(VIDEO_STYLE)}}


# ----------------------------------------------------------------------------- report


# Issue 13's target: the default path's evaluation at most this share of the fp32 path's.
FP32_TARGET = 0.6
# Issue 21's targets (CPU, 256 px): this many TFLOP/s, and this share of the convolutions' own TFLOP/s.
TFLOPS_TARGET, CONV_SHARE_TARGET = 1.0, 0.7


def _spread(timing: LoopTiming) -> str:
    return f"{min(timing.repeats_ms):.0f}-{max(timing.repeats_ms):.0f}"


def format_table(results: list[SizeResult], precision: str = "") -> str:
    head = (f"{'size':>7} {'GFLOP/it':>9} {'ms/it':>9} {'runs ms':>11} {'TFLOP/s':>8} {'conv TF/s':>9} "
            f"{'of conv':>7} {'peak MB':>8} {'ref ms/it':>10} {'speed-up':>8} {'fp32 ms/it':>10} {'vs fp32':>8}")
    lines = [head, "-" * len(head)]
    for r in results:
        if r.error:
            lines.append(f"{r.name:>7} {r.gflop_per_iteration:>9.1f}  {r.error}")
            continue
        f, ref = r.fast, r.reference
        mem = f"{f.peak_memory_mb:8.0f}" if f.peak_memory_mb is not None else f"{'-':>8}"
        conv_cols = (f"{r.conv.tflops:>9.3f} {r.vs_conv:>6.2f}x" if r.conv else f"{'-':>9} {'-':>7}")
        ref_cols = f"{ref.ms_per_iteration:>10.1f} {r.speedup:>7.2f}x" if ref else f"{'-':>10} {'-':>8}"
        fp32_cols = (f"{r.fp32.ms_per_iteration:>10.1f} {r.vs_fp32:>7.2f}x" if r.fp32 else f"{'-':>10} {'-':>8}")
        lines.append(f"{r.name:>7} {r.gflop_per_iteration:>9.1f} {f.ms_per_iteration:>9.1f} {_spread(f):>11} "
                     f"{f.tflops:>8.3f} {conv_cols} {mem} {ref_cols} {fp32_cols}")
    for r in results:
        if r.fast is None:
            continue
        if r.conv is not None:
            met = r.fast.tflops >= TFLOPS_TARGET and r.vs_conv >= CONV_SHARE_TARGET
            lines.append(f"{r.name}: one evaluation ({precision}) at {r.fast.tflops:.2f} TFLOP/s (median of "
                         f"{len(r.fast.repeats_ms)} runs, {_spread(r.fast)} ms), {r.vs_conv:.2f}x the "
                         f"{r.conv.tflops:.2f} TFLOP/s of its convolutions alone (same run); targets at 256 px "
                         f"{TFLOPS_TARGET} TFLOP/s and {CONV_SHARE_TARGET}x: {'met' if met else 'NOT met'}")
        if r.vs_fp32 is not None:
            verdict = "met" if r.vs_fp32 <= FP32_TARGET else "NOT met"
            lines.append(f"{r.name}: default path ({precision}) takes {r.vs_fp32:.2f}x the time of the fp32 path per "
                         f"evaluation ({r.fast.ms_per_iteration:.0f} vs {r.fp32.ms_per_iteration:.0f} ms, "
                         f"alternating runs); target at most {FP32_TARGET}x: {verdict}")
    return "\n".join(lines)


def bench_images(size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The content and style images of the benchmark (real ones when present, else generated)."""
    content_path, style_path = first_existing(CONTENT_CANDIDATES), first_existing(STYLE_CANDIDATES)
    gen = torch.Generator().manual_seed(0)
    content = load_rgb(content_path) if content_path else torch.rand(1, 3, size, size, generator=gen)
    style = load_rgb(style_path) if style_path else torch.rand(1, 3, size, size, generator=gen)
    return content, style


def run_benchmark(args: argparse.Namespace, features: VGGFeatures | None = None) -> dict:
    engine = EngineConfig(device=args.device, precision=args.precision)
    features = features or build_features((*STYLE_LAYERS, CONTENT_LAYER), engine.weights)
    content, style = bench_images()
    stylizer = Stylizer([(style, 1.0)], StyleConfig(), engine, features=features)
    device = stylizer.device
    sizes = args.sizes or (GPU_SIZES if device.type == "cuda" else CPU_SIZES)
    iterations = args.iterations or (50 if device.type == "cuda" else 5)
    repeats = args.repeats or 5
    reference = None if args.no_reference else ReferenceLoop(features, style, StyleConfig(), device)
    fp32 = None
    if stylizer.dtype != torch.float32 and not args.no_fp32:
        # Its own copy of the network: the default path may change the shared one's memory layout.
        fp32 = Stylizer([(style, 1.0)], StyleConfig(), EngineConfig(device=args.device, precision="fp32"),
                        features=copy.deepcopy(features))
    results = [bench_size(name, stylizer, reference, content, iterations, repeats, args.warmup, fp32,
                          convs=not args.no_conv) for name in sizes]
    report = {
        "device": describe_device(device),
        "torch": torch.__version__,
        "precision": "bf16" if stylizer.dtype == torch.bfloat16 else "fp32",
        "precision_option": args.precision,
        "iterations_per_repeat": iterations,
        "repeats": repeats,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "sizes": [asdict(r) for r in results],
    }
    if args.video_frames:
        report["video"] = video_fps(args.video_clip or first_existing(VIDEO_CANDIDATES), args.video_frames,
                                    args.device, first_existing(STYLE_CANDIDATES))
    report["table"] = format_table(results, report["precision"])
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = bench_parser("python -m bench", __doc__, precision=True)
    p.add_argument("--sizes", nargs="+", choices=sorted(RESOLUTIONS), default=None,
                   help=f"resolutions (default: {' '.join(GPU_SIZES)} on GPU, {' '.join(CPU_SIZES)} on CPU)")
    p.add_argument("--iterations", type=int, default=None, help="evaluations per timed run (default: 50 GPU, 5 CPU)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per size, median and spread reported (default: 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed evaluations before timing (default: 3)")
    p.add_argument("--no-reference", action="store_true", help="skip the plain fp32 reference loop")
    p.add_argument("--no-fp32", action="store_true", help="skip timing the stylizer forced to fp32")
    p.add_argument("--no-conv", action="store_true", help="skip timing the convolutions alone (the TFLOP/s yardstick)")
    p.add_argument("--video-frames", type=int, default=None,
                   help="frames of end-to-end video to time (default: 30 on GPU, 0 = skip on CPU)")
    p.add_argument("--video-clip", type=Path, default=None, help="clip for the video figure")
    p.add_argument("--compare-pastiche", action="store_true",
                   help="time `stylize-images` (defaults) against `pastiche --num-steps 300` and judge both instead")
    p.add_argument("--content", type=Path, default=None,
                   help="--compare-pastiche: content image (default: ../shared/media/content/golden_gate.jpg)")
    p.add_argument("--style", type=Path, default=None,
                   help="--compare-pastiche: style image (default: ../shared/media/styles/shipwreck.jpg)")
    p.add_argument("--ours-iterations", type=int, default=None,
                   help="--compare-pastiche: iterations for stylize-images (default: its own default)")
    p.add_argument("--schedule-study", action="store_true",
                   help="measure which multi-scale schedule reaches the plain long run's losses instead")
    p.add_argument("--size", type=int, default=None, help="image long side for the two modes above")
    p.add_argument("--rounds", type=int, default=2, help="--compare-pastiche: alternating rounds (default: 2)")
    p.add_argument("--steps", type=int, nargs="+", default=None,
                   help="--compare-pastiche: pastiche's iterations (default 300); --schedule-study: budgets to try")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict:
    """The mode asked for: the speed table (default), --compare-pastiche or --schedule-study."""
    if args.compare_pastiche or args.schedule_study:
        from bench import quality as bench_quality

        return bench_quality.compare_pastiche(args) if args.compare_pastiche else bench_quality.schedule_study(args)
    if args.video_frames is None:
        args.video_frames = 30 if torch.cuda.is_available() and args.device != "cpu" else 0
    return run_benchmark(args)


def summary(report: dict) -> list[str]:
    lines = [f"Device: {report.get('device')}  (torch {torch.__version__})", report.get("table", "")]
    if "video" in report:
        video = report["video"]
        lines.append(f"video: {video['skipped']}" if "skipped" in video else
                     f"video: {video['frames']} frames of {video['clip']} in {video['seconds']:.1f} s "
                     f"= {video['fps']:.2f} fps")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kind = "pastiche" if args.compare_pastiche else "schedule" if args.schedule_study else "speed"

    def report_name(report: dict) -> str:
        return f"bench-{kind}-{'cuda' if 'NVIDIA' in str(report.get('device', '')) else 'cpu'}.json"

    return run_main(args, run, report_name, summary)


if __name__ == "__main__":
    sys.exit(main())
