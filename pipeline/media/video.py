"""Video files with PyAV: probe, decode frames, encode frames and carry the other streams over.

Timing is kept exact by working in the input video stream's own time base: every output frame gets
the pts of the input frame it came from (variable frame rate survives), and audio / subtitle packets
are copied as they are (remuxed) when the output container can hold their codec.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
from av.audio.codeccontext import AudioCodecContext
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

from pipeline.config import EncodeConfig
from pipeline.errors import ConfigError, InputError, setting
from pipeline.media.common import Size, check_input_file
from pipeline.media.image_sequence import decode_folder, probe_folder

# Per-codec defaults: (crf, pixel format). yuv420p plays everywhere; ffv1 keeps RGB (lossless).
CODEC_DEFAULTS: dict[str, tuple[int | None, str]] = {
    "libx264": (18, "yuv420p"),
    "libx265": (20, "yuv420p"),
    "libvpx-vp9": (30, "yuv420p"),
    "ffv1": (None, "bgr0"),
}
PRESET_CODECS = ("libx264", "libx265")
# When an audio codec cannot go into the output container, re-encode it to the first of these that fits.
AUDIO_FALLBACKS = ("aac", "libopus", "opus", "flac", "pcm_s16le")


@dataclass(frozen=True)
class VideoInfo:
    """What the job needs to know about an input before decoding it."""

    path: Path
    width: int
    height: int
    time_base: Fraction  # of the video stream; frame pts are counted in it
    rate: Fraction  # average frame rate (a guess for variable-rate inputs)
    frame_pts: tuple[int, ...]  # presentation times of the frames in the chosen range, sorted
    audio_streams: int = 0
    subtitle_streams: int = 0
    codec: str = ""
    damage: str | None = None  # why reading packets stopped early, when it did
    end_pts: int | None = None  # first frame after the range; None when the range runs to the end
    # Degrees counter-clockwise the stored picture is turned for display (phones film sideways and
    # say so in a display matrix). Decoded frames are already turned; width and height are upright.
    rotation: int = 0

    @property
    def frames(self) -> int:
        return len(self.frame_pts)


@dataclass
class FrameWindow:
    """Which frames to take: [start, start + duration) seconds, at most max_frames of them."""

    start: float = 0.0
    duration: float | None = None
    max_frames: int | None = None

    def contains(self, seconds: float) -> bool:
        return seconds >= self.start - 1e-9 and (self.duration is None or seconds < self.start + self.duration - 1e-9)


def _open_input(path: Path) -> InputContainer:
    check_input_file(path, "a video file")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as exc:
        raise InputError(f"{path}: not a readable video ({_reason(exc)})") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: has no video stream")
    # FFmpeg opens a photo as a one-frame video (demuxer image2, or *_pipe without an extension);
    # stylizing it that way would only make a one-frame clip, so say which command fits.
    if container.format.name == "image2" or container.format.name.endswith("_pipe"):
        container.close()
        raise InputError(f"{path}: a still image, not a video (stylize-images takes photos; "
                         "a folder of numbered frames is read as a video)")
    return container


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def probe(path: str | Path, window: FrameWindow | None = None, fps: float = 25.0) -> VideoInfo:
    """Open ``path`` and count the frames in ``window`` by reading packets (no decoding: fast).

    A folder is read as a sequence of numbered frames at ``fps``."""
    path, window = Path(path), window or FrameWindow()
    if path.is_dir():
        return VideoInfo(path=path, codec="image sequence", **probe_folder(path, fps, window))
    container = _open_input(path)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base or Fraction(1, 90000)
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        pts: list[int] = []
        all_pts: list[int] = []
        index, damage = 0, None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the demuxer's end-of-stream marker
                # Raw streams may carry no timestamps: then the frame rate decides.
                p = packet.pts if packet.pts is not None else round(index / rate / tb)
                index += 1
                all_pts.append(p)
                if window.contains(float(p * tb)):
                    pts.append(p)
        except av.error.FFmpegError as exc:
            if not pts:
                raise InputError(f"{path}: unreadable video ({_reason(exc)})") from None
            # Keep what came before the damage: the job can stop before it (--duration).
            damage = f"unreadable after {index} frames ({_reason(exc)})"
        if damage is None and stream.frames and index < stream.frames:
            damage = f"it declares {stream.frames} frames but only {index} can be read (truncated?)"
        pts.sort()
        if window.max_frames is not None:
            pts = pts[: window.max_frames]
        later = [p for p in all_pts if pts and p > pts[-1]]
        cc = stream.codec_context
        if not cc.width or not cc.height:
            raise InputError(f"{path}: video stream has no picture size (damaged header?)")
        if not pts:
            where = "" if window.start == 0 and window.duration is None else " in the chosen range"
            raise InputError(f"{path}: no video frames{where}")
        rotation = display_rotation(path)
        width, height = (cc.height, cc.width) if rotation in (90, 270) else (cc.width, cc.height)
        return VideoInfo(path=path, width=width, height=height, time_base=Fraction(tb), rate=Fraction(rate),
                         frame_pts=tuple(pts), audio_streams=len(container.streams.audio),
                         subtitle_streams=len(container.streams.subtitles), codec=cc.name, damage=damage,
                         end_pts=min(later) if later else None, rotation=rotation)
    finally:
        container.close()


def display_rotation(path: Path) -> int:
    """0, 90, 180 or 270: how far the first frame's display matrix turns it counter-clockwise.

    FFmpeg hands the matrix to decoded frames, not to the stream, so one frame is decoded. Angles
    between quarter turns do not occur in practice and are rounded to the nearest one.
    """
    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(container.streams.video[0]), None)
    except av.error.FFmpegError:
        return 0  # decoding reports the damage where it happens, with the frame's time
    return frame_rotation(frame) if frame is not None else 0


def frame_rotation(frame: av.VideoFrame) -> int:
    """A decoded frame's display rotation as 0, 90, 180 or 270 degrees counter-clockwise."""
    return round((frame.rotation or 0) / 90) % 4 * 90


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded picture turned as its display matrix says (np.rot90 turns counter-clockwise)."""
    if rotation == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=rotation // 90))


@dataclass
class DecodedFrame:
    pts: int
    rgb: np.ndarray  # [H, W, 3] uint8


def decode_frames(info: VideoInfo) -> Iterator[DecodedFrame]:
    """The frames whose pts ``probe`` listed, in order. A frame that cannot be decoded raises
    InputError naming its time, so a damaged file never turns silently into a shorter video."""
    wanted = info.frame_pts
    if info.path.is_dir():
        frames = decode_folder(info.path, wanted, Size(width=info.width, height=info.height))
        for pts, rgb in zip(wanted, frames, strict=True):
            yield DecodedFrame(pts=pts, rgb=rgb)
        return
    container = _open_input(info.path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        first = float(wanted[0] * info.time_base)
        if first > 0.5:  # seek close to the first wanted frame instead of decoding from the start
            container.seek(wanted[0], stream=stream, backward=True, any_frame=False)
        pending = iter(wanted)
        expected = next(pending)
        index = 0
        try:
            for frame in container.decode(stream):
                p = frame.pts if frame.pts is not None else round(index / info.rate / info.time_base)
                index += 1
                if p < expected:
                    continue  # before the range (after a seek) or a frame probe left out
                if p > expected:
                    raise InputError(f"{info.path}: the frame at {float(expected * info.time_base):.3f} s "
                                     "could not be decoded (damaged file?)")
                yield DecodedFrame(pts=p, rgb=upright(frame.to_ndarray(format="rgb24"), info.rotation))
                following = next(pending, None)
                if following is None:
                    return
                expected = following
        except av.error.FFmpegError as exc:
            raise InputError(f"{info.path}: decoding failed at {float(expected * info.time_base):.3f} s "
                             f"({_reason(exc)})") from None
        raise InputError(f"{info.path}: the video ends early: the frame at {float(expected * info.time_base):.3f} s "
                         "and those after it could not be decoded (truncated file?)")
    finally:
        container.close()


def even_size(size: Size) -> Size:
    """4:2:0 and 4:2:2 pixel formats need even sizes: round odd sides down by one pixel."""
    return Size(width=size.width - size.width % 2, height=size.height - size.height % 2)


def output_size(info: VideoInfo, long_side: int | None, pix_fmt: str) -> Size:
    width, height = info.width, info.height
    if long_side is not None:
        scale = long_side / max(width, height)
        width, height = max(2, round(width * scale)), max(2, round(height * scale))
    size = Size(width=width, height=height)
    if pix_fmt.startswith(("yuv420", "yuv422", "yuvj420", "yuvj422", "nv12")):
        size = even_size(size)
    return size


@dataclass
class StreamPlan:
    """What happens to one non-video input stream: copied, re-encoded or dropped."""

    index: int
    kind: str
    action: str  # "copy", "encode", "drop"
    out: Stream | None = None  # "copy": the output stream the packets go into
    # "encode": the input's decoder, and the output's stream that encodes what it decodes
    decoder: AudioCodecContext | None = None
    encoder: AudioStream | None = None
    notes: list[str] = field(default_factory=list)


class VideoWriter:
    """Encodes RGB frames into ``path`` as ``encode`` says and carries over the input's audio and
    subtitles.

    Everything that can be refused (codec, container, sizes) is set up in the constructor, before
    any frame is stylized. ``shift`` (seconds) is taken off every timestamp, so a range that starts
    later in the input starts at 0 in the output.
    """

    def __init__(self, path: Path, info: VideoInfo, encode: EncodeConfig, *, shift: float,
                 on_notice: Callable[[str], None] = lambda _m: None):
        self.info, self.shift, self.notice = info, shift, on_notice
        codec = encode.codec
        default_crf, default_fmt = CODEC_DEFAULTS.get(codec, (None, "yuv420p"))
        pix_fmt = encode.pix_fmt or default_fmt
        self.size = output_size(info, encode.output_size, pix_fmt)
        try:
            self.container = av.open(str(path), "w")
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"{path.suffix or path.name}: no video container for this file name ({exc})") from None
        try:
            crf = encode.crf if encode.crf is not None else default_crf
            self.video = self._add_video(codec, crf, encode.preset, pix_fmt)
            self.source = None if info.path.is_dir() else av.open(str(info.path))  # a frame folder has no sound
            others: Iterable[Stream] = self.source.streams if self.source is not None else []
            self.plans = [self._plan(s) for s in others if s.type in ("audio", "subtitle")]
            self.container.start_encoding()  # writes the header: refusals surface now, not hours later
        except BaseException:
            self.abort()
            raise
        self._packets = self._source_packets()
        self._held: Packet | None = None  # a packet read ahead of the video
        self._video_shift = round(shift / info.time_base)

    # -- setup ---------------------------------------------------------------------------------

    def _add_video(self, codec: str, crf: int | None, preset: str | None, pix_fmt: str) -> VideoStream:
        named = f"{setting('EncodeConfig.codec')} {codec}"  # the CLI shows "--codec libx264"
        try:
            kind = av.codec.Codec(codec, "w").type
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"{named}: not available here ({exc})") from None
        if kind != "video":  # e.g. --codec aac: PyAV would fail deep inside add_stream
            raise ConfigError(f"{named} encodes {kind}, not video "
                              "(video encoders: libx264, libx265, libvpx-vp9, ffv1, ...)")
        if codec not in self.container.supported_codecs and _codec_id(codec) not in self.container.supported_codecs:
            raise ConfigError(f"{named} cannot be stored in a {self.container.format.name} file "
                              "(choose another codec or output extension)")
        try:
            # The stream's class follows the codec (PyAV's stubs know it only for names spelled out),
            # and the codec was checked to be a video encoder above.
            stream = cast(VideoStream, self.container.add_stream(codec, rate=self.info.rate))
        except (av.error.FFmpegError, ValueError) as exc:
            raise ConfigError(f"{named}: not available here ({exc})") from None
        stream.width, stream.height = self.size.width, self.size.height
        try:
            stream.pix_fmt = pix_fmt
        except (ValueError, av.error.FFmpegError) as exc:
            raise ConfigError(f"{setting('EncodeConfig.pix_fmt')} {pix_fmt}: not usable with {codec} ({exc})") from None
        # Same clock as the input: frame timestamps (also variable-rate ones) are copied exactly.
        stream.time_base = self.info.time_base
        stream.codec_context.time_base = self.info.time_base
        options: dict[str, object] = {}  # typed as Stream.options is
        if crf is not None:
            options["crf"] = str(crf)
            if codec == "libvpx-vp9":
                options["b"] = "0"  # constant quality mode
        if preset and codec in PRESET_CODECS:
            options["preset"] = preset
        if codec == "libx265":
            options["x265-params"] = "log-level=error"
        stream.options = options
        return stream

    def _plan(self, stream: Stream) -> StreamPlan:
        name = stream.codec_context.name
        plan = StreamPlan(index=stream.index, kind=stream.type, action="copy")
        fmt = self.container.format.name
        if name in self.container.supported_codecs:
            plan.out = self.container.add_stream_from_template(stream)
            return plan
        if isinstance(stream, AudioStream):  # PyAV's class for the streams of type "audio"
            for target in AUDIO_FALLBACKS:
                if target in self.container.supported_codecs or _codec_id(target) in self.container.supported_codecs:
                    try:
                        # An audio codec gives an AudioStream (see _add_video).
                        encoder = cast(AudioStream, self.container.add_stream(target,
                                                                              rate=stream.codec_context.sample_rate))
                    except (av.error.FFmpegError, ValueError):
                        continue
                    encoder.layout = stream.codec_context.layout
                    plan.action, plan.decoder, plan.encoder = "encode", stream.codec_context, encoder
                    self.notice(f"audio stream #{stream.index} ({name}) cannot be copied into a {fmt} file: "
                                f"re-encoding it as {target}")
                    return plan
        plan.action = "drop"
        self.notice(f"{stream.type} stream #{stream.index} ({name}) cannot be stored in a {fmt} file: dropped "
                    "(use an .mkv output to keep it)")
        return plan

    # -- writing -------------------------------------------------------------------------------

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Encode one frame (any size: it is resized to the output size) shown at input time ``pts``."""
        width, height = self.size.width, self.size.height
        if rgb.shape[1] != width or rgb.shape[0] != height:
            shrinking = rgb.shape[1] > width
            rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = pts - self._video_shift
        frame.time_base = self.info.time_base
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        # Interleave: bring the other streams up to this frame's time.
        self._copy_until(float(pts * self.info.time_base))

    def finish(self, end_seconds: float) -> None:
        """Flush the encoder, copy the other streams up to ``end_seconds`` (input time), close."""
        for packet in self.video.encode():
            self.container.mux(packet)
        self._copy_until(end_seconds)
        for plan in self.plans:
            if plan.encoder is not None:  # "encode"
                for packet in plan.encoder.encode():
                    self.container.mux(packet)
        self.container.close()
        if self.source is not None:
            self.source.close()

    def abort(self) -> None:
        for c in (getattr(self, "container", None), getattr(self, "source", None)):
            if c is not None:
                try:
                    c.close()
                except (av.error.FFmpegError, ValueError, OSError):
                    pass  # already failing: the first error is the one to report

    def _source_packets(self) -> Iterator[Packet]:
        kept = [p.index for p in self.plans if p.action != "drop"]
        if not kept or self.source is None:  # (a frame folder has no streams to keep)
            return iter(())
        streams = [self.source.streams[i] for i in kept]
        return (p for p in self.source.demux(streams) if p.size > 0 and p.pts is not None)

    def _copy_until(self, seconds: float) -> None:
        plans = {p.index: p for p in self.plans}
        while True:
            packet = self._held or next(self._packets, None)
            self._held = None
            if packet is None:
                return
            assert packet.pts is not None  # _source_packets keeps only packets that have one
            t = float(packet.pts * packet.time_base)
            if t >= seconds:
                self._held = packet
                return
            if t < self.shift - 1e-9:
                continue  # before the chosen range
            plan = plans[packet.stream.index]
            if plan.out is not None:  # "copy"
                offset = round(self.shift / packet.time_base)
                packet.pts -= offset
                if packet.dts is not None:
                    packet.dts -= offset
                packet.stream = plan.out
                self.container.mux(packet)
            elif plan.decoder is not None and plan.encoder is not None:  # "encode" (a dropped stream has no packets)
                for frame in plan.decoder.decode(packet):
                    if frame.time is not None:  # keep the sound where it was relative to the picture
                        rate = frame.sample_rate
                        frame.pts = max(0, round((frame.time - self.shift) * rate))
                        frame.time_base = Fraction(1, rate)
                    for out_packet in plan.encoder.encode(frame):
                        self.container.mux(out_packet)


def _codec_id(name: str) -> str:
    """The codec a named encoder produces (libx264 -> h264), as containers list them."""
    try:
        return av.codec.Codec(name, "w").canonical_name
    except (av.error.FFmpegError, ValueError, AttributeError):
        return name
