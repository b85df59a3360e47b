"""Preview sheets (``--preview``): see a job's settings on a few of its own pictures before a long run.

A few samples (the image itself, a spread of a folder's images, or frames spread over a clip) are
stylized small and quickly over a grid of settings (style weight x style scale, or one row per
style image), and laid out on one contact sheet whose tiles are labelled with the options that
made them. The command that runs each tile's settings for real goes into the PNG's text chunks
and a ``.txt`` beside it.

A preview writes the sheet and its ``.txt`` and nothing else: never OUTPUT, a folder manifest or
a video job folder, so a real job started afterwards sees no earlier work to resume.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pipeline.config import (
    CONTENT_LAYER,
    STYLE_LAYERS,
    FolderConfig,
    JobConfig,
    PreviewConfig,
    StyleConfig,
    VideoConfig,
)
from pipeline.errors import ConfigError, InputError, OutputExistsError, render, setting
from pipeline.events import (
    EventCallback,
    ItemDone,
    ItemStarted,
    Iteration,
    JobFinished,
    JobStarted,
    Notice,
    PreviewPlanned,
    ignore,
)
from pipeline.results import PreviewSummary

SHEET_KEY = "stylize-preview"  # PNG text chunk holding the tiles and their commands (JSON)
TEXT_HEADER = "# stylize preview sheet"  # first line of the .txt beside the sheet

# For the estimate the CLI states up front (docs/preview.md): one network evaluation (forward +
# backward) of a 128 x 96 px tile took 0.075 s on the project's 2-core CPU at load 4 (an idle
# machine is faster); the set-up before the first tile (network, style images, samples) a few seconds.
CPU_SECONDS_PER_ITERATION_128 = 0.07
CPU_SETUP_SECONDS = 4.0

# How a tile's settings are named on the sheet and in its commands: the settings themselves
# (pipeline.errors.setting), shown as the caller's ``name_of`` names them (the CLI: its flags).
NameOf = Callable[[str], str | None]
_STYLE_WEIGHT, _STYLE_SCALE = setting("StyleConfig.style_weight"), setting("StyleConfig.style_scale")


def _own_names(_setting: str) -> None:
    """The default ``name_of``: each setting by its own name ("StyleConfig.style_weight")."""
    return None


@dataclass(frozen=True)
class TileSettings:
    """What differs between the tiles of one sample: plain values, so each maps to a command line."""

    style_weight: float
    style_scale: float
    style: int = 0  # index into the job's style images (several styles: one row each, never blended)


@dataclass
class Sample:
    name: str  # how the tile names its input: a relative path, a file name, or "clip.mp4 @ 12.40 s"
    rgb: torch.Tensor  # [1, 3, H, W] in [0, 1], long side at the preview size


def _round(value: float) -> float:
    return float(f"{value:.3g}")  # 3 / 3 -> 1.0, 1 / 3 -> 0.333: labels and commands stay short


def settings_grid(style: StyleConfig, n_styles: int, preview: PreviewConfig,
                  one_sample: bool) -> tuple[list[TileSettings], int]:
    """The tiles' settings in sheet order, and how many columns a row of the grid has.

    Columns are style weights (default: a third, once and three times the current one). Rows are
    style scales (default for a single image: half, once and twice the current one; for a folder
    or clip only the current one, since there the rows are the samples) or, with several style
    images, one row per style at each scale.
    """
    w, s = style.style_weight, style.style_scale
    weights = preview.style_weights or (_round(w / 3), w, _round(w * 3))
    if preview.style_scales:
        scales = preview.style_scales
    else:
        scales = (_round(s / 2), s, _round(s * 2)) if one_sample and n_styles == 1 else (s,)
    weights = tuple(dict.fromkeys(weights))  # a weight of 0 gives (0, 0, 0): one column, not three
    scales = tuple(dict.fromkeys(scales))
    grid = [TileSettings(weight, scale, k) for k in range(n_styles) for scale in scales for weight in weights]
    return grid, len(weights)


def spread_indices(n: int, k: int) -> list[int]:
    """``min(n, k)`` indices into ``n`` sorted items, one from the middle of each of ``k`` equal
    stretches: a sample that covers the whole folder or clip, not just its start."""
    k = min(n, k)
    return [(2 * i + 1) * n // (2 * k) for i in range(k)]


def cpu_seconds(tiles: int, iterations: int, size: int) -> float:
    """About how long a sheet takes on a 2-core CPU (cost grows with the pixels of a tile)."""
    return CPU_SETUP_SECONDS + tiles * iterations * CPU_SECONDS_PER_ITERATION_128 * (size / 128) ** 2


def default_sheet_path(output: Path, output_is_folder: bool) -> Path:
    """Where the sheet goes unless --preview-sheet says: beside OUTPUT, never inside it.

    ``out.jpg`` / ``out.mp4`` -> ``out.preview.png``; a folder ``photos-styled`` -> ``photos-styled.preview.png``.
    """
    output = Path(output)
    if output_is_folder or not output.suffix:
        return output.with_name(output.name + ".preview.png")
    return output.with_name(output.stem + ".preview.png")


def text_path(sheet: Path) -> Path:
    return sheet.with_suffix(".txt")


def _is_ours(path: Path) -> bool:
    """Whether ``path`` is a sheet or command list an earlier preview wrote (so it may be replaced)."""
    from pipeline.media.sheet import png_text

    if path.suffix.lower() == ".png":
        return SHEET_KEY in png_text(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.readline().startswith(TEXT_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def check_sheet_path(sheet: Path, input_path: Path, output: Path, output_is_folder: bool, styles: Sequence[Path],
                     overwrite: bool) -> None:
    """Refuse a sheet that would replace an input, a style, the output, or land inside a folder a
    job reads or writes; an earlier preview's sheet is replaced, anything else needs --overwrite."""
    sheet = Path(sheet)
    if sheet.suffix.lower() != ".png":
        raise ConfigError(f"{sheet}: a preview sheet is a PNG file; give {setting('preview_sheet')} a name ending "
                          "in .png")
    target = sheet.resolve()
    for other, what in [(input_path, "the input"), (output, "the output"), *((s, "a style image") for s in styles)]:
        if target == Path(other).resolve():
            raise ConfigError(f"{sheet}: the preview sheet would replace {what}; choose another "
                              f"{setting('preview_sheet')}")
    folders = [(input_path, "input")] if Path(input_path).is_dir() else []
    folders += [(output, "output")] if output_is_folder else []
    for folder, what in folders:
        if target.is_relative_to(Path(folder).resolve()):
            raise ConfigError(f"{sheet}: the preview sheet must not go inside the {what} folder {folder}; "
                              f"choose another {setting('preview_sheet')}")
    for path in (sheet, text_path(sheet)):
        if path.exists() and not overwrite and not _is_ours(path):
            raise OutputExistsError(f"{path}: already exists and is not a preview sheet "
                                    f"(use {setting('overwrite')} to replace it)")


