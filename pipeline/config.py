"""Frozen configuration objects.

Every default of the tool is defined here, once. The CLI reads these defaults for its options and
builds the objects once per job; worker code only ever receives them, so a worker process can
rebuild a stylizer from a plain config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
CONTENT_LAYER = "relu4_2"

OPTIMIZERS = ("lbfgs", "adam")
WEIGHT_SOURCES = ("original", "torchvision")  # or a path to a local state-dict file
PRECISIONS = ("auto", "fp32", "bf16")
POOLINGS = ("max", "avg")


@dataclass(frozen=True)
class StyleImage:
    """One style image and its share of the blend (weights are normalised to sum to 1)."""

    path: Path
    weight: float = 1.0


@dataclass(frozen=True)
class StyleConfig:
    """How one image is stylized: the loss, the optimiser and the resolution schedule.

    ``iterations`` counts forward+backward evaluations of the network over all scales, so numbers
    compare fairly between L-BFGS (which may evaluate more than once per step) and Adam.
    """

    size: int = 512  # long side of the stylized image, in pixels
    iterations: int = 300
    content_weight: float = 1.0
    style_weight: float = 6.0
    tv_weight: float = 5.0
    # relu1_1..relu5_1. relu5_1 encodes whole objects, and from the photo its relative Gram error pulls
    # 5-26x harder than relu4_1's: at weight 1 it painted the painting's faces into the photo (issue
    # 18). At 0.02 its pull is a fraction of relu4_1's (docs/design.md, how the defaults were chosen).
    style_layer_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 0.02)
    optimizer: str = "lbfgs"
    learning_rate: float = 0.02  # Adam only; pixels are in [0, 1]
    init: str = "content"  # "content", "noise", or a path to an image file
    seed: int = 0
    scales: int = 2  # coarse-to-fine levels, each twice the size of the one before
    style_scale: float = 1.0  # style image's long side relative to the output's
    preserve_colors: bool = False
    pooling: str = "max"

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.size < 16:
            raise ConfigError(f"--size must be at least 16 pixels (got {self.size})")
        if self.iterations < 1:
            raise ConfigError(f"--iterations must be at least 1 (got {self.iterations})")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"--optimizer must be one of {', '.join(OPTIMIZERS)} (got {self.optimizer!r})")
        if self.pooling not in POOLINGS:
            raise ConfigError(f"--pooling must be one of {', '.join(POOLINGS)} (got {self.pooling!r})")
        if len(self.style_layer_weights) != len(STYLE_LAYERS):
            raise ConfigError(f"style_layer_weights needs {len(STYLE_LAYERS)} values")
        if self.scales < 1:
            raise ConfigError(f"--scales must be at least 1 (got {self.scales})")
        if self.style_scale <= 0:
            raise ConfigError(f"--style-scale must be positive (got {self.style_scale})")
        for name in ("content_weight", "style_weight", "tv_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must not be negative")

    def replace(self, **changes) -> StyleConfig:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class EngineConfig:
    """Where and how the network runs: device, weights, numeric precision."""

    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    weights: str = "original"  # "original", "torchvision", or a path to a state-dict file
    # "auto" = bf16 convolutions on CUDA and on CPUs that compute bf16 natively (AVX512-BF16 or AMX
    # on x86, BF16 on Arm: pipeline/engine/device.py), fp32 elsewhere. Gram matrices, losses and the
    # optimiser always stay fp32. docs/performance.md has the measurements.
    precision: str = "auto"

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")


TEMPORAL_INITS = ("warped", "previous", "frame")
TEMPORAL_CARRY = ("offset", "result")
FLOW_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV DIS presets, fastest first


@dataclass(frozen=True)
class TemporalConfig:
    """How consecutive video frames are tied together (Ruder et al.), see pipeline/jobs/temporal.py.

    ``init``: "warped" starts each frame from the previous stylized frame moved by optical flow
    (plus the temporal loss), "previous" from the previous stylized frame as it is, "frame" from the
    frame's own content (every frame independent). ``scene_cut``: a frame whose flow explains fewer
    than this share of its pixels starts afresh from its own content.
    """

    init: str = "warped"
    weight: float = 50.0  # --temporal-weight: the temporal loss's weight (content is 1, style 6)
    scene_cut: float = 0.25
    flow_preset: str = "medium"
    # --long-term K: also hold each frame to the stylized frame K frames back, where the previous
    # frame cannot vouch for a pixel (it was hidden there but visible K frames ago). 0 = off.
    long_term: int = 0
    # --carry: what moves along the flow to start the next frame where the flow cannot vouch for a
    # pixel: "offset" (the result's difference from its own frame, added to the next frame: new light
    # and newly visible things come from the frame) or "result" (the previous result itself
    # everywhere, Ruder et al.). Trusted pixels always start from the moved result. docs/video-drift.md.
    carry: str = "offset"
    # --content-blend: share of what is carried that each frame lets go of (offset: the offset shrinks
    # by it; result: that share of the frame's content is mixed in), so that a long chain keeps its
    # content (pipeline/jobs/temporal.py start_image, docs/video-drift.md). 0 = off.
    content_blend: float = 0.1

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.init not in TEMPORAL_INITS:
            raise ConfigError(f"--init must be one of {', '.join(TEMPORAL_INITS)} (got {self.init!r})")
        if self.weight < 0:
            raise ConfigError(f"--temporal-weight must not be negative (got {self.weight})")
        if not 0 <= self.scene_cut <= 1:
            raise ConfigError(f"--scene-cut must be between 0 and 1 (got {self.scene_cut})")
        if self.long_term < 0 or self.long_term == 1:
            raise ConfigError(f"--long-term must be 0 (off) or at least 2 frames (got {self.long_term})")
        if self.carry not in TEMPORAL_CARRY:
            raise ConfigError(f"--carry must be one of {', '.join(TEMPORAL_CARRY)} (got {self.carry!r})")
        if not 0 <= self.content_blend < 1:
            raise ConfigError(f"--content-blend must be at least 0 and below 1 (got {self.content_blend})")
        if self.flow_preset not in FLOW_PRESETS:
            raise ConfigError(f"--flow-preset must be one of {', '.join(FLOW_PRESETS)} (got {self.flow_preset!r})")


@dataclass(frozen=True)
class JobConfig:
    """Everything that determines a job's result: used to detect changed options on resume."""

    styles: tuple[StyleImage, ...]
    style: StyleConfig = field(default_factory=StyleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)


