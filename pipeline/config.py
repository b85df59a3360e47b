"""Frozen configuration objects: every setting of the tool is declared here, once.

Each field is declared with ``option(default, help, ...)``: its default, one line of help, and how it
is checked. That one declaration is all a setting needs. The CLI builds its options from these fields
(the help is `--help`'s, the default the option's; cli/settings.py), docs/options.md is generated from
the CLI, and a value that fails its check raises a ConfigError that names the setting (the CLI shows
its flag instead). To add a setting, add a field here; a setting that is no command-line option says
``cli=False``.

The CLI builds the objects once per job; worker code only ever receives them, so a worker process
can rebuild a stylizer from a plain config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.errors import ConfigError, setting

# Departure from Gatys et al., who also match conv5_1: relu5_1 is where VGG19 encodes whole objects, and
# matching it in any form paints the painting's objects into the photo (issue 25, docs/design.md): its
# Gram matrix at a fiftieth of the other layers' weight put the Mona Lisa's face into the Golden Gate,
# at the finest level alone her eye into its sky, and its channel means a face into the tower. Without
# it the network stops at the content layer, relu4_2: a fifth less arithmetic per evaluation.
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
CONTENT_LAYER = "relu4_2"

OPTIMIZERS = ("lbfgs", "adam")
PRECISIONS = ("auto", "fp32", "bf16")
POOLINGS = ("max", "avg")
FULL_SIZE = "full"  # --size full: every photo or frame at its own size (pipeline/jobs/common.py)

# A check takes a field's value (never None: None always means "not set") and says what is wrong
# with it, or returns None. Its message follows the setting's name: "must be at least 16 (got 8)".
Check = Callable[[Any], str | None]


def option(default: Any, help: str, *, flag: str | None = None, aliases: tuple[str, ...] = (),
           check: Check | None = None, cli: bool = True) -> Any:
    """A configuration field with what a command line needs to offer it.

    ``help``: one line for `--help` and docs/options.md. ``flag``: the option's name when it is not
    ``--field-name``; ``aliases``: more names for it. ``check``: see ``Check``. ``cli=False``: a
    setting for library callers only (no command-line option).
    """
    return field(default=default, metadata={"help": help, "flag": flag, "aliases": aliases, "check": check,
                                            "cli": cli})


def at_least(low: float, unit: str = "") -> Check:
    return lambda v: None if v >= low else f"must be at least {low}{unit} (got {v})"


def positive(v) -> str | None:
    return None if v > 0 else f"must be positive (got {v})"


def not_negative(v) -> str | None:
    return None if v >= 0 else f"must not be negative (got {v})"


def between(low: float, high: float) -> Check:
    return lambda v: None if low <= v <= high else f"must be between {low} and {high} (got {v})"


@dataclass(frozen=True)
class WordCheck:
    """A check that also accepts some words as they are: the CLI's parser takes ``words`` ("auto")
    as written and reads anything else as a number."""

    words: tuple[str, ...]
    check: Check

    def __call__(self, value: Any) -> str | None:
        return self.check(value)


def one_of(choices: tuple[str, ...]) -> Check:
    return WordCheck(choices, lambda v: None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})")


def count_or(*words: str, low: int = 1) -> Check:
    """A whole number of at least ``low``, or one of ``words`` ("auto")."""
    number = "a positive whole number" if low == 1 else f"a whole number of at least {low}"

    def check(v: Any) -> str | None:
        if v in words or (isinstance(v, int) and not isinstance(v, bool) and v >= low):
            return None
        return f"must be {' or '.join(repr(w) for w in words)} or {number} (got {v!r})"

    return WordCheck(words, check)


def each(check: Check) -> Check:
    return lambda values: next((problem for v in values if (problem := check(v))), None)


_C = TypeVar("_C", bound="_Checked")


class _Checked:
    """Runs every field's check when the object is made: a ConfigError names the first bad setting."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]  # every subclass is a dataclass
            value = getattr(self, f.name)
            if value is not None and (check := f.metadata.get("check")) and (problem := check(value)):
                raise ConfigError(f"{setting(f'{type(self).__name__}.{f.name}')} {problem}")

    def replace(self: _C, **changes: Any) -> _C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]  # every subclass is a dataclass


