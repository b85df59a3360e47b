"""The jobs: sources -> stylizer -> sinks, with resume, locks and progress events.

A job owns its work: it cuts itself into work items and says how one item is done; an executor from
pipeline/scale runs the items, in this process or on Ray workers.

- common.py: what every job shares (the style check, building the Stylizer from a plain config, the
  options fingerprint, the output check); image.py: the single-image job.
- The photo-folder job: folder.py (the job), folder_plan.py (which files, where each output goes, the
  manifest), folder_work.py (the work function), folder_report.py (records, summary, JSON report).
- The video job: video.py (the job), video_chunks.py (shots and chunks, hand-overs),
  video_work.py (the work function), video_resume.py (the job folder that makes it resumable),
  video_report.py (``--report``), temporal.py (where each frame starts, the temporal term).
- stability.py: the warping-error report of a finished video; preview.py: preview sheets.
- lock.py: one job per output; write_errors.py: a full or read-only output disk stops the job.
"""