# ------------------------------------------------------------------------------------------ samples


def _sample_image(path: Path, name: str, size: int) -> Sample:
    from pipeline.media.images import fit_long_side, load_image, resize

    rgb = load_image(path, draft_long_side=size).rgb
    return Sample(name, resize(rgb, fit_long_side(rgb.shape[-2], rgb.shape[-1], size)))


def sample_folder(items: Sequence[tuple[str, Path]], count: int, size: int,
                  on_event: EventCallback = ignore) -> tuple[list[Sample], list[tuple[str, str]]]:
    """Up to ``count`` readable images spread over ``items`` ((rel, path), in plan order).

    An unreadable file is reported and replaced by its nearest readable neighbour, so a damaged
    photo neither stops the preview nor leaves a hole in the spread. Returns (samples, skipped).
    """
    chosen: dict[int, Sample] = {}
    skipped: dict[int, str] = {}
    for target in spread_indices(len(items), count):
        for j in sorted(range(len(items)), key=lambda j: (abs(j - target), j)):
            if j in chosen or j in skipped:
                continue
            rel, path = items[j]
            try:
                chosen[j] = _sample_image(path, rel, size)
                break
            except InputError as exc:
                skipped[j] = str(exc)
                on_event(Notice(f"preview: skipped {exc}"))
    if not chosen:
        raise InputError("no readable image to preview" + (f" ({len(skipped)} unreadable)" if skipped else ""))
    return [chosen[j] for j in sorted(chosen)], [(items[j][0], why) for j, why in sorted(skipped.items())]


def sample_video(info, count: int, size: int) -> list[Sample]:
    """``count`` frames spread over the probed range of a clip (``info``: a media.video.VideoInfo),
    each decoded on its own (a seek, not a decode of everything before it)."""
    from pipeline.media.images import fit_long_side, from_uint8, resize
    from pipeline.media.video import decode_frames

    samples = []
    for i in spread_indices(info.frames, count):
        pts = info.frame_pts[i]
        frame = next(decode_frames(dataclasses.replace(info, frame_pts=(pts,))))
        rgb = from_uint8(frame.rgb)
        seconds = float(pts * info.time_base)
        samples.append(Sample(f"{info.path.name} @ {seconds:.2f} s",
                              resize(rgb, fit_long_side(rgb.shape[-2], rgb.shape[-1], size))))
    return samples