@dataclass(frozen=True)
class StyleImage:
    """One style image and its share of the blend (weights are normalised to sum to 1)."""

    path: Path
    weight: float = 1.0


@dataclass(frozen=True)
class StyleConfig(_Checked):
    """How one image is stylized: the loss, the optimiser and the resolution schedule.

    ``iterations`` counts forward+backward evaluations of the network over all scales, so numbers
    compare fairly between L-BFGS (which may evaluate more than once per step) and Adam. In a video
    job, ``size`` is the frames' working size and ``iterations`` the first frame's budget (and a new
    shot's): ``VideoConfig.iterations`` is what each later frame gets.
    """

    size: int | str = option(512, f"Long side of the output in pixels, or {FULL_SIZE} (each input at its own "
                             "size; large images are evaluated in tiles, see --tile).",
                             check=count_or(FULL_SIZE, low=16))
    iterations: int = option(300, "Network evaluations per image, over all scales.", check=at_least(1))
    # 1.3, not 1: three levels with 44 evaluations at 512 px left relu4_2 4-7 % further from the photo than
    # two levels with 100 did, and 1.2 still 2-3 % on The Scream's pairs (issue 25, docs/design.md).
    content_weight: float = option(1.3, "Weight of the content loss (alpha).", check=not_negative)
    style_weight: float = option(6.0, "Weight of the style loss (beta); higher = stronger style.",
                                 check=not_negative)
    tv_weight: float = option(5.0, "Total-variation weight: smooths high-frequency noise.", check=not_negative)
    style_layer_weights: tuple[float, ...] = option(
        (1.0, 1.0, 1.0, 1.0), "Weights of the style layers relu1_1 ... relu4_1.", cli=False,
        check=lambda v: None if len(v) == len(STYLE_LAYERS) else f"needs {len(STYLE_LAYERS)} values (got {len(v)})")
    optimizer: str = option("lbfgs", "lbfgs or adam.", check=one_of(OPTIMIZERS))
    learning_rate: float = option(0.02, "Adam's step size (pixels in [0, 1]).", check=positive)
    init: str = option("content", "Starting image: content, noise, or an image file.")
    seed: int = option(0, "Seed for the random initialisation.")
    # Coarse-to-fine levels, each twice the size of the one before: three put 300 evaluations at 128, 256
    # and 512 px as 171/85/44, a third of two levels' cost (200/100) for the same picture (docs/design.md).
    scales: int = option(3, "Coarse-to-fine levels up to 512 px (1 = the output's size only).", check=at_least(1))
    # The coarse levels form the picture; the finer ones up to a large output's size only refine it,
    # so they get far fewer evaluations (docs/performance.md, the refine study).
    refine_iterations: int = option(60, "Evaluations at the first level above 512 px; each finer one gets half "
                                    "(at least 10).", check=at_least(1))
    style_scale: float = option(1.0, "Style image's size relative to the output's.", check=positive)
    preserve_colors: bool = option(False, "Keep the content's colours, take the style's texture.")
    pooling: str = option("max", "VGG pooling: max or avg.", check=one_of(POOLINGS))


@dataclass(frozen=True)
class EngineConfig(_Checked):
    """Where and how the network runs: device, weights, numeric precision."""

    device: str = option("auto", "auto, cpu, cuda or cuda:N.")
    weights: str = option("original", "VGG19 weights: original (bundled), torchvision (downloads), or a "
                          "state-dict file.")
    # "auto" = bf16 convolutions on GPUs and CPUs that compute bf16 natively (CUDA compute capability
    # 8.0 on, i.e. Ampere and later; AVX512-BF16 or AMX on x86, BF16 on Arm: pipeline/engine/device.py),
    # fp32 elsewhere. Gram matrices, losses and the optimiser always stay fp32. docs/performance.md has
    # the measurements.
    precision: str = option(
        "auto", "auto (bf16 convolutions on GPUs with native bf16, Ampere and later, and on CPUs with native "
        "bf16: AVX512-BF16/AMX or Arm BF16; fp32 elsewhere), fp32 or bf16. Losses and the optimiser stay fp32; "
        "Gram matrices accumulate in fp32 (on such CPUs from bf16 features).", check=one_of(PRECISIONS))
    # Tiling gives exactly the untiled loss and gradient (pipeline/engine/evaluate.py), so results do
    # not depend on it beyond rounding and it is not part of a job's resume key.
    tile: int | str = option(
        "auto", "auto (whole when the image fits in the memory free now, else tiles sized to it), off (always "
        "whole) or N (tiles of at most N x N pixels, which bounds an evaluation's memory).",
        check=count_or("auto", "off", low=16))


