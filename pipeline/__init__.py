"""Neural style transfer for videos and photo folders: the library (no printing, no CLI).

The tree is the map (docs/design.md has the picture):

    config.py, errors.py, events.py   the vocabulary every stage shares
    engine/    VGG19 weights and features, losses, style targets, the per-image optimisation
    media/     images, video (PyAV), frame folders, optical flow
    jobs/      the single-image, folder and video jobs, resume, temporal stability, the report
    scale/     executors that run a job's work: in this process, or on Ray workers (docs/scale-out.md)
"""
