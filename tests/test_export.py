from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from avatar.cli import main
from avatar.core.errors import AvatarError
from avatar.drive.driver import load_fitted
from avatar.export.export import ExportConfig, ExportManifest, export_avatar, parse_frames
from avatar.export.splat_ply import PROPERTIES, SH_C0, read_splat_ply, write_splat_ply
from avatar.media.audio_io import save_wav
from avatar.model.gaussians import GaussianSet
from avatar.render import ALPHA_MIN
from avatar.render.rasterize import render_gaussians
from avatar.sample.speech import synthesize_speech


def _random_gaussians(n: int, seed: int = 0) -> GaussianSet:
    generator = torch.Generator().manual_seed(seed)
    return GaussianSet(
        means=torch.randn(n, 3, generator=generator) * 0.05 + torch.tensor([0.0, 0.0, 0.5]),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=generator), dim=-1),
        scales=torch.exp(torch.randn(n, 3, generator=generator) - 6.0),  # ~2.5 mm
        opacities=torch.rand(n, generator=generator) * 0.98 + 0.01,
        colors=torch.rand(n, 3, generator=generator),
    )


def test_a_ply_holds_the_standard_3dgs_properties_and_reads_back(tmp_path):
    gaussians = _random_gaussians(300)
    path = tmp_path / "a.ply"
    write_splat_ply(path, gaussians)
    ply = PlyData.read(str(path))
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == list(PROPERTIES)
    assert vertex.count == 300 and not ply.text and ply.byte_order == "<"
    assert all(vertex[name].dtype == np.float32 for name in PROPERTIES)
    assert PROPERTIES[:9] == ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2")
    assert len([name for name in PROPERTIES if name.startswith("f_rest_")]) == 45
    for name in ("nx", "ny", "nz", "f_rest_0", "f_rest_44"):
        assert not vertex[name].any()
    np.testing.assert_allclose(vertex["f_dc_1"], (gaussians.colors[:, 1].numpy() - 0.5) / SH_C0, rtol=1e-6)
    np.testing.assert_allclose(vertex["scale_2"], np.log(gaussians.scales[:, 2].numpy()), rtol=1e-6)
    np.testing.assert_allclose(
        vertex["opacity"], np.log(gaussians.opacities / (1 - gaussians.opacities)).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(vertex["rot_0"], gaussians.quats[:, 0].numpy(), atol=1e-7)  # w first
    back = read_splat_ply(path)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        torch.testing.assert_close(getattr(back, name), getattr(gaussians, name), atol=1e-6, rtol=1e-5)


def test_a_read_back_set_renders_as_the_original(tmp_path):
    gaussians = _random_gaussians(400, seed=1)
    write_splat_ply(tmp_path / "a.ply", gaussians)
    back = read_splat_ply(tmp_path / "a.ply")
    K = torch.tensor([[120.0, 0, 32], [0, 120.0, 32], [0, 0, 1]])
    viewmat = torch.eye(4)
    before = render_gaussians(gaussians, viewmat, K, 64, backend="torch")
    after = render_gaussians(back, viewmat, K, 64, backend="torch")
    assert before.alpha.mean() > 0.05
    torch.testing.assert_close(after.rgb, before.rgb, atol=1e-4, rtol=0)
    torch.testing.assert_close(after.alpha, before.alpha, atol=1e-4, rtol=0)


def test_reading_refuses_what_is_not_a_splat_ply(tmp_path):
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"not a ply at all")
    with pytest.raises(AvatarError, match="not a readable PLY") as error:
        read_splat_ply(garbage)
    assert str(garbage) in str(error.value)
    with pytest.raises(AvatarError, match="no such PLY"):
        read_splat_ply(tmp_path / "absent.ply")
    points = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    mesh = tmp_path / "points.ply"
    PlyData([PlyElement.describe(points, "vertex")]).write(str(mesh))
    with pytest.raises(AvatarError, match="lack f_dc_0"):
        read_splat_ply(mesh)
    gaussians = _random_gaussians(4)
    broken = GaussianSet(
        gaussians.means.clone().index_fill_(0, torch.tensor([2]), math.nan),
        *list(vars(gaussians).values())[1:],
    )
    write_splat_ply(tmp_path / "nan.ply", broken)
    with pytest.raises(AvatarError, match="non-finite"):
        read_splat_ply(tmp_path / "nan.ply")