@dataclass(frozen=True)
class JobConfig:
    """Everything that determines a job's result: used to detect changed options on resume."""

    styles: tuple[StyleImage, ...]
    style: StyleConfig = field(default_factory=StyleConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)


# "warped" starts each frame from the previous stylized frame moved by optical flow (plus the
# temporal loss), "previous" from the previous stylized frame as it is, "frame" from the frame's own
# content (every frame independent). pipeline/jobs/temporal.py.
TEMPORAL_INITS = ("warped", "previous", "frame")
TEMPORAL_CARRY = ("offset", "result")
FLOW_PRESETS = ("ultrafast", "fast", "medium")  # OpenCV DIS presets, fastest first


_WARPED = f"{setting('TemporalConfig.init')} warped"  # help texts name other settings, the CLI shows their flags


def _long_term(v) -> str | None:
    return None if v == 0 or v >= 2 else f"must be 0 (off) or at least 2 frames (got {v})"


@dataclass(frozen=True)
class TemporalConfig(_Checked):
    """How consecutive video frames are tied together (Ruder et al.), see pipeline/jobs/temporal.py."""

    init: str = option("warped", "How later frames start: warped (the previous stylized frame moved by optical "
                       "flow, plus a temporal loss: steadiest), previous (the previous stylized frame as it is) "
                       "or frame (their own content: flickers).", check=one_of(TEMPORAL_INITS))
    weight: float = option(50.0, f"{_WARPED}: weight of the temporal loss (0 = warped start only).",
                           flag="--temporal-weight", check=not_negative)
    scene_cut: float = option(0.25, f"{_WARPED}: a frame whose flow explains less than this share of its pixels "
                              "is a new shot and starts from its own content.", check=between(0, 1))
    flow_preset: str = option("medium", "Optical flow (OpenCV DIS) preset: ultrafast, fast or medium.",
                              check=one_of(FLOW_PRESETS))
    # Also hold each frame to the stylized frame K frames back, where the previous frame cannot vouch
    # for a pixel (it was hidden there but visible K frames ago).
    long_term: int = option(0, f"{_WARPED}: also hold each frame to the stylized frame this many frames back "
                            "where the previous frame cannot vouch for a pixel (reappearing background); 0 = off.",
                            check=_long_term)
    # What moves along the flow to start the next frame where the flow cannot vouch for a pixel.
    # Trusted pixels always start from the moved result. docs/video-drift.md.
    carry: str = option("offset", f"{_WARPED}: what moves along the flow to start the next frame where the flow "
                        "cannot vouch for a pixel: offset (the stylized frame's difference from its input, added "
                        "to the next input: light and newly visible things come from the frame, so long clips "
                        "keep their content) or result (the stylized frame itself everywhere, as Ruder et al.).",
                        check=one_of(TEMPORAL_CARRY))
    # Share of what is carried that each frame lets go of, so that a long chain keeps its content
    # (pipeline/jobs/temporal.py start_image, docs/video-drift.md).
    content_blend: float = option(
        0.1, f"{_WARPED}: share of what is carried that each frame lets go of (offset: the offset shrinks by it; "
        "result: that share of the frame's content is mixed in), so a long clip does not drift toward the style "
        "(0 = off; more = closer to each frame's content, less stylized).",
        check=lambda v: None if 0 <= v < 1 else f"must be at least 0 and below 1 (got {v})")


