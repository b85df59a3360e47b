"""The jobs: sources -> stylizer -> sinks, with resume and progress events.

common.py holds what every job shares and the single-image job; folder.py (+ folder_plan.py) the
photo-folder job; video.py (+ video_resume.py, temporal.py) the video job; stability.py the
warping-error report.
"""