def test_frames_are_parsed_as_a_range_or_a_list():
    assert parse_frames("0:10:3", 20).tolist() == [0, 3, 6, 9]
    assert parse_frames("5:", 8).tolist() == [5, 6, 7]
    assert parse_frames(":3", 8).tolist() == [0, 1, 2]
    assert parse_frames("4,1,7", 8).tolist() == [4, 1, 7]
    for bad in ("a:b", "1,x", "0:5:0", "1:2:3:4"):
        with pytest.raises(AvatarError, match="not a frame range"):
            parse_frames(bad, 8)
    for outside in ("8", "-1", "10:20"):
        with pytest.raises(AvatarError, match="picks no frame"):
            parse_frames(outside, 8)


def test_an_export_to_an_unwritable_place_is_refused_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["export", str(tmp_path / "no_run"), "--out", str(blocker)]) == 2
    error = capsys.readouterr().err
    assert "--out is a file" in error and str(blocker) in error
    assert main(["export", str(tmp_path / "no_run"), "--out", str(blocker / "inside")]) == 2
    error = capsys.readouterr().err
    assert "--out cannot be written there" in error and "no run.json" not in error


@pytest.mark.slow
def test_an_exported_driven_frame_renders_as_the_driven_frame(sample_runs, tmp_path):
    run, _ = sample_runs["audio"]
    speech = tmp_path / "speech.wav"
    save_wav(speech, synthesize_speech(2.0, 16000, seed=11).audio, 16000)
    out = tmp_path / "export"
    manifest = export_avatar(
        ExportConfig(run=run, out=out, audio=speech, frames="0:40:13", device="cpu", progress=False)
    )
    assert ExportManifest.read(out / "export.json") == manifest
    assert [frame.index for frame in manifest.frames] == [0, 13, 26, 39]
    fitted = load_fitted(run, device="cpu", backend="torch")
    driver, model = fitted.driver, fitted.driver.model
    torso = fitted.torso
    count = model.gaussians.num + (0 if torso is None else torso.gaussians.num)
    assert manifest.gaussians == count
    canonical = read_splat_ply(out / "canonical.ply")
    assert canonical.num == count
    torch.testing.assert_close(
        canonical.means[: model.gaussians.num], model.gaussians.means.detach(), atol=0, rtol=0
    )

    from avatar.drive.video import drive_with_audio

    clip = drive_with_audio(fitted, speech)
    mouths = []
    for exported in manifest.frames:
        gaussians = read_splat_ply(out / exported.file)
        assert gaussians.num == manifest.gaussians
        camera = torch.tensor(exported.viewmat, dtype=torch.float32)
        np.testing.assert_allclose(exported.viewmat, clip.view.cameras[exported.index], atol=1e-6)
        from_file = render_gaussians(gaussians, camera, driver.K, driver.resolution, backend="torch")
        conditions = clip.signals.conditions([exported.index], window=model.window)
        head_pose = torch.from_numpy(clip.head_poses[exported.index])
        if torso is None:
            viewmat = (camera.double() @ head_pose)[None].float()
            driven = driver.render(conditions, viewmat, mouth_scale=clip.articulation_gain)[0]
        else:
            driven = driver.render_bust(
                conditions, head_pose, camera, driver.K, driver.resolution, mouth_scale=clip.articulation_gain
            )
        assert driven.alpha.mean() > 0.2
        for image, again in ((from_file.rgb, driven.rgb), (from_file.alpha, driven.alpha)):
            # float32 rounding of the file and of the head's rigid move can tip a Gaussian across the
            # rasterizer's 1/255 opacity cut-off, which changes a pixel by up to 1/255
            difference = (image - again).abs()
            assert difference.max() < 1.5 * ALPHA_MIN and difference.mean() < 1e-5
        mouths.append(gaussians.means)
    moved = (mouths[1] - canonical.means).norm(dim=-1)
    assert moved.max() > 1e-4  # the frames are deformed, not copies of the canonical avatar
    assert main(["export", str(run), "--out", str(tmp_path / "canonical_only")]) == 0
    assert (tmp_path / "canonical_only" / "canonical.ply").is_file()
    assert not (tmp_path / "canonical_only" / "frames").exists()
    with pytest.raises(AvatarError, match="picks no frame"):
        export_avatar(
            ExportConfig(run=run, out=tmp_path / "x", frames="100000", device="cpu", progress=False)
        )