VIDEO_INITS = ("warped", "previous", "frame")  # "warped": pipeline/jobs/temporal.py, tuned by TemporalConfig


@dataclass(frozen=True)
class VideoConfig:
    """What a video job stylizes: working size, iterations per frame, initialisation, frame range.

    The first frame starts from its content with the multi-scale schedule and ``first_iterations``;
    later frames start from ``init`` with ``iterations`` (single scale when they start from an
    already stylized frame: the coarse levels would only blur it again).
    """

    size: int = 384  # long side frames are stylized at (never more than the input's)
    first_iterations: int = 300
    iterations: int = 60
    init: str = "warped"
    start: float = 0.0  # seconds into the input
    duration: float | None = None  # seconds, None = to the end
    max_frames: int | None = None
    fps: float = 25.0  # frame rate of a folder of numbered frames given as input

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.size < 16:
            raise ConfigError(f"--size must be at least 16 pixels (got {self.size})")
        if self.fps <= 0:
            raise ConfigError(f"--fps must be positive (got {self.fps})")
        if self.first_iterations < 1 or self.iterations < 1:
            raise ConfigError("--first-iterations and --iterations must be at least 1")
        if self.start < 0:
            raise ConfigError(f"--start must not be negative (got {self.start})")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be positive (got {self.duration})")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"--max-frames must be at least 1 (got {self.max_frames})")


@dataclass(frozen=True)
class EncodeConfig:
    """How the stylized frames are encoded; the container comes from the output's extension."""

    codec: str = "libx264"
    crf: int | None = None  # None = the codec's entry in pipeline.media.video.CODEC_DEFAULTS
    preset: str | None = "medium"  # x264/x265 speed preset; ignored by codecs without presets
    pix_fmt: str | None = None  # None = yuv420p for lossy codecs (plays everywhere), RGB for ffv1
    output_size: int | None = None  # long side of the output video; None = the input's size

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.crf is not None and not 0 <= self.crf <= 63:
            raise ConfigError(f"--crf must be between 0 and 63 (got {self.crf})")
        if self.output_size is not None and self.output_size < 16:
            raise ConfigError(f"--output-size must be at least 16 pixels (got {self.output_size})")


OUTPUT_FORMATS = ("same", "jpg", "png", "webp", "tiff", "bmp")


