"""Media I/O: images (EXIF, modes, alpha, 16-bit, atomic saving), video decode/encode/remux with PyAV,
numbered-frame folders, and optical flow between frames (OpenCV DIS)."""
