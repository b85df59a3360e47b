"""Benchmarks (not part of the library's API): speed (`make bench`), quality against pastiche and the
schedule study (`python -m bench --compare-pastiche | --schedule-study`), and temporal
stability (`make bench-temporal`), and Ray workers against one process with the hand-over seams of a
distributed video (`make bench-scale`). Each writes a JSON report to bench-results/."""
