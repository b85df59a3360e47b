"""Neural style transfer for videos and photo folders: the library (no printing, no CLI).

The tree is the map (docs/design.md has the picture):

    config.py, errors.py, events.py   the vocabulary every stage shares
    engine/    VGG19 weights and features, losses, style targets, the per-image optimisation
    media/     images, video (PyAV), frame folders, optical flow
    jobs/      the single-image, folder and video jobs, resume, temporal stability, the report
    scale/     spreading folder and video jobs over Ray workers (optional extra; docs/scale-out.md)
    bench/     the benchmarks (`make bench`, `make bench-temporal`, `make bench-scale`); not part of the API

Before the library was grouped into these sub-packages every module sat directly in ``pipeline/``.
Code written against those paths (``from pipeline.optimize import Stylizer``,
``from pipeline.stability import warping_errors``) keeps working: the old names below are aliases
of the new modules, resolved on first import so that ``import pipeline`` itself stays instant.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# Old module path -> where it lives now.
MOVED_MODULES = {
    "pipeline.weights": "pipeline.engine.weights",
    "pipeline.features": "pipeline.engine.features",
    "pipeline.losses": "pipeline.engine.losses",
    "pipeline.style": "pipeline.engine.style",
    "pipeline.optimize": "pipeline.engine.optimize",
    "pipeline.color": "pipeline.engine.color",
    "pipeline.device": "pipeline.engine.device",
    "pipeline.images": "pipeline.media.images",
    "pipeline.video": "pipeline.media.video",
    "pipeline.image_sequence": "pipeline.media.image_sequence",
    "pipeline.flow": "pipeline.media.flow",
    "pipeline.folder": "pipeline.jobs.folder",
    "pipeline.folder_plan": "pipeline.jobs.folder_plan",
    "pipeline.video_job": "pipeline.jobs.video",
    "pipeline.video_resume": "pipeline.jobs.video_resume",
    "pipeline.temporal": "pipeline.jobs.temporal",
    "pipeline.stability": "pipeline.jobs.stability",
    "pipeline.bench_quality": "pipeline.bench.quality",
    "pipeline.bench_temporal": "pipeline.bench.temporal",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old module path as the very module object at its new path (one module, two names)."""

    def __init__(self):
        self._own_specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(MOVED_MODULES[spec.name])
        self._own_specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # The import system stamped the alias's spec on the module; give it back its own, so that
        # the module keeps one identity (its __name__ and __spec__ name its new path).
        module.__spec__ = self._own_specs.pop(module.__name__)

if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
