"""pipeline/media/video.py: probing, decoding, encoding with exact timestamps, audio/subtitle carry-over.

The clips are generated here with PyAV: tiny, with or without sound, odd sizes, variable frame rate.
``make_video`` is also used by the job and CLI tests.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from pipeline.config import EncodeConfig
from pipeline.errors import ConfigError, InputError
from pipeline.media.video import FrameWindow, VideoWriter, decode_frames, probe

MS = Fraction(1, 1000)


def make_video(path: Path, *, width=48, height=32, frames=8, vfr=False, audio=True, audio_codec="aac",
               options=None, seed=0, rotation=0, keyframe_every=None) -> list[int]:
    """Write a small test clip; return its frame times in milliseconds.

    Frames are 40 ms apart (25 fps) or, with ``vfr``, alternately 40 and 80 ms apart. Each frame
    is different (a moving gradient plus noise) so that frame-order mistakes show. ``rotation``:
    a display matrix turning the picture that many degrees counter-clockwise, as phones write.
    """
    container = av.open(str(path), "w", options=options or {})
    video = container.add_stream("libx264", rate=25)
    if rotation:
        video.set_display_rotation(rotation)
    # 4:2:0 cannot hold odd sizes; 4:4:4 can, which gives the odd-sized inputs phones and crops make.
    video.width, video.height = width, height
    video.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    video.time_base = video.codec_context.time_base = MS
    if keyframe_every:
        video.codec_context.gop_size = keyframe_every
    sound = None
    if audio:
        sound = container.add_stream(audio_codec, rate=48000)
        sound.layout = "mono"
    rng = np.random.default_rng(seed)
    times, t = [], 0
    for i in range(frames):
        y, x = np.mgrid[0:height, 0:width]
        base = ((x * 4 + y * 2 + i * 25) % 256).astype(np.uint8)
        rgb = np.stack([base, 255 - base, np.full_like(base, (i * 30) % 256)], -1)
        rgb = np.clip(rgb.astype(int) + rng.integers(-8, 8, rgb.shape), 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = t, MS
        for packet in video.encode(frame):
            container.mux(packet)
        times.append(t)
        t += 80 if vfr and i % 2 else 40
    for packet in video.encode():
        container.mux(packet)
    if sound is not None:
        _write_tone(container, sound, t)
    container.close()
    return times


def add_subtitles(video: Path, out: Path) -> None:
    """Remux ``video`` with a one-line SubRip subtitle track into ``out`` (an .mkv)."""
    srt = out.with_suffix(".srt")
    srt.write_text("1\n00:00:00,000 --> 00:00:00,100\nHello\n\n")
    with av.open(str(video)) as src, av.open(str(srt)) as subs, av.open(str(out), "w") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams}
        sub_out = dst.add_stream_from_template(subs.streams.subtitles[0])
        for packet in src.demux():
            if packet.size:
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
        for packet in subs.demux():
            if packet.size:
                packet.stream = sub_out
                dst.mux(packet)


def _write_tone(container, stream, milliseconds: int) -> None:
    total = 48000 * milliseconds // 1000
    position = 0
    while position < total:
        n = min(1024, total - position)
        wave = (0.3 * np.sin(np.arange(position, position + n) * 0.05)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, position
        for packet in stream.encode(frame):
            container.mux(packet)
        position += n
    for packet in stream.encode():
        container.mux(packet)


def two_shot_video(path: Path, frames_a: int, frames_b: int, size=(48, 32)) -> list[int]:
    """Shot A (dark, drifting) then shot B (bright, another picture), 25 fps, with sound; returns the
    frames' times in ms. Each shot is a camera panning one pixel a frame over a smooth picture (flow
    that is easy to follow), and the change of shot is a scene cut by any measure."""
    from tests.conftest import pattern

    width, height = size
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=25)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = video.codec_context.time_base = MS
    sound = container.add_stream("aac", rate=48000)
    sound.layout = "mono"
    dark = pattern(width + frames_a, height, seed=1) // 3
    bright = 150 + pattern(width + frames_b, height, seed=5) // 3
    times = []
    for i in range(frames_a + frames_b):
        rgb = dark[:, i : i + width] if i < frames_a else bright[:, i - frames_a : i - frames_a + width]
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = i * 40, MS
        times.append(i * 40)
        for packet in video.encode(frame):
            container.mux(packet)
    for packet in video.encode():
        container.mux(packet)
    _write_tone(container, sound, (frames_a + frames_b) * 40)
    container.close()
    return times


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [round(float(f.time), 4) for f in c.decode(video=0)]


def audio_seconds(path: Path) -> float:
    """Duration of the first audio stream, summed over its packets."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        return sum(float(p.duration * p.time_base) for p in c.demux(stream) if p.size)