# ------------------------------------------------------------------------------------------ the sheet


def tile_labels(index: int, sample: Sample, tile: TileSettings, style_names: Sequence[str],
                name_of: NameOf = _own_names) -> list[str]:
    """The lines under a tile: its number and input, then the settings that made it, named by ``name_of``."""
    lines = [f"#{index} {sample.name}"]
    if len(style_names) > 1:
        lines.append(f"style {style_names[tile.style]}")
    lines += [f"{_STYLE_WEIGHT} {tile.style_weight:g}", f"{_STYLE_SCALE} {tile.style_scale:g}"]
    return [render(line, name_of) for line in lines]


def options_text(tile: TileSettings, style_names: Sequence[str], name_of: NameOf = _own_names) -> str:
    """The tile's settings, named by ``name_of`` (the fallback when the caller gives no full command)."""
    style = f"style {style_names[tile.style]} " if len(style_names) > 1 else ""
    return render(f"{style}{_STYLE_WEIGHT} {tile.style_weight:g} {_STYLE_SCALE} {tile.style_scale:g}", name_of)


def _commands_text(sheet: Path, records: list[dict]) -> str:
    lines = [f"{TEXT_HEADER} {sheet.name}: {len(records)} tiles, numbered row by row from the top left.",
             "# Under each tile's line, the command that runs its settings on the whole input:"]
    for r in records:
        lines += [f"# tile {r['tile']}: {r['input']}: {r['options']}", r["command"]]
    return "\n".join(lines) + "\n"


def _title(input_path: Path, job: JobConfig, tiles: int, preview: PreviewConfig) -> str:
    styles = ", ".join(Path(s.path).name for s in job.styles)
    return f"{input_path.name}, style {styles}: {tiles} tiles at {preview.size} px, {preview.iterations} iterations"


def make_sheet(samples: Sequence[Sample], job: JobConfig, preview: PreviewConfig, grid: Sequence[TileSettings],
               columns: int, sheet: Path, *, title: str = "", command_for: Callable[[TileSettings], str] | None = None,
               name_of: NameOf = _own_names, on_event: EventCallback = ignore) -> PreviewSummary:
    """Stylize every sample at every setting of ``grid``, compose the sheet, write it and its .txt.

    ``name_of`` names the settings in the tiles' labels and options (the CLI passes its flags)."""
    from pipeline.engine.features import build_features
    from pipeline.engine.optimize import Stylizer
    from pipeline.media.images import atomic_write, load_rgb, to_uint8
    from pipeline.media.sheet import compose_sheet, save_sheet

    style_names = [Path(s.path).name for s in job.styles]
    for style in job.styles:
        if not Path(style.path).is_file():
            raise InputError(f"{style.path}: style image not found")
    style_images = [load_rgb(s.path) for s in job.styles]
    # One network for the whole sheet, and one Stylizer per style image, whose style Gram matrices
    # are computed once per size and style scale; each tile optimises with its own config
    # (Stylizer.with_config): every setting is read from it, so each tile is its own picture.
    features = build_features((*STYLE_LAYERS, CONTENT_LAYER), job.engine.weights, job.style.pooling)
    stylizers: dict[int, Stylizer] = {}
    base = job.style.replace(size=preview.size, iterations=preview.iterations)
    total = len(samples) * len(grid)
    on_event(JobStarted("preview", total, "tile", f"preview ({total} tiles)"))
    start = time.perf_counter()
    tiles: list[np.ndarray] = []  # uint8 [H, W, 3], one per stylized tile
    labels, records, device = [], [], ""
    for sample in samples:
        for tile in grid:
            index = len(tiles) + 1
            config = base.replace(style_weight=tile.style_weight, style_scale=tile.style_scale)
            if tile.style not in stylizers:
                stylizers[tile.style] = Stylizer([(style_images[tile.style], 1.0)], config, job.engine,
                                                 features=features)
            stylizer = stylizers[tile.style].with_config(config)
            device = str(stylizer.device)
            name = f"#{index} {sample.name}"
            on_event(ItemStarted(name, config.iterations))
            began = time.perf_counter()
            result = stylizer.stylize(sample.rgb, on_progress=lambda d, t, loss: on_event(Iteration(d, t, loss)))
            tiles.append(to_uint8(result.image.cpu()))
            labels.append(tile_labels(index, sample, tile, style_names, name_of))
            options = options_text(tile, style_names, name_of)
            records.append({"tile": index, "input": sample.name, "options": options,
                            "style_weight": tile.style_weight, "style_scale": tile.style_scale,
                            "style": str(job.styles[tile.style].path),
                            "command": command_for(tile) if command_for else options})
            on_event(ItemDone(name, None, time.perf_counter() - began, result.losses))
    image = compose_sheet(tiles, labels, columns, title)
    commands = _commands_text(sheet, records)
    save_sheet(image, sheet, {SHEET_KEY: json.dumps({"tiles": records}), "Description": commands})
    atomic_write(text_path(sheet), lambda tmp: tmp.write_text(commands, encoding="utf-8"))
    return PreviewSummary(str(sheet), str(text_path(sheet)), records, columns, image.width, image.height,
                          preview.size, preview.iterations, device, seconds=time.perf_counter() - start)


