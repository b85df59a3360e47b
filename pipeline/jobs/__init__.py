"""The jobs: sources -> stylizer -> sinks, with resume and progress events.

common.py holds what every job shares and the single-image job; folder.py (+ folder_plan.py) the
photo-folder job; video.py (+ video_resume.py, temporal.py) the video job; stability.py the
warping-error report. The names below were importable as ``pipeline.jobs`` before the library was
grouped into sub-packages, and stay so.
"""

from pipeline.jobs.common import build_stylizer, check_output, file_digest, job_fingerprint, stylize_image_file

__all__ = ["build_stylizer", "check_output", "file_digest", "job_fingerprint", "stylize_image_file"]