@dataclass(frozen=True)
class VideoConfig(_Checked):
    """What a video job stylizes besides the style settings: later frames' budget and the frame range.

    The working size is ``StyleConfig.size`` (never more than the input's), the first frame's budget
    ``StyleConfig.iterations`` (coarse-to-fine, from its content); each later frame gets
    ``iterations`` here (single scale when it starts from an already stylized frame: the coarse
    levels would only blur it again). ``VIDEO_STYLE`` below holds the style defaults of a video job.
    """

    # A later frame starts from the previous stylized frame moved along the flow: it is already styled,
    # and 30 evaluations hold it as steady as 60 did (issue 25, docs/video.md).
    iterations: int = option(30, "Network evaluations for each later frame.", check=at_least(1))
    start: float = option(0.0, "Start this many seconds into the input.", check=not_negative)
    duration: float | None = option(None, "Stylize only this many seconds.", check=positive)
    max_frames: int | None = option(None, "Stylize at most this many frames (quick previews).", check=at_least(1))
    fps: float = option(25.0, "Frame rate of an INPUT that is a folder of frames.", check=positive)


# A video job's style settings start from a smaller working size than a photo's: a film has
# thousands of frames, and 384 px keeps a frame within seconds on a GPU. The first frame's 300
# iterations are StyleConfig's own.
VIDEO_STYLE = StyleConfig(size=384)


@dataclass(frozen=True)
class EncodeConfig(_Checked):
    """How the stylized frames are encoded; the container comes from the output's extension."""

    codec: str = option("libx264", "Video encoder: libx264, libx265, libvpx-vp9, ffv1 (lossless, use .mkv), ...")
    crf: int | None = option(None, "Constant quality (lower = better, bigger); default per codec: x264 18, "
                             "x265 20, vp9 30.", check=between(0, 63))
    preset: str | None = option("medium", "x264/x265 speed preset (ultrafast ... veryslow).")
    pix_fmt: str | None = option(None, "Output pixel format (default: yuv420p; RGB for ffv1).")
    output_size: int | None = option(None, "Long side of the output video (default: the input's size).",
                                     check=at_least(16, " pixels"))


