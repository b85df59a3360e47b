"""Planning a photo-folder job: which files are images, where each output goes, and whether
OUTPUT_DIR's earlier results were made with the same options (the manifest).

The plan is a list of independent work items keyed by their relative path: a later distributed
version can hand them to several workers.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.config import FolderConfig
from pipeline.errors import ConfigError, InputError, OutputExistsError, setting
from pipeline.events import EventCallback, Notice, ignore

MANIFEST_NAME = ".stylize-manifest.json"


class OptionsChangedError(OutputExistsError):
    """OUTPUT_DIR holds results made with other options: mixing them silently would be wrong."""


@dataclass(frozen=True)
class WorkItem:
    rel: str  # the input's path relative to INPUT_DIR, "/"-separated: the item's key
    source: Path
    output: Path


@dataclass(frozen=True)
class IgnoredFile:
    """A file under INPUT_DIR that is not an image the job reads."""

    rel: str
    why: str


@dataclass
class FolderPlan:
    input_dir: Path
    output_dir: Path
    items: list[WorkItem]  # every selected image, in walk order
    ignored: list[IgnoredFile] = field(default_factory=list)  # files that are not images
    excluded: int = 0  # images left out by --include / --exclude


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Refuse layouts where outputs could land among (or replace) the inputs."""
    if not input_dir.is_dir():
        raise InputError(f"{input_dir}: not a folder")
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir}: exists and is not a folder")
    src, dst = input_dir.resolve(), output_dir.resolve()
    if dst == src or dst.is_relative_to(src) or src.is_relative_to(dst):
        # Inside the input, outputs would be walked as inputs next time and the input folder would
        # no longer be read-only; around it, a mirrored path could be an input's own path.
        raise ConfigError(f"{output_dir}: the output folder must be outside the input folder {input_dir} "
                          "and must not contain it (use a sibling folder, e.g. photos-styled)")


def _selected(rel: str, config: FolderConfig) -> bool:
    name = rel.rsplit("/", 1)[-1]

    def matches(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(rel.lower(), p.lower()) or fnmatch.fnmatch(name.lower(), p.lower())
                   for p in patterns)

    return (not config.include or matches(config.include)) and not matches(config.exclude)


def plan_folder(input_dir: Path, output_dir: Path, config: FolderConfig = FolderConfig()) -> FolderPlan:
    """Walk INPUT_DIR (sorted, so every run sees the same order) and map each image to its output."""
    from pipeline.media.images import READ_SUFFIXES, output_suffix

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    check_folders(input_dir, output_dir)
    plan = FolderPlan(input_dir=input_dir, output_dir=output_dir, items=[])
    for folder, dirs, files in os.walk(input_dir):
        # Hidden folders hold thumbnails and app data (.thumbnails, .git), not photos; symlinked
        # folders are not followed (os.walk's default), which also rules out loops.
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if config.recursive else []
        for name in sorted(files):
            path = Path(folder, name)
            rel = path.relative_to(input_dir).as_posix()
            if name.startswith("."):  # .DS_Store, macOS "._IMG_1.jpg" resource forks
                plan.ignored.append(IgnoredFile(rel=rel, why="hidden file"))
            elif path.suffix.lower() not in READ_SUFFIXES:
                why = f"not an image type read here ({path.suffix.lower() or 'no extension'})"
                plan.ignored.append(IgnoredFile(rel=rel, why=why))
            elif not _selected(rel, config):
                plan.excluded += 1
            else:
                out_rel = rel[: len(rel) - len(path.suffix)] + output_suffix(path, config.format)
                plan.items.append(WorkItem(rel=rel, source=path, output=output_dir / out_rel))
    plan.items = _resolve_collisions(plan.items, output_dir)
    return plan


def _resolve_collisions(items: list[WorkItem], output_dir: Path) -> list[WorkItem]:
    """Two inputs that would share an output (a.png and a.jpg with --format jpg): the ones whose
    suffix changed keep their full name in front of the new suffix (a.png.jpg). Case-insensitive,
    as on the file systems of most photo drives."""
    by_output: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_output.setdefault(str(item.output).lower(), []).append(i)
    result = list(items)
    for indices in by_output.values():
        if len(indices) < 2:
            continue
        for i in indices:
            item = items[i]
            if item.source.suffix != item.output.suffix:
                result[i] = dataclasses.replace(item, output=output_dir / (item.rel + item.output.suffix))
    return _number_case_twins(result)


