"""Reading back the frames of a video with their alpha, as `VideoWriter` writes them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np


def rgba_frames(path: Path) -> Iterator[np.ndarray]:
    """[H, W, 4] uint8 RGBA frames of the video at `path`; alpha 255 where the video has none.

    FFmpeg's own VP9 decoder drops the alpha that WebM carries beside each frame, so VP9 is decoded with
    libvpx, which reads it (as browsers do); other codecs (ProRes 4444, H.264) decode as they are.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoder = av.CodecContext.create("libvpx-vp9", "r") if stream.codec_context.name == "vp9" else None
        for packet in container.demux(stream):  # the last, empty packet flushes the decoder
            for frame in decoder.decode(packet) if decoder is not None else packet.decode():
                yield frame.to_ndarray(format="rgba")