@dataclass(frozen=True)
class FolderConfig:
    """How a photo folder is walked and written; the stylization itself is in ``JobConfig``."""

    recursive: bool = True
    include: tuple[str, ...] = ()  # glob patterns on the relative path or the file name; empty = all images
    exclude: tuple[str, ...] = ()
    format: str = "same"  # output format: "same" as the input, or one of OUTPUT_FORMATS
    quality: int = 95  # JPEG / WebP quality
    batch_size: int | str = "auto"  # images of equal working size stylized together; "auto" picks per device
    overwrite: bool = False  # redo every output (and drop outputs made with other options)
    read_ahead: int = 4  # decoded images waiting for the stylizer (bounds memory)

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.format not in OUTPUT_FORMATS:
            raise ConfigError(f"--format must be one of {', '.join(OUTPUT_FORMATS)} (got {self.format!r})")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"--quality must be between 1 and 100 (got {self.quality})")
        if self.batch_size != "auto" and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ConfigError(f"--batch-size must be 'auto' or a positive whole number (got {self.batch_size!r})")
        if self.read_ahead < 1:
            raise ConfigError(f"read_ahead must be at least 1 (got {self.read_ahead})")


@dataclass(frozen=True)
class PreviewConfig:
    """A preview sheet (``--preview``): a few small, quick tiles over a grid of settings.

    Empty ``style_weights`` / ``style_scales`` mean "around the current value" (see
    ``pipeline.jobs.preview.settings_grid``). The defaults keep a sheet at about 9 tiles of
    ``size`` px, about a minute on a 2-core CPU (docs/preview.md has the measurements).
    """

    size: int = 128  # long side of each tile, in pixels
    iterations: int = 60  # network evaluations per tile (single scale at this size)
    samples: int = 3  # images of a folder / frames of a clip (a single image file is its own sample)
    style_weights: tuple[float, ...] = ()  # the sheet's --style-weight values; () = around the current one
    style_scales: tuple[float, ...] = ()  # the sheet's --style-scale values; () = around the current one

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.size < 32:
            raise ConfigError(f"--preview-size must be at least 32 pixels (got {self.size})")
        if self.iterations < 1:
            raise ConfigError(f"--preview-iterations must be at least 1 (got {self.iterations})")
        if self.samples < 1:
            raise ConfigError(f"--preview-samples must be at least 1 (got {self.samples})")
        if any(w < 0 for w in self.style_weights):
            raise ConfigError("--preview-style-weights must not be negative")
        if any(s <= 0 for s in self.style_scales):
            raise ConfigError("--preview-style-scales must be positive")


@dataclass(frozen=True)
class ScaleConfig:
    """Spreading a folder job over Ray workers (``--workers`` / ``--ray-address``); see docs/scale-out.md.

    A job without a ScaleConfig runs in one process and never imports Ray.
    """

    workers: int | str = "auto"  # a number, or "auto": one per GPU, else one per CPU_CORES_PER_WORKER cores
    address: str | None = None  # None: start a local Ray; "auto" or "HOST:PORT": join a running cluster
    threads: int | None = None  # torch threads per CPU worker; None = the cluster's cores / workers
    in_flight: int = 2  # images queued per worker: one running, one ready, so a worker never waits
    max_restarts: int = 3  # times Ray restarts a dead worker (a killed process, a lost node)
    max_attempts: int = 3  # an image whose worker dies this often is listed as failed, not retried forever
    # Videos: a shot longer than max_chunk frames is cut into chunks (10 s at 24 fps: long enough that
    # the chain settles, short enough to spread a film over many GPUs); each chunk inside a shot also
    # renders `overlap` frames of the chunk before it, cross-faded there so that no seam shows.
    max_chunk: int = 240
    overlap: int = 8

    def __post_init__(self) -> None:
        from pipeline.errors import ConfigError

        if self.workers != "auto" and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"--workers must be 'auto' or a positive whole number (got {self.workers!r})")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads per worker must be at least 1 (got {self.threads})")
        if self.in_flight < 1 or self.max_attempts < 1 or self.max_restarts < 0:
            raise ConfigError("in_flight and max_attempts must be at least 1, max_restarts at least 0")
        if self.max_chunk < 1 or not 0 <= self.overlap < self.max_chunk:
            raise ConfigError(f"--max-chunk must be at least 1 and --overlap between 0 and --max-chunk - 1 "
                              f"(got {self.max_chunk}, {self.overlap})")