def _number_case_twins(items: list[WorkItem]) -> list[WorkItem]:
    """Outputs still equal but for case (IMG_1.JPG and IMG_1.jpg side by side, both keeping their
    suffix): on a case-insensitive drive one would overwrite the other, and a re-run would take it
    for the other's finished result. The first in walk order keeps its name, the others get " (2)",
    " (3)", ... before the suffix, skipping names another output already has."""
    taken = {str(item.output).lower() for item in items}
    seen: set[str] = set()
    result = []
    for item in items:
        key = str(item.output).lower()
        if key in seen:
            n, output = 2, item.output
            while str(output).lower() in taken:
                output = item.output.with_name(f"{item.output.stem} ({n}){item.output.suffix}")
                n += 1
            taken.add(str(output).lower())
            item = dataclasses.replace(item, output=output)
            key = str(output).lower()
        seen.add(key)
        result.append(item)
    return result


# ------------------------------------------------------------------------------------------ manifest


def read_manifest(output_dir: Path) -> dict | None:
    path = Path(output_dir) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"fingerprint": None}  # unreadable: treated as "made with unknown options"


def write_manifest(output_dir: Path, fingerprint: dict, input_dir: Path) -> None:
    from pipeline.media.images import atomic_write

    body = json.dumps({"kind": "folder", "input": str(Path(input_dir).resolve()), "fingerprint": fingerprint},
                      indent=2)
    atomic_write(Path(output_dir) / MANIFEST_NAME, lambda tmp: tmp.write_text(body + "\n"))


def _other_input(manifest: dict | None, input_dir: Path) -> str | None:
    """The input folder an earlier run recorded, when it is not this one (None when it is, or unknown)."""
    recorded = (manifest or {}).get("input")
    if not isinstance(recorded, str) or Path(recorded).resolve() == Path(input_dir).resolve():
        return None
    return recorded


def _changed_options(old: dict | None, new: dict) -> list[str]:
    if not isinstance(old, dict):
        return ["unknown (unreadable manifest)"]
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += [f"{key}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            changed.append(key)
    return changed


def finished_outputs(plan: FolderPlan, fingerprint: dict, overwrite: bool, *, dry_run: bool = False,
                     on_event: EventCallback = ignore) -> set[str]:
    """Check OUTPUT_DIR against this job's options; return the rel keys whose output is complete.

    Without --overwrite, outputs made with other (or unknown) options stop the job. With it, such
    outputs are deleted before the new manifest is written, so that an interrupted --overwrite run
    never leaves old results that a later plain re-run would take as finished.
    """
    manifest = read_manifest(plan.output_dir)
    existing = [item for item in plan.items if item.output.exists()]
    other_input = _other_input(manifest, plan.input_dir)
    same = manifest is not None and manifest.get("fingerprint") == fingerprint and other_input is None
    if not overwrite:
        if other_input is not None:
            # Same names from another folder are other photos: skipping them as "done" would be wrong.
            raise OptionsChangedError(f"{plan.output_dir}: holds results made from another input folder "
                                      f"({other_input}); use a new output folder, or {setting('overwrite')} to "
                                      "replace them")
        if manifest is not None and not same:
            changed = ", ".join(_changed_options(manifest.get("fingerprint"), fingerprint))
            raise OptionsChangedError(f"{plan.output_dir}: holds results made with other options (changed: "
                                      f"{changed}); use {setting('overwrite')} to redo them, or a new output folder")
        if manifest is None and existing:
            raise OptionsChangedError(f"{plan.output_dir}: already holds {len(existing)} files under the names "
                                      f"this job writes (e.g. {existing[0].output.name}) but no {MANIFEST_NAME}; "
                                      f"use {setting('overwrite')} to replace them, or a new output folder")
        return {item.rel for item in existing}
    if existing and not same and not dry_run:
        for item in existing:
            item.output.unlink(missing_ok=True)
        on_event(Notice(message=f"removed {len(existing)} outputs made with other options ({setting('overwrite')})"))
    return set()


def remove_stale_parts(output_dir: Path) -> int:
    """Delete temporary files a killed run left behind (.NAME.XXXX.part from atomic_write).

    Assumes one job writes into OUTPUT_DIR at a time; several workers sharing a folder would need
    to leave this to a coordinator.
    """
    count = 0
    for folder, _dirs, files in os.walk(output_dir):
        for name in files:
            if name.startswith(".") and name.endswith(".part"):
                Path(folder, name).unlink(missing_ok=True)
                count += 1
    return count