def _grid_sheet(input_path: Path, samples: Sequence[Sample], job: JobConfig, preview: PreviewConfig, sheet: Path,
                command_for: Callable[[TileSettings], str] | None, name_of: NameOf,
                on_event: EventCallback) -> PreviewSummary:
    """The settings grid over ``samples``: announced (with its time estimate), stylized and laid out."""
    grid, columns = settings_grid(job.style, len(job.styles), preview, one_sample=len(samples) == 1)
    total = len(samples) * len(grid)
    on_event(PreviewPlanned(total, preview.size, preview.iterations,
                            cpu_seconds(total, preview.iterations, preview.size), sheet))
    return make_sheet(samples, job, preview, grid, columns, sheet, title=_title(input_path, job, total, preview),
                      command_for=command_for, name_of=name_of, on_event=on_event)


def _finish(summary: PreviewSummary, skipped: list[tuple[str, str]], started: float,
            on_event: EventCallback) -> PreviewSummary:
    summary.skipped = [{"input": rel, "error": why} for rel, why in skipped]
    summary.seconds = time.perf_counter() - started  # sampling and set-up included: what the user waits
    on_event(JobFinished(summary))
    return summary


def preview_images(input_path: Path, output: Path, job: JobConfig, preview: PreviewConfig = PreviewConfig(), *,
                   folder: FolderConfig = FolderConfig(), sheet: Path | None = None, overwrite: bool = False,
                   command_for: Callable[[TileSettings], str] | None = None, name_of: NameOf = _own_names,
                   on_event: EventCallback = ignore) -> PreviewSummary:
    """The preview of ``stylize-images INPUT STYLE OUTPUT``: INPUT an image file or a folder."""
    from pipeline.jobs.folder_plan import plan_folder

    started = time.perf_counter()
    input_path, output = Path(input_path), Path(output)
    is_folder = input_path.is_dir()
    sheet = Path(sheet) if sheet is not None else default_sheet_path(output, is_folder)
    check_sheet_path(sheet, input_path, output, is_folder, [s.path for s in job.styles], overwrite)
    if is_folder:
        # The real job's plan (same walk, filters and order) without its output side: nothing is written.
        plan = plan_folder(input_path, output, folder)
        if not plan.items:
            raise InputError(f"{input_path}: no images to preview")
        samples, skipped = sample_folder([(item.rel, item.source) for item in plan.items], preview.samples,
                                         preview.size, on_event)
    else:
        samples, skipped = [_sample_image(input_path, input_path.name, preview.size)], []
    summary = _grid_sheet(input_path, samples, job, preview, sheet, command_for, name_of, on_event)
    return _finish(summary, skipped, started, on_event)


def preview_video(input_path: Path, output: Path, job: JobConfig, preview: PreviewConfig = PreviewConfig(), *,
                  video: VideoConfig = VideoConfig(), sheet: Path | None = None, overwrite: bool = False,
                  command_for: Callable[[TileSettings], str] | None = None, name_of: NameOf = _own_names,
                  on_event: EventCallback = ignore) -> PreviewSummary:
    """The preview of ``stylize-video INPUT STYLE OUTPUT``: frames spread over the chosen range
    (--start, --duration, --max-frames), each stylized from its own content (no temporal chain)."""
    from pipeline.jobs.video import is_frame_folder
    from pipeline.media.video import FrameWindow, probe

    started = time.perf_counter()
    input_path, output = Path(input_path), Path(output)
    sheet = Path(sheet) if sheet is not None else default_sheet_path(output, is_frame_folder(output))
    check_sheet_path(sheet, input_path, output, is_frame_folder(output), [s.path for s in job.styles], overwrite)
    info = probe(input_path, FrameWindow(video.start, video.duration, video.max_frames), video.fps)
    samples = sample_video(info, preview.samples, preview.size)
    summary = _grid_sheet(input_path, samples, job, preview, sheet, command_for, name_of, on_event)
    return _finish(summary, [], started, on_event)
