"""The frames of a driven clip, computed ahead of the playhead in a worker thread.

For each frame the server deforms the avatar: the model in batches of `BATCH` frames (one hash-grid lookup and
one attention per batch), then the head moved into the avatar frame with its torso (`FittedHead.in_avatar_frame`),
widened and packed (`widened`, `pack_splats`) for the browser to draw, or kept as Gaussians to draw on the server
(`viewers.server_render`). Frames are kept up to `capacity`; those furthest behind the playhead go first. Playing
waits until enough frames are ready that the rest are computed before the playhead reaches them
(`frames_to_buffer`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Generic, Literal, TypeVar

import matplotlib
import numpy as np
import torch

from avatar.drive.driver import FittedHead
from avatar.drive.video import DrivenClip
from avatar.model.gaussians import GaussianSet
from avatar.render import EPS2D
from viewers.splat_buffer import pack_splats

ColorMode = Literal["colour", "audio", "eye", "view", "null"]
TOKENS: tuple[ColorMode, ...] = ("audio", "eye", "view", "null")  # the attention's keys, in the model's order
MIN_ATTENTION_SCALE = 0.05  # an attention map's colours span 0 .. max(this, the frame's largest weight)
TORSO_GREY = 0.5  # the torso has no attention: drawn grey in an attention map
BATCH = 8
T = TypeVar("T")
SPLAT_CAPACITY = 1500  # frames of splat buffers kept (about 0.5 MB each for 15 000 Gaussians)
AVATAR_CAPACITY = 250  # frames of Gaussians kept for server drawing (about 0.9 MB each)
AVATAR_LOOKAHEAD = 2 * BATCH  # server drawing: frames computed ahead of the playhead, so that deforming
# does not take the cores the drawing needs


def attention_colors(weights: torch.Tensor, mode: ColorMode) -> torch.Tensor:
    """[N, heads, 4] attention of the head's Gaussians -> [N, 3] RGB: the weight of `mode`'s token, averaged
    over the heads, through matplotlib's viridis from dark blue (no weight) to yellow (the frame's largest,
    at least `MIN_ATTENTION_SCALE`: weights spread over four tokens rarely come near 1)."""
    weight = weights.mean(dim=1)[:, TOKENS.index(mode)].clamp(0, 1)
    scaled = (weight / max(float(weight.max()), MIN_ATTENTION_SCALE)).cpu().numpy()
    return torch.from_numpy(matplotlib.colormaps["viridis"](scaled)[:, :3]).float()


@torch.no_grad()
def frame_avatars(clip: DrivenClip, frames: np.ndarray, mode: ColorMode = "colour") -> list[GaussianSet]:
    """The avatars of `clip`'s `frames` [B] (avatar frame, metres), coloured by the Gaussians' own colours or by
    one token's attention (`attention_colors`)."""
    fitted = clip.fitted
    driver = fitted.driver
    conditions = clip.signals.conditions(frames, window=driver.model.window, device=driver.device)
    heads, attention = driver.model(conditions, mouth_scale=clip.mouth_scale * clip.articulation_gain)
    avatars = []
    for b, index in enumerate(frames):
        avatar = fitted.in_avatar_frame(heads[b], torch.from_numpy(clip.head_poses[index]))
        if mode != "colour" and attention is not None:
            head_colors = attention_colors(attention[b], mode).to(avatar.colors)
            rest = torch.full((avatar.num - heads[b].num, 3), TORSO_GREY).to(avatar.colors)
            avatar = replace(avatar, colors=torch.cat([head_colors, rest]))
        avatars.append(GaussianSet(*(value.detach() for value in vars(avatar).values())))
    return avatars


def render_footprint(fitted: FittedHead, means: torch.Tensor) -> torch.Tensor:
    """[N, 3] centres in the avatar frame (metres) -> [N] variance in metres^2 of the rasterizer's low-pass
    (`EPS2D` px^2) at the pixel density `avatar render` draws the bust at, seen from the capture's camera.

    Gaussians fitted at that density may be smaller than a pixel and leave gaps between them that the low-pass
    fills; a browser drawing them at its screen's density would show them as dots. With this variance added in
    3D they cover at any density what they covered in the render."""
    focal = float(fitted.bust_intrinsics(fitted.dataset.tracking.intrinsics)[0, 0])
    pose = torch.as_tensor(fitted.avatar_pose, dtype=means.dtype, device=means.device)
    depth = (means @ pose[:3, :3].T + pose[:3, 3])[:, 2].clamp_min(1e-3)
    return EPS2D * (depth / focal) ** 2


def widened(fitted: FittedHead, avatar: GaussianSet) -> GaussianSet:
    """`avatar` with `render_footprint` added to each Gaussian's covariance (R S^2 R^T + v I: each scale s
    becomes sqrt(s^2 + v))."""
    variance = render_footprint(fitted, avatar.means)
    return replace(avatar, scales=torch.sqrt(avatar.scales**2 + variance[:, None]))