def copy_frames(info, path: Path, shift=0.0, **options) -> list[str]:
    notes: list[str] = []
    encode = EncodeConfig(**{"codec": "libx264", "preset": "ultrafast", **options})
    writer = VideoWriter(path, info, encode, shift=shift, on_notice=notes.append)
    for frame in decode_frames(info):
        writer.write(255 - frame.rgb, frame.pts)
    writer.finish(float(info.end_pts * info.time_base) if info.end_pts is not None else float("inf"))
    return notes


def test_probe_counts_frames_in_range(tmp_path):
    path = tmp_path / "in.mp4"
    times = make_video(path, frames=10, vfr=True)
    info = probe(path)
    assert info.frames == 10 and (info.width, info.height) == (48, 32) and info.audio_streams == 1
    assert [round(float(p * info.time_base) * 1000) for p in info.frame_pts] == times
    assert info.end_pts is None
    windowed = probe(path, FrameWindow(start=0.1, duration=0.3))
    assert round(float(windowed.end_pts * info.time_base) * 1000) == min(t for t in times if t >= 400)
    assert [round(float(p * info.time_base) * 1000) for p in windowed.frame_pts] == [t for t in times
                                                                                     if 100 <= t < 400]
    assert probe(path, FrameWindow(max_frames=3)).frames == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("not a video at all\n" * 50), "not a readable video"),
    ],
)
def test_probe_rejects_bad_files(tmp_path, make, message):
    path = tmp_path / "bad.mp4"
    make(path)
    with pytest.raises(InputError, match=message):
        probe(path)


