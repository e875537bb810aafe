"""`avatar view`: a web page (viser) that plays a fitted avatar with audio, seen from anywhere.

By default the browser draws: the server deforms the avatar for each frame (`viewers.frames`) and sends its
splats; the browser's splat renderer draws them from whatever camera the person chooses, so moving the camera
costs no round trip. Measured on a 2-core CPU at 256 x 256 (docs/viewer.md): rasterizing a frame on the server
with the PyTorch reference takes 78 ms, deforming it 15 ms. For a browser without a GPU the server can draw
instead (`--draw-on server`, `viewers.server_render`): each frame from each page's camera, sent as an image.

Audio plays in the browser (viser-audio): pressing play starts the clip at the frame's time and the server's
frame clock in the same moment; a seek restarts both.

Threads: viser calls the GUI's callbacks in its own threads; they only change `_Playback` (under its lock) and
wake the player thread, which alone drives the clip, the frames and the audio. Exports run in a thread of
their own.
"""

from __future__ import annotations

import collections
import logging
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import viser
import viser_audio

from avatar.core.atomic import check_writable
from avatar.core.errors import AvatarError
from avatar.drive.background import COLOURS, Background, parse_background
from avatar.drive.blinks import BlinkMode
from avatar.drive.driver import FittedHead, load_fitted
from avatar.drive.video import DrivenClip, RenderConfig, drive_with_audio, render_video
from avatar.model.gaussians import GaussianSet
from viewers.camera import SCENE_UP, CameraRecorder, ViewerCamera, capture_camera
from viewers.config import DrawOn, ViewConfig
from viewers.frames import (
    AVATAR_CAPACITY,
    AVATAR_LOOKAHEAD,
    ClipFrames,
    ColorMode,
    frame_avatars,
    frames_to_buffer,
)
from viewers.media import IMAGE_SUFFIXES, MediaFolder, UploadInbox
from viewers.server_render import PageCamera, draw

_log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CAPTURE_AUDIO = "the capture's own audio"
UPLOADED = "uploaded: "
IMAGE = "image: "
COLOR_MODES: dict[str, ColorMode] = {
    "colour": "colour",
    "attention: audio": "audio",
    "attention: eye": "eye",
    "attention: view": "view",
    "attention: null": "null",
}
BACKGROUNDS = ("plate", "grey", "white", "black", "green", "blue", "transparent")
CHECKER = 16  # pixels of a square of the checkerboard shown behind a transparent avatar


def check_port_free(host: str, port: int) -> None:
    """AvatarError when `port` on `host` cannot be listened on (viser would quietly take the next one)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise AvatarError(
                f"cannot listen on {host}:{port} ({error.strerror or error})",
                fix=f"Pass another --port (or --port 0 for any free one), or stop what uses port {port}",
            ) from error


@dataclass(frozen=True)
class _Choice:
    """What the clip is made of."""

    audio: Path
    audio_label: str
    blink: BlinkMode = "capture"
    mouth_scale: float = 1.0
    color: ColorMode = "colour"
    draw_on: DrawOn = "browser"


class _Playback:
    """The state the GUI's callbacks change and the player thread acts on."""

    def __init__(self, choice: _Choice):
        self.lock = threading.Condition()
        self.choice = choice
        self.loaded: _Choice | None = None  # what `clip` and the clip's frames were made of
        self.time_s = 0.0  # the position while paused, or where the clock started
        self.playing = False
        self.play_requested = False
        self.clock_started = 0.0
        self.show_requested = True