@dataclass(frozen=True)
class VideoJobConfig:
    """What a video job does besides stylizing each frame (``JobConfig``): which frames and the later
    frames' budget, how the frames are tied together, how they are encoded."""

    video: VideoConfig = field(default_factory=VideoConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    encode: EncodeConfig = field(default_factory=EncodeConfig)


_PREVIEW = setting("preview")  # the preview's own switch: a keyword of the CLI's preview branch
_STYLE_WEIGHT, _STYLE_SCALE = setting("StyleConfig.style_weight"), setting("StyleConfig.style_scale")
_WORKERS = setting("ScaleConfig.workers")

OUTPUT_FORMATS = ("same", "jpg", "png", "webp", "tiff", "bmp")


@dataclass(frozen=True)
class FolderConfig(_Checked):
    """How a photo folder is walked and written; the stylization itself is in ``JobConfig``."""

    recursive: bool = option(True, "Folders: walk sub-folders too, mirroring them under OUTPUT.")
    include: tuple[str, ...] = option((), "Folders: only files matching this pattern (on the name or the relative "
                                      "path, e.g. '*.jpg', '2024/*'; repeatable).", aliases=("--glob",))
    exclude: tuple[str, ...] = option((), "Folders: leave out files matching this pattern (repeatable).")
    format: str = option("same", "Folders: output format: same (as each input), jpg, png, webp, tiff or bmp.",
                         check=one_of(OUTPUT_FORMATS))
    quality: int = option(95, "JPEG/WebP quality of the output.", check=between(1, 100))
    batch_size: int | str = option(
        "auto", "Folders: images of equal size stylized together: auto (1 on CPU; on CUDA 4 up to "
        f"{setting('StyleConfig.size')} 512, 2 up to 1024, else 1) or a number.", check=count_or("auto"))
    overwrite: bool = option(False, "Replace an existing output (folders: redo every image).")
    read_ahead: int = option(4, "Decoded images waiting for the stylizer (bounds memory).", cli=False,
                             check=at_least(1))


@dataclass(frozen=True)
class PreviewConfig(_Checked):
    """A preview sheet (``--preview``): a few small, quick tiles over a grid of settings.

    Empty ``style_weights`` / ``style_scales`` mean "around the current value" (see
    ``pipeline.jobs.preview.settings_grid``). The defaults keep a sheet at about 9 tiles of
    ``size`` px, about a minute on a 2-core CPU (docs/preview.md has the measurements).
    """

    size: int = option(128, f"{_PREVIEW}: long side of each tile in pixels.", flag="--preview-size",
                       check=at_least(32, " pixels"))
    iterations: int = option(60, f"{_PREVIEW}: network evaluations per tile.", flag="--preview-iterations",
                             check=at_least(1))
    samples: int = option(3, f"{_PREVIEW}: images of a folder (or frames of a clip) to show, spread over it; one "
                          "row each.", flag="--preview-samples", check=at_least(1))
    style_weights: tuple[float, ...] = option(
        (), f"{_PREVIEW}: the {_STYLE_WEIGHT} values to compare, e.g. 1,3,9 (default: a third, once and three "
        f"times {_STYLE_WEIGHT}).", flag="--preview-style-weights", check=each(not_negative))
    style_scales: tuple[float, ...] = option(
        (), f"{_PREVIEW}: the {_STYLE_SCALE} values to compare, e.g. 0.5,1,2 (default: half, once and twice "
        f"{_STYLE_SCALE} for a single picture; only {_STYLE_SCALE} when there are several samples).",
        flag="--preview-style-scales", check=each(positive))


@dataclass(frozen=True)
class ScaleConfig(_Checked):
    """Spreading a job over Ray workers (``--workers`` / ``--ray-address``); see docs/scale-out.md.

    Neither ``workers`` nor ``address`` set: the job runs in this process and never imports Ray
    (pipeline/scale/__init__.py ``executor_for``).
    """

    workers: int | str | None = option(
        None, "Spread the job over N Ray workers (needs stylize[ray]); auto = one per GPU, or one per 4 CPU cores. "
        "See docs/scale-out.md.", check=count_or("auto"))
    address: str | None = option(None, "Join a running Ray cluster: auto (the one `ray start` made) or HOST:PORT; "
                                 f"workers as {_WORKERS} (default auto).", flag="--ray-address")
    # Videos: a shot longer than max_chunk frames is cut into chunks (10 s at 24 fps: long enough that
    # the chain settles, short enough to spread a film over many GPUs); each chunk inside a shot also
    # renders `overlap` frames of the chunk before it, cross-faded there so that no seam shows. Two
    # chains do not converge: the hand-over is steady when the fade is long. 16, not 8: at 8 the
    # frame pairs of a hand-over changed 1.56x as much as the pairs inside chunks on carphone (1.02x
    # on Big Buck Bunny), at 16 1.19x and 0.90x (docs/scale-out.md); 16 frames more per chunk of 240.
    max_chunk: int = option(240, f"With {_WORKERS}: shots longer than this many frames are split into chunks for "
                            "several workers.", check=at_least(1))
    overlap: int = option(16, f"With {_WORKERS}: frames each chunk inside a shot shares with the one before, "
                          "cross-faded so no seam shows.", check=not_negative)
    threads: int | None = option(None, "Torch threads per CPU worker (default: the cluster's cores / workers).",
                                 cli=False, check=at_least(1))
    in_flight: int = option(2, "Units queued per worker: one running, one ready, so a worker never waits.",
                            cli=False, check=at_least(1))
    max_restarts: int = option(3, "Times Ray restarts a dead worker (a killed process, a lost node).", cli=False,
                               check=not_negative)
    max_attempts: int = option(3, "A unit whose worker dies this often is given up (an image is listed as failed).",
                               cli=False, check=at_least(1))
    start_timeout: float = option(300.0, "Seconds for every worker to build its network; longer means the cluster "
                                  "lacks what they ask for.", cli=False, check=positive)

    @property
    def distributed(self) -> bool:
        """Whether workers or a cluster were asked for (else the job runs in this process)."""
        return self.workers is not None or self.address is not None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.overlap >= self.max_chunk:
            raise ConfigError(f"{setting('ScaleConfig.overlap')} must be below {setting('ScaleConfig.max_chunk')} "
                              f"(got {self.overlap} and {self.max_chunk})")