@pytest.mark.parametrize("name, fmt", [("photo.jpg", "JPEG"), ("photo.png", "PNG"), ("photo.mp4", "PNG")])
def test_probe_refuses_a_still_image(tmp_path, name, fmt):
    """FFmpeg reads a photo as a one-frame video (image2, or png_pipe when the name says nothing):
    stylize-video would make a one-frame clip of it, so it is refused with the command that fits."""
    path = tmp_path / name
    Image.new("RGB", (40, 30), (200, 80, 20)).save(path, format=fmt)
    with pytest.raises(InputError, match=f"{name}: a still image, not a video \\(stylize-images"):
        probe(path)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_phone_rotation_is_applied_on_decode(tmp_path, rotation):
    make_video(tmp_path / "plain.mp4", audio=False, frames=3)
    make_video(tmp_path / "turned.mp4", audio=False, frames=3, rotation=rotation)
    plain, turned = probe(tmp_path / "plain.mp4"), probe(tmp_path / "turned.mp4")
    assert plain.rotation == 0 and turned.rotation == rotation % 360
    quarter = rotation % 180 != 0
    assert (turned.width, turned.height) == ((32, 48) if quarter else (48, 32))
    for a, b in zip(decode_frames(plain), decode_frames(turned), strict=True):
        # The same pixels, turned counter-clockwise by the display angle (what players show).
        assert np.array_equal(np.rot90(a.rgb, k=rotation // 90), b.rgb)
        assert b.rgb.shape == (turned.height, turned.width, 3)


def test_a_range_of_frames_decodes_as_in_the_whole_clip(tmp_path):
    """A worker decodes only its chunk: decode_frames seeks to the keyframe before the first wanted
    frame (past 0.5 s) and must then give exactly the frames a decode from the start gives."""
    import dataclasses

    src = tmp_path / "in.mp4"
    make_video(src, frames=60, keyframe_every=10, audio=False)
    with av.open(str(src)) as c:
        keyframes = sum(1 for p in c.demux(video=0) if p.is_keyframe)
    assert keyframes >= 5  # else nothing here would seek past a keyframe
    info = probe(src, FrameWindow())
    whole = [f.rgb for f in decode_frames(info)]
    for first, end in [(33, 41), (50, 60), (20, 21), (0, 3)]:
        part = list(decode_frames(dataclasses.replace(info, frame_pts=info.frame_pts[first:end])))
        assert [f.pts for f in part] == list(info.frame_pts[first:end])
        assert all(np.array_equal(a.rgb, b) for a, b in zip(part, whole[first:end]))


def test_probe_rejects_audio_only_and_empty_range(tmp_path):
    sound = tmp_path / "sound.m4a"
    with av.open(str(sound), "w") as c:
        stream = c.add_stream("aac", rate=48000)
        stream.layout = "mono"
        _write_tone(c, stream, 200)
    with pytest.raises(InputError, match="no video stream"):
        probe(sound)
    clip = tmp_path / "in.mp4"
    make_video(clip, frames=4)
    with pytest.raises(InputError, match="no video frames in the chosen range"):
        probe(clip, FrameWindow(start=10))


def test_truncated_file_is_reported_not_shortened(tmp_path):
    whole = tmp_path / "whole.mp4"
    make_video(whole, frames=20, audio=False, options={"movflags": "+faststart"})
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    info = probe(cut)
    assert info.damage and "declares 20 frames" in info.damage
    # Where the error surfaces depends on the decoder's frame threads; either way it is an error.
    with pytest.raises(InputError, match="could not be decoded|decoding failed"):
        for _ in decode_frames(info):
            pass
    # Without its index at the front, a cut MP4 cannot be opened at all.
    late = tmp_path / "late.mp4"
    make_video(late, frames=20, audio=False)
    data = late.read_bytes()
    late.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not a readable video"):
        probe(late)


def test_writer_keeps_variable_timestamps_and_copies_audio(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    times = make_video(src, width=47, height=33, frames=9, vfr=True)  # odd size: stored as 46x32
    info = probe(src)
    notes = copy_frames(info, out)
    assert notes == []
    assert frame_times(out) == [t / 1000 for t in times]
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (46, 32)
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
        assert c.streams.audio[0].codec_context.name == "aac"
    assert audio_seconds(out) == pytest.approx(audio_seconds(src), abs=0.03)


def test_writer_odd_output_size_is_made_even(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mkv"
    make_video(src, frames=3, audio=False)
    info = probe(src)
    copy_frames(info, out, output_size=33)  # 48x32 -> 33x22 -> 32x22
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.width, cc.height) == (32, 22)
    assert len(frame_times(out)) == 3


def test_writer_range_starts_at_zero_with_its_audio(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_video(src, frames=12)
    info = probe(src, FrameWindow(start=0.2, max_frames=5))  # frames at 0.20 .. 0.36 s
    copy_frames(info, out, shift=0.2)
    assert frame_times(out) == [0.0, 0.04, 0.08, 0.12, 0.16]
    assert audio_seconds(out) == pytest.approx(0.2, abs=0.03)


def test_writer_reencodes_audio_the_container_refuses(tmp_path):
    src, out = tmp_path / "in.mp4", tmp_path / "out.webm"  # webm takes no AAC
    make_video(src, frames=6)
    notes = copy_frames(probe(src), out, codec="libvpx-vp9")
    assert any("re-encoding" in n and "aac" in n for n in notes)
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"
    assert len(frame_times(out)) == 6
    assert audio_seconds(out) == pytest.approx(0.24, abs=0.03)


def test_writer_drops_subtitles_it_cannot_store_and_says_so(tmp_path):
    plain, src, out = tmp_path / "plain.mp4", tmp_path / "in.mkv", tmp_path / "out.mp4"  # no SubRip in MP4
    make_video(plain, frames=3)
    add_subtitles(plain, src)
    notes = copy_frames(probe(src), out)
    assert any("subtitle" in n and "dropped" in n for n in notes)
    keep = tmp_path / "out.mkv"
    assert copy_frames(probe(src), keep) == []
    with av.open(str(keep)) as c:
        assert len(c.streams.subtitles) == 1 and len(c.streams.audio) == 1


def test_writer_refuses_a_codec_the_container_cannot_hold(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, frames=2, audio=False)
    with pytest.raises(ConfigError, match="EncodeConfig.codec libx264 cannot be stored"):
        VideoWriter(tmp_path / "out.webm", probe(src), EncodeConfig(codec="libx264", preset=None), shift=0.0)
    with pytest.raises(ConfigError, match="EncodeConfig.codec no-such-codec: not available"):
        VideoWriter(tmp_path / "out.mkv", probe(src), EncodeConfig(codec="no-such-codec", preset=None), shift=0.0)
    with pytest.raises(ConfigError, match="EncodeConfig.pix_fmt nv-nothing: not usable with libx264"):
        VideoWriter(tmp_path / "out.mkv", probe(src), EncodeConfig(pix_fmt="nv-nothing"), shift=0.0)
    # An audio or subtitle encoder as the video codec: one line, not PyAV's TypeError from add_stream.
    for codec, kind in (("aac", "audio"), ("srt", "subtitle")):
        with pytest.raises(ConfigError, match=f"EncodeConfig.codec {codec} encodes {kind}, not video"):
            VideoWriter(tmp_path / "out.mkv", probe(src), EncodeConfig(codec=codec, preset=None), shift=0.0)