class AvatarViewer:
    """A running `avatar view`: `url` to open, `close()` to stop. Everything the page offers is checked before
    the server starts (AvatarError)."""

    def __init__(self, config: ViewConfig):
        self.config = config
        self.media = _media_folder(config.media_dir)
        if not config.max_upload_mb > 0:
            raise AvatarError(f"--max-upload-mb {config.max_upload_mb} must be positive", fix="Pass e.g. 20")
        check_port_free(config.host, config.port)
        self.fitted: FittedHead = load_fitted(
            config.run, device=config.device, backend="torch", dataset=config.dataset
        )
        self.out = Path(config.out) if config.out is not None else Path(config.run) / "view"
        check_writable(self.out / "camera_path.json", flag="--out")
        if config.host not in LOOPBACK_HOSTS:
            print(
                f"warning: listening on {config.host}: other machines on the network can open this viewer and "
                "use its audio folder; pass --host 127.0.0.1 to keep it to this machine",
                file=sys.stderr,
            )
        dataset = self.fitted.dataset
        self.fps = float(dataset.fps)
        self.inbox = UploadInbox(
            int(config.max_upload_mb * 1e6), self.fitted.record.audio_features.sample_rate
        )
        self._uploads: dict[str, Path] = {}
        self.recorder = CameraRecorder()
        self._recorded = None
        self._closing = threading.Event()
        self._exporting = threading.Lock()
        self._clip: DrivenClip | None = None
        self._clip_frames: ClipFrames | None = None
        self._shown: collections.deque[tuple[float, int]] = collections.deque(maxlen=64)
        self._playback = _Playback(_Choice(dataset.layout.audio, CAPTURE_AUDIO, draw_on=config.draw_on))

        self.server = viser.ViserServer(
            host=config.host, port=config.port, label="splat-avatar", verbose=False
        )
        self.server.scene.set_up_direction("-y")
        self.server.scene.world_axes.visible = False
        self.audio = viser_audio.AudioApi(self.server)
        self._voice: viser_audio.AudioHandle | None = None
        self._splat_handle: viser.GaussianSplatHandle | None = None
        self.capture_camera = capture_camera(
            self.fitted.avatar_pose, float(dataset.tracking.intrinsics[0, 0]), dataset.size
        )
        initial = self.server.initial_camera
        initial.position, initial.look_at = self.capture_camera.position, self.capture_camera.look_at
        initial.up, initial.fov = self.capture_camera.up, self.capture_camera.fov
        self._client_aspects: dict[int, float] = {}
        self._background_square = self._background_image("plate")
        self._build_gui()
        self.server.on_client_connect(self._connected)
        self._player = threading.Thread(target=self._play_loop, name="avatar-view-player", daemon=True)
        self._player.start()

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.server.get_port()}"

    @property
    def delivered_fps(self) -> float:
        """Frames sent to the page a second over the last ~2 s of playing."""
        now = time.monotonic()
        recent = [t for t, _ in self._shown if now - t <= 2.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def close(self) -> None:
        self._closing.set()
        with self._playback.lock:
            self._playback.lock.notify_all()
        self._player.join(timeout=10)
        if self._clip_frames is not None:
            self._clip_frames.close()
        self.server.stop()
        self.inbox.close()

    # --- the page -------------------------------------------------------------------------------------

    def _build_gui(self) -> None:
        gui = self.server.gui
        gui.configure_theme(control_width="large")
        self._status = gui.add_markdown("loading the capture's audio ...")
        with gui.add_folder("Play"):
            self._audio_choice = gui.add_dropdown("audio", self._audio_options(), initial_value=CAPTURE_AUDIO)
            self._upload = gui.add_upload_button("upload audio", icon=viser.Icon.UPLOAD, mime_type="audio/*")
            self._play = gui.add_button("play", icon=viser.Icon.PLAYER_PLAY)
            self._pause = gui.add_button("pause", icon=viser.Icon.PLAYER_PAUSE)
            self._time = gui.add_slider("time (s)", 0.0, 1.0, 1.0 / self.fps, 0.0)
            self._frame = gui.add_number("frame", 0, disabled=True)
            self._fps = gui.add_number("frames/s", 0.0, disabled=True)
        with gui.add_folder("Avatar"):
            self._mouth = gui.add_slider("mouth scale", 0.0, 2.0, 0.05, 1.0)
            self._blink = gui.add_dropdown("blinks", ("capture", "none", "periodic"), initial_value="capture")
            self._color = gui.add_dropdown("show", tuple(COLOR_MODES), initial_value="colour")
            self._background = gui.add_dropdown(
                "background", self._background_options(), initial_value="plate"
            )
            self._draw_on = gui.add_dropdown(
                "draw on", ("browser", "server"), initial_value=self.config.draw_on
            )
        with gui.add_folder("Camera"):
            self._to_capture = gui.add_button("capture camera", icon=viser.Icon.CAMERA)
            self._record = gui.add_checkbox("record camera path", False)
            self._save_path = gui.add_button("save camera path", icon=viser.Icon.DEVICE_FLOPPY)
            self._export = gui.add_button("export video", icon=viser.Icon.MOVIE)
            self._export_progress = gui.add_progress_bar(0.0, visible=False)
        self._audio_choice.on_update(self._audio_chosen)
        self._upload.on_upload(self._uploaded)
        self._play.on_click(lambda _: self._request(play=True))
        self._pause.on_click(lambda _: self._request(play=False))
        self._time.on_update(self._seeked)
        self._mouth.on_update(lambda event: self._choose(event, mouth_scale=float(self._mouth.value)))
        self._blink.on_update(lambda event: self._choose(event, blink=self._blink.value))
        self._color.on_update(lambda event: self._choose(event, color=COLOR_MODES[self._color.value]))
        self._draw_on.on_update(lambda event: self._choose(event, draw_on=self._draw_on.value))
        self._background.on_update(
            lambda event: self._guarded(event, lambda: self._set_background(self._background.value))
        )
        self._to_capture.on_click(lambda event: self._move_to_capture(event.client))
        self._record.on_update(self._record_toggled)
        self._save_path.on_click(
            lambda event: self._guarded(event, lambda: self._save_camera_path(event.client))
        )
        self._export.on_click(self._export_clicked)

    def _audio_options(self) -> tuple[str, ...]:
        listed = self.media.audio_files() if self.media is not None else []
        return (CAPTURE_AUDIO, *listed, *self._uploads)

    def _background_options(self) -> tuple[str, ...]:
        images = self.media.image_files() if self.media is not None else []
        return (*BACKGROUNDS, *(IMAGE + name for name in images))

    def _connected(self, client: viser.ClientHandle) -> None:
        def moved(camera: viser.CameraHandle) -> None:
            self.recorder.moved(_viewer_camera(camera))
            if self._playback.choice.draw_on == "server":
                self._redraw()  # from the new camera
                return
            width, height = camera.image_width, camera.image_height
            if height > 0 and abs(width / height - self._client_aspects.get(client.client_id, 0.0)) > 1e-3:
                self._send_background(client)

        client.camera.on_update(moved)
        self._send_background(client)

    def _say(self, text: str) -> None:
        self._status.content = text

    def _guarded(self, event: viser.GuiEvent, action) -> None:
        """Runs a GUI action; an AvatarError is shown in the page instead of killing the callback."""
        try:
            action()
        except AvatarError as error:
            self._say(f"**error:** {error}")
            if event.client is not None:
                event.client.add_notification("splat-avatar", str(error), color="red", auto_close_seconds=10)

    def _audio_chosen(self, event: viser.GuiEvent) -> None:
        label = self._audio_choice.value

        def choose() -> None:
            if label == CAPTURE_AUDIO:
                path = self.fitted.dataset.layout.audio
            elif label in self._uploads:
                path = self._uploads[label]
            elif self.media is not None:
                path = self.media.resolve(label)
            else:
                raise AvatarError(
                    f"{label!r} is not an audio this viewer offers", fix="Choose one in the list"
                )
            self._choose(event, audio=path, audio_label=label)

        self._guarded(event, choose)

    def _uploaded(self, event: viser.GuiEvent) -> None:
        upload = self._upload.value

        def accept() -> None:
            path = self.inbox.accept(upload.name, upload.content)
            label = f"{UPLOADED}{Path(upload.name).name}"
            self._uploads[label] = path
            self._audio_choice.options = self._audio_options()
            self._audio_choice.value = label  # plays it (`_audio_chosen`)

        self._guarded(event, accept)

    def _choose(self, event: viser.GuiEvent | None, **changes) -> None:
        playback = self._playback
        with playback.lock:
            playback.choice = replace(playback.choice, **changes)
            playback.lock.notify_all()

    def _request(self, *, play: bool) -> None:
        playback = self._playback
        with playback.lock:
            if play:
                playback.play_requested = True
            else:
                self._stop_clock_locked()
            playback.lock.notify_all()

    def _seeked(self, event: viser.GuiEvent) -> None:
        if event.client is None:
            return  # the player moved the slider
        playback = self._playback
        with playback.lock:
            playback.time_s = float(self._time.value)
            playback.show_requested = True
            if playback.playing:
                playback.clock_started = time.monotonic()
                if self._voice is not None:
                    self._voice.play(offset=playback.time_s)
            playback.lock.notify_all()

    def _set_background(self, name: str) -> None:
        self._background_square = self._background_image(name)
        for client in self.server.get_clients().values():
            self._send_background(client)

    def _background_image(self, name: str) -> np.ndarray:
        """[S, S, 3] uint8: what is behind the avatar in the capture camera's square frame (as `avatar render
        --background` has it; transparent as a checkerboard)."""
        plate = self.fitted.dataset.background()
        if name == "transparent":
            squares = (np.indices(plate.shape[:2]) // CHECKER).sum(axis=0) % 2
            return np.where(squares[..., None] == 1, 205, 250).astype(np.uint8).repeat(3, axis=-1)
        if name == "plate" or name in COLOURS:
            return parse_background(name).pixels(plate)
        if name.startswith(IMAGE) and self.media is not None:
            path = self.media.resolve(name[len(IMAGE) :], IMAGE_SUFFIXES)
            return Background("image", image=path).pixels(plate)
        raise AvatarError(f"{name!r} is not a background this viewer offers", fix="Choose one in the list")

    def _send_background(self, client: viser.ClientHandle) -> None:
        if self._playback.choice.draw_on == "server":
            self._redraw()  # the background is drawn into the avatar's image
            return
        client.scene.set_background_image(self._client_background(client), format="jpeg")

    def _client_background(self, client: viser.ClientHandle) -> np.ndarray:
        """The background, widened (its edges repeated) or cut to the client's canvas, so that its height spans
        the vertical field of view as the capture's frame did."""
        width, height = client.camera.image_width, client.camera.image_height
        aspect = width / height if width > 0 and height > 0 else 1.0
        self._client_aspects[client.client_id] = aspect
        image = self._background_square
        size = image.shape[0]
        wide = max(1, round(size * aspect))
        if wide > size:
            left = (wide - size) // 2
            image = cv2.copyMakeBorder(image, 0, 0, left, wide - size - left, cv2.BORDER_REPLICATE)
        elif wide < size:
            left = (size - wide) // 2
            image = image[:, left : left + wide]
        return np.ascontiguousarray(image)

    def _redraw(self) -> None:
        """Asks the player thread to show the current frame again."""
        with self._playback.lock:
            self._playback.show_requested = True
            self._playback.lock.notify_all()

    def _move_to_capture(self, client: viser.ClientHandle | None) -> None:
        if client is None:
            return
        camera = self.capture_camera
        with client.atomic():
            client.camera.up_direction = camera.up
            client.camera.position = camera.position
            client.camera.look_at = camera.look_at
            client.camera.fov = camera.fov

    def _record_toggled(self, event: viser.GuiEvent) -> None:
        if self._record.value:
            camera = None if event.client is None else _viewer_camera(event.client.camera)
            self.recorder.start(camera)
            self._say("recording the camera: move it, then untick *record camera path*")
            return
        path = self.recorder.stop()
        if path is not None:
            self._recorded = path
            keys = path.keyframes
            self._say(f"recorded {len(keys)} camera keyframes over {keys[-1].time:.1f} s")

    def _save_camera_path(self, client: viser.ClientHandle | None) -> Path:
        path = self._recorded
        if path is None:
            raise AvatarError(
                "no camera path is recorded yet",
                fix="Tick *record camera path*, move the camera, then untick it",
            )
        file = self.out / f"camera_path_{_stamp()}.json"
        path.write(file)
        if client is not None:
            client.send_file_download(file.name, file.read_bytes())
        self._say(f"camera path: `{file}`")
        return file

    def _export_clicked(self, event: viser.GuiEvent) -> None:
        if not self._exporting.acquire(blocking=False):
            self._say("an export is already running")
            return
        threading.Thread(
            target=self._export_video, args=(event,), name="avatar-view-export", daemon=True
        ).start()

    def _export_video(self, event: viser.GuiEvent) -> None:
        try:
            self._guarded(event, lambda: self.export(client=event.client))
        finally:
            self._export_progress.visible = False
            self._exporting.release()

    def export(self, client: viser.ClientHandle | None = None) -> Path:
        """Renders the chosen audio with the recorded camera path (the capture's camera when none is) to a
        video in `out`, through `avatar render`'s code; the page shows its progress."""
        choice = self._playback.choice
        camera = "capture" if self._recorded is None else str(self._save_camera_path(None))
        background = self._background.value
        if background.startswith(IMAGE) and self.media is not None:
            background = str(self.media.resolve(background[len(IMAGE) :], IMAGE_SUFFIXES))
        suffix = ".webm" if background == "transparent" else ".mp4"
        video = self.out / f"view_{_stamp()}{suffix}"
        config = RenderConfig(
            run=self.config.run,
            audio=choice.audio,
            out=video,
            background=background if not (background == "plate" and camera != "capture") else "grey",
            camera=camera,
            mouth_scale=choice.mouth_scale,
            blink=choice.blink,
            dataset=self.config.dataset,
            device=self.config.device,
            progress=False,
        )
        self._export_progress.value = 0.0
        self._export_progress.visible = True
        self._say(f"exporting `{video.name}` ...")

        def progress(done: int, total: int) -> None:
            self._export_progress.value = 100.0 * done / total
            self._say(f"exporting `{video.name}`: frame {done} of {total}")

        render_video(config, on_frame=progress)
        self._say(f"exported `{video}`")
        if client is not None:
            client.send_file_download(video.name, video.read_bytes())
        return video

    # --- the player thread ----------------------------------------------------------------------------

    def _play_loop(self) -> None:
        playback = self._playback
        while not self._closing.is_set():
            try:
                with playback.lock:
                    choice = playback.choice
                if choice != playback.loaded:
                    self._load(choice)
                    continue
                if playback.play_requested and not playback.playing:
                    self._start_playing()
                    continue
                if playback.playing:
                    self._advance()
                    time.sleep(0.25 / self.fps)
                    continue
                with playback.lock:
                    show = playback.show_requested
                    playback.show_requested = False
                    index = self._frame_at(playback.time_s)
                    if not show:
                        playback.lock.wait(0.1)
                if show:
                    self._show_when_ready(index)
            except Exception as error:  # shown in the page; the player goes on with the next choice
                if not isinstance(error, AvatarError):
                    _log.exception("avatar view's player failed")
                with playback.lock:
                    playback.loaded = playback.choice  # do not retry the same
                    self._stop_clock_locked()
                self._say(f"**error:** {error}")

    def _frame_at(self, seconds: float) -> int:
        count = 1 if self._clip is None else self._clip.count
        return int(np.clip(int(seconds * self.fps + 1e-6), 0, count - 1))

    def _load(self, choice: _Choice) -> None:
        playback = self._playback
        with playback.lock:
            self._stop_clock_locked()
            previous = playback.loaded
        clip = self._clip
        if (
            clip is None
            or previous is None
            or (choice.audio, choice.blink) != (previous.audio, previous.blink)
        ):
            self._say(f"loading {choice.audio_label} ...")
            clip = drive_with_audio(
                self.fitted, choice.audio, mouth_scale=choice.mouth_scale, blink=choice.blink
            )
            self._voice = self.audio.add("/voice", clip.audio, clip.sample_rate)
            self._time.max = round((clip.count - 1) / self.fps, 3)
        else:
            clip = replace(clip, mouth_scale=choice.mouth_scale)
        if self._clip_frames is not None:
            self._clip_frames.close()
        if choice.draw_on == "server":
            frames = ClipFrames(
                clip,
                choice.color,
                capacity=AVATAR_CAPACITY,
                lookahead=AVATAR_LOOKAHEAD,
                compute=frame_avatars,
            )
        else:
            frames = ClipFrames(clip, choice.color)
        self._clip, self._clip_frames = clip, frames
        if previous is None or previous.draw_on != choice.draw_on:
            self._switch_drawing(choice.draw_on)
        with playback.lock:
            playback.loaded = choice
            playback.time_s = min(playback.time_s, (clip.count - 1) / self.fps)
            playback.show_requested = True
        self._say(f"{choice.audio_label}: {clip.count} frames, {clip.count / self.fps:.1f} s; press play")

    def _start_playing(self) -> None:
        playback, frames = self._playback, self._clip_frames
        with playback.lock:
            if self._frame_at(playback.time_s) >= frames.count - 1:
                playback.time_s = 0.0
            start = self._frame_at(playback.time_s)
        frames.seek(start)
        while True:
            remaining = frames.count - start
            needed = min(frames_to_buffer(remaining, self.fps, frames.computed_per_second), frames.lookahead)
            ready = frames.ready_from(start)
            with playback.lock:
                if (
                    not playback.play_requested
                    or playback.choice != playback.loaded
                    or self._closing.is_set()
                ):
                    return
                if ready >= needed:
                    playback.playing, playback.play_requested = True, False
                    playback.clock_started = time.monotonic()
                    if self._voice is not None:
                        self._voice.play(offset=playback.time_s)
                    break
            self._say(f"buffering: {ready} of {needed} frames ready")
            time.sleep(0.1)
        self._say(f"playing {playback.choice.audio_label}")

    def _advance(self) -> None:
        playback, frames = self._playback, self._clip_frames
        with playback.lock:
            seconds = playback.time_s + time.monotonic() - playback.clock_started
            index = int(seconds * self.fps + 1e-6)
            if index >= frames.count:
                self._stop_clock_locked()
                playback.time_s = (frames.count - 1) / self.fps
                return
        frames.played(index)
        frame = frames.get(index)
        if frame is not None and (not self._shown or self._shown[-1][1] != index):
            self._show(index, frame)

    def _show_when_ready(self, index: int) -> None:
        frame = self._clip_frames.wait(index, timeout=30.0)
        if frame is not None:
            self._show(index, frame)

    def _show(self, index: int, frame: np.ndarray | GaussianSet) -> None:
        """Frame `index`: its splats for the browser to draw, or its avatar drawn here for each page."""
        if isinstance(frame, GaussianSet):
            for client in self.server.get_clients().values():
                page = _page_camera(client.camera)
                if page is not None:
                    image = draw(frame, page, self._client_background(client))
                    client.scene.set_background_image(image, format="jpeg")
        with self.server.atomic():
            if isinstance(frame, np.ndarray):
                if self._splat_handle is None or self._splat_handle.buffer.shape != frame.shape:
                    self._splat_handle = self._new_splats(len(frame))
                self._splat_handle.buffer = frame
            self._frame.value = index
            self._time.value = round(index / self.fps, 3)
            self._fps.value = round(self.delivered_fps, 1)
        self._shown.append((time.monotonic(), index))

    def _switch_drawing(self, draw_on: DrawOn) -> None:
        """Shows the browser's splats (and the background behind them), or hides them for server drawing."""
        if self._splat_handle is not None:
            self._splat_handle.visible = draw_on == "browser"
        if draw_on == "browser":
            for client in self.server.get_clients().values():
                self._send_background(client)

    def _new_splats(self, count: int) -> viser.GaussianSplatHandle:
        return self.server.scene.add_gaussian_splats(
            "/avatar",
            centers=np.zeros((count, 3), np.float32),
            covariances=np.tile(np.eye(3, dtype=np.float32), (count, 1, 1)),
            rgbs=np.zeros((count, 3), np.float32),
            opacities=np.zeros((count, 1), np.float32),
        )

    def _stop_clock_locked(self) -> None:
        playback = self._playback
        if playback.playing:
            playback.time_s += time.monotonic() - playback.clock_started
            if self._voice is not None:
                self._voice.pause()
        playback.playing = playback.play_requested = False


def _viewer_camera(camera: viser.CameraHandle) -> ViewerCamera:
    return ViewerCamera(
        position=tuple(float(v) for v in camera.position),
        look_at=tuple(float(v) for v in camera.look_at),
        up=tuple(float(v) for v in camera.up_direction) if np.any(camera.up_direction) else SCENE_UP,
        fov=float(camera.fov),
    )


def _page_camera(camera: viser.CameraHandle) -> PageCamera | None:
    """The page's camera, or None before the page has reported it."""
    if camera.image_width <= 0 or camera.image_height <= 0:
        return None
    try:
        return PageCamera(
            tuple(camera.wxyz), tuple(camera.position), camera.fov, camera.image_width, camera.image_height
        )
    except AssertionError:  # viser's camera has had no update from the page yet
        return None


def _media_folder(path: Path | None) -> MediaFolder | None:
    if path is None:
        return None
    if not Path(path).is_dir():
        raise AvatarError("--media-dir is not a folder", path=path, fix="Pass a folder of audio files")
    return MediaFolder(Path(path))


def _stamp() -> str:
    return datetime.now().strftime("%Y%m%d_%H%M%S_%f")


def run_view(config: ViewConfig) -> None:
    """Starts the viewer, prints its address and serves until interrupted."""
    viewer = AvatarViewer(config)
    print(f"avatar view: open {viewer.url} in a browser (Ctrl-C stops it)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("avatar view: stopped", flush=True)
    finally:
        viewer.close()