def frame_splats(clip: DrivenClip, frames: np.ndarray, mode: ColorMode = "colour") -> list[np.ndarray]:
    """The [N, 8] uint32 splat buffers (viewer units) of `frame_avatars`, `widened`."""
    return [pack_splats(widened(clip.fitted, avatar)) for avatar in frame_avatars(clip, frames, mode)]


def frames_to_buffer(remaining: int, frames_per_second: float, computed_per_second: float) -> int:
    """How many frames must be ready before playing `remaining` frames at `frames_per_second`, when the rest
    are computed at `computed_per_second`, so that none arrives after its time (at least one)."""
    if remaining <= 0:
        return 0
    if computed_per_second <= 0:
        return remaining
    shortfall = remaining * (1.0 - computed_per_second / frames_per_second)
    return int(min(remaining, max(1, np.ceil(shortfall))))


class ClipFrames(Generic[T]):
    """What one driven clip's frames are drawn from (splat buffers, or avatars to draw on the server), filled by
    a worker thread from a cursor (`seek`) to the end."""

    def __init__(
        self,
        clip: DrivenClip,
        mode: ColorMode = "colour",
        *,
        capacity: int = SPLAT_CAPACITY,
        lookahead: int | None = None,
        compute: Callable[[DrivenClip, np.ndarray, ColorMode], list[T]] = frame_splats,
    ):
        self.clip = clip
        self.mode = mode
        self.capacity = max(capacity, 2 * BATCH)
        self.lookahead = self.capacity if lookahead is None else min(max(lookahead, BATCH), self.capacity)
        self._compute = compute
        self._frames: dict[int, T] = {}
        self._cursor = 0
        self._playhead = 0
        self._rate = 0.0  # frames computed a second, measured
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._stopped = False
        self._worker = threading.Thread(target=self._work, name="avatar-view-frames", daemon=True)
        self._worker.start()

    @property
    def count(self) -> int:
        return self.clip.count

    @property
    def computed_per_second(self) -> float:
        return self._rate

    def get(self, index: int) -> T | None:
        """Frame `index`'s item if it is ready."""
        with self._changed:
            return self._frames.get(index)

    def seek(self, index: int) -> None:
        """Compute from frame `index` on (and keep the frames near it)."""
        with self._changed:
            self._playhead = self._cursor = int(np.clip(index, 0, self.count - 1))
            self._changed.notify_all()

    def played(self, index: int) -> None:
        """The playhead is at frame `index`: frames before it may make room for those after."""
        with self._changed:
            if index != self._playhead:
                self._playhead = index
                self._changed.notify_all()

    def wait(self, index: int, timeout: float | None = None) -> T | None:
        """Frame `index`'s item, computing it next if it is not ready; None after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            if index not in self._frames:
                self._playhead = self._cursor = index
                self._changed.notify_all()
            while index not in self._frames:
                self._raise_error()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._changed.wait(left)
            return self._frames[index]

    def ready_from(self, index: int) -> int:
        """How many consecutive frames from `index` on are ready."""
        with self._changed:
            self._raise_error()
            return self._ready_from_locked(index)

    def close(self) -> None:
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        self._worker.join(timeout=10)

    def _ready_from_locked(self, index: int) -> int:
        count = 0
        while index + count < self.count and index + count in self._frames:
            count += 1
        return count

    def _raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError("computing the avatar's frames failed") from self._error

    def _next_batch(self) -> np.ndarray | None:
        start = max(self._cursor, self._playhead)  # never behind the playhead: those frames are done with
        while start < self.count and start in self._frames:
            start += 1
        stop = min(start + BATCH, self.count, self._playhead + self.lookahead)
        ahead = [i for i in range(start, stop) if i not in self._frames]
        if not ahead:
            return None
        behind = sorted(i for i in self._frames if i < self._playhead)
        ahead = ahead[: self.capacity - len(self._frames) + len(behind)]
        if not ahead:
            return None  # full of frames still to be played
        for i in behind[: max(0, len(self._frames) + len(ahead) - self.capacity)]:
            del self._frames[i]
        return np.array(ahead)

    def _work(self) -> None:
        while True:
            with self._changed:
                batch = None
                while not self._stopped and (batch := self._next_batch()) is None:
                    self._changed.wait()
                if self._stopped:
                    return
            started = time.monotonic()
            try:
                items = self._compute(self.clip, batch, self.mode)
            except BaseException as error:  # reported to whoever waits for a frame
                with self._changed:
                    self._error = error
                    self._changed.notify_all()
                return
            elapsed = max(time.monotonic() - started, 1e-6)
            with self._changed:
                rate = len(batch) / elapsed
                self._rate = rate if self._rate == 0 else 0.7 * self._rate + 0.3 * rate
                self._frames.update(zip(batch.tolist(), items))
                self._changed.notify_all()
