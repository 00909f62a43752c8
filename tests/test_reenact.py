"""Face reenactment: metrics on hand-computed arrays, the piecewise-affine warp, the reenactors (copy, warp, the
neural adapter on a small interface-complete module), ``mien reenact`` end to end on real clips and
``mien evaluate reenact`` on real held-out pairs."""

from __future__ import annotations

import dataclasses
import json

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchmetrics")

from mien.cli.main import main as cli  # noqa: E402
from mien.metrics import reenact as M  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SOURCE = "samples/single_face.jpg"
DRIVER = "samples/single_face.mp4"  # 2.4 s, 30 fps, 72 frames, mp3 audio


# ---------------------------------------------------------------- metrics


def test_image_metrics_hand_computed():
    a = np.zeros((2, 3, 16, 16), np.float32)
    b = a.copy()
    b[0] += 0.5  # L1 0.5, MSE 0.25 → PSNR 10·log10(1/0.25) = 6.0206 dB
    b[1, :, :8] = 1.0  # half the pixels differ by 1: L1 0.5, MSE 0.5 → 3.0103 dB
    np.testing.assert_allclose(M.l1(b, a), [0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(M.psnr(b, a), [6.0206, 3.0103], atol=1e-3)
    x = torch.rand(2, 3, 32, 32)
    np.testing.assert_allclose(M.ssim(x, x), [1.0, 1.0], atol=1e-5)
    assert (M.ssim(x, torch.rand(2, 3, 32, 32)) < 0.2).all()
    with pytest.raises(ValueError, match="B, 3, H, W"):
        M.l1(a[0], a[0])


def test_lpips_loading_code(monkeypatch):
    pytest.importorskip("torchvision")  # torchmetrics builds LPIPS' backbone with torchvision (in mien[train])
    net = M.lpips_network("alex", random_backbone=True)  # real torchmetrics network, random backbone
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    np.testing.assert_allclose(M.lpips(x, x, net), 0.0, atol=1e-6)
    d = M.lpips(x, y, net)
    assert d.shape == (2,) and (d > 0).all()
    import torchmetrics.functional.image.lpips as tl

    def offline(*a, **k):
        raise OSError("no network")  # what torchvision's hub download raises offline (URLError is an OSError)

    monkeypatch.setattr(tl, "_get_tv_model_features", offline)
    assert M.lpips_network("alex") is None


def test_landmark_pose_expression_metrics():
    t = np.zeros((1, 478, 2))
    t[0, 33], t[0, 263] = (0, 0), (10, 0)  # inter-ocular distance 10 px
    p = t.copy()
    p[0, :, 0] += 3.0  # every point 3 px off → AKD 3 px = 0.3 IOD
    np.testing.assert_allclose(M.akd(p, t), [0.3])
    np.testing.assert_allclose(M.akd(p, t, normalise=False), [3.0])
    np.testing.assert_allclose(M.apd([[10, 0, 179]], [[0, 6, -179]]), [(10 + 6 + 2) / 3])  # roll wraps: 2°
    np.testing.assert_allclose(M.aed([[0, 3.0]], [[4.0, 0]]), [5.0])
    np.testing.assert_allclose(M.aed([[0.2, 0.9]], [[0.4, 0.5]], "mae"), [0.3])
    np.testing.assert_array_equal(M.emotion_agreement([[0.1, 0.9], [0.8, 0.2], [np.nan, 1]],
                                                      [[0.2, 0.8], [0.1, 0.9], [1, 0]]), [1.0, 0.0, np.nan])
    np.testing.assert_allclose(M.csim([[1, 0], [1, 1]], [[1, 0], [-1, -1]]), [1.0, -1.0])


# ---------------------------------------------------------------- warp


def test_piecewise_affine_warp_identity_and_shift():
    from mien.face.warp import extend_to_border, piecewise_affine_warp
    from mien.models.face3d.mien_face import canonical_triangles

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), np.uint8)
    tri = canonical_triangles()
    # a face-like layout of the 468 points inside the image
    pts = 32 + 14 * rng.standard_normal((468, 2)).clip(-1.5, 1.5)
    pts = 32 + (pts - 32) * 0.9
    from scipy.spatial import Delaunay

    tri = Delaunay(pts).simplices  # a valid disk mesh on these points (the tessellation assumes the face layout)
    border, all_tri = extend_to_border(pts, tri, 64, 64)
    src = np.concatenate([pts, border])
    np.testing.assert_array_equal(piecewise_affine_warp(img, src, src, all_tri), img)
    # moving every point, border included, by (+3, 0) shifts the picture by 3 px
    out = piecewise_affine_warp(img, src, src + [3, 0], all_tri)
    np.testing.assert_array_equal(out[:, 3:], img[:, :-3])


@pytest.fixture(scope="module")
def source_crop(shared_data):
    from mien.io.video import ImageSource
    from mien.pipelines.reenact import FaceCropper

    im = next(iter(ImageSource(shared_data / SOURCE))).image
    fc = FaceCropper(im.shape[1], im.shape[0], 256, static=True)
    try:
        return fc(im)
    finally:
        fc.close()


def test_warp_driver_equal_source_reproduces_landmarks(source_crop):
    from mien.pipelines.reenact import FaceCropper, WarpReenactor

    w = WarpReenactor()
    st = w.encode_source(source_crop)
    out = w.animate(st, [source_crop], source_crop)  # relative motion with driver == source
    assert out.shape == (1, 256, 256, 3) and out.dtype == np.uint8
    fc = FaceCropper(256, 256, 256, static=True)
    try:
        again = fc(out[0])
    finally:
        fc.close()
    err = np.linalg.norm(again.landmarks[:468, :2] - source_crop.landmarks[:468, :2], axis=1)
    assert err.mean() < 2.0, err.mean()
    # a driver whose mouth opens moves the source's mouth points, and only near them
    drv = dataclasses.replace(source_crop, landmarks=source_crop.landmarks.copy())
    drv.landmarks[[14, 17, 84, 181, 314, 405, 87, 178, 317, 402], 1] += 6.0  # lower lip down 6 px
    tgt = w.targets(st, drv, source_crop)
    moved = np.linalg.norm(tgt - st["points"], axis=1)
    assert moved[14] == pytest.approx(6.0, rel=0.1) and moved[10] == pytest.approx(0.0, abs=1e-6)  # 10: forehead
    diff = np.abs(w.animate(st, [drv], source_crop)[0].astype(int) - source_crop.image).sum(-1)
    ys, xs = np.nonzero(diff > 30)
    assert len(ys) and ys.min() > source_crop.landmarks[1, 1]  # changes below the nose tip only


def test_warp_reference_area_once_per_animation(source_crop, monkeypatch):
    """Relative motion computes the reference's hull area once per animation (``WarpReenactor.animate``) and once
    per driver video (``transfer_targets``), not per frame; targets and frames are bit-identical to computing it
    every time (``relative_targets`` without areas)."""
    import mien.face.warp as W
    from mien.pipelines.reenact import WarpReenactor
    from mien.pipelines.reenact_eval import transfer_targets

    w = WarpReenactor()
    st = w.encode_source(source_crop)
    lm = source_crop.landmarks
    ref = dataclasses.replace(source_crop, landmarks=lm * np.float32(0.9) + np.float32(12.0))
    drivers = [dataclasses.replace(source_crop, landmarks=ref.landmarks + np.float32(k)) for k in (1.0, -2.0, 0.5)]
    for d in drivers:
        d.landmarks[[14, 17, 84], 1] += 4.0
    want = [W.relative_targets(st["points"], d.landmarks[:468], ref.landmarks[:468]) for d in drivers]
    frames = np.stack([w.warp(st, d, ref)[0] for d in drivers])
    assert all(np.array_equal(w.targets(st, d, ref, w.reference_area(ref)), t) for d, t in zip(drivers, want,
                                                                                              strict=True))
    calls = []
    orig = W.hull_area
    monkeypatch.setattr(W, "hull_area", lambda p: calls.append(1) or orig(p))
    assert np.array_equal(w.animate(st, drivers, ref), frames) and len(calls) == 1
    del calls[:]
    t = transfer_targets(lm[:468], np.stack([d.landmarks[:468] for d in drivers]), ref.landmarks[:468])
    assert len(calls) == 2  # the source and the reference, for three frames
    assert all(np.array_equal(a, W.relative_targets(lm[:468], d.landmarks[:468], ref.landmarks[:468]))
               for a, d in zip(t, drivers, strict=True))


class _TinyModel(torch.nn.Module):
    """Implements the reenact model interface (mien.models.reenact) with simple maths, to test the adapter."""

    @dataclasses.dataclass
    class Motion:
        z: torch.Tensor

        @staticmethod
        def relative(m_src, m_drv0, m_drvt):
            return _TinyModel.Motion(m_src.z + (m_drvt.z - m_drv0.z))

    size = 64
    au_directions = {"AU12": torch.ones(3)}

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def encode_appearance(self, src):
        return src * self.scale

    def encode_motion(self, img, pose):
        assert pose.shape == (img.shape[0], 6)
        return self.Motion(img.mean((2, 3)))

    def decode(self, app, m_src, m_drv):
        assert app.shape[0] == m_src.z.shape[0] == m_drv.z.shape[0]
        return (app + (m_drv.z - m_src.z)[:, :, None, None]).clamp(0, 1)

    def edit(self, m, weights):
        return self.Motion(m.z + sum(w * self.au_directions[k] for k, w in weights.items()))


def _crop(value: float, size: int = 64):
    from mien.pipelines.reenact import FaceCrop

    return FaceCrop(np.full((size, size, 3), value, np.uint8), np.zeros((478, 3), np.float32),
                    np.zeros(6, np.float32), np.eye(2, 3))


def test_neural_adapter_relative_absolute_edit():
    from mien.pipelines.reenact import CopySourceReenactor, NeuralReenactor, Reenactor, load_reenactor

    r = load_reenactor(_TinyModel())
    assert isinstance(r, NeuralReenactor) and isinstance(r, Reenactor) and r.size == 64
    st = r.encode_source(_crop(100))
    drivers = [_crop(120), _crop(140)]
    rel = r.animate(st, drivers, _crop(120))  # relative to the driver's first frame: +0 and +20 grey levels
    np.testing.assert_allclose(rel[:, 0, 0, 0], [100, 120], atol=1)
    ab = r.animate(st, drivers, None)  # absolute: the driver's own level
    np.testing.assert_allclose(ab[:, 0, 0, 0], [120, 140], atol=1)
    ed = r.animate(st, drivers[:1], _crop(120), {"AU12": 0.1})
    assert ed[0, 0, 0, 0] == pytest.approx(100 + 0.1 * 255, abs=1)
    with pytest.raises(ValueError, match="AU99"):
        r.animate(st, drivers, None, {"AU99": 1.0})
    with pytest.raises(ValueError, match="no AU directions|none"):
        CopySourceReenactor(64).animate(None, drivers, None, {"AU12": 1.0})


# ---------------------------------------------------------------- mien reenact


def _info(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        n = sum(1 for _ in c.decode(v))
        return n, float(v.average_rate), len(c.streams.audio), (v.width, v.height)


def test_reenact_cli_end_to_end(shared_data, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    rc = cli(["reenact", str(shared_data / SOURCE), str(shared_data / DRIVER), "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    n, fps, n_audio, wh = _info(out)
    dn, dfps, d_audio, _ = _info(shared_data / DRIVER)
    from PIL import Image

    assert (n, fps) == (dn, pytest.approx(dfps)) and d_audio == n_audio == 1
    assert wh == tuple(s + s % 2 for s in Image.open(shared_data / SOURCE).size)  # pasted into the full frame
    assert "warp" in capsys.readouterr().out


def test_reenact_api_side_by_side_crop(shared_data):
    import mien

    run = mien.reenact(shared_data / SOURCE, shared_data / DRIVER, model="copy", paste_back=False,
                       side_by_side=True, end=0.2)
    frames = list(run)
    assert len(frames) == run.report.frames == 7 and frames[0].shape == (256, 3 * 256, 3)
    np.testing.assert_array_equal(frames[3][:, 512:], frames[3][:, :256])  # copy: output == source crop


def test_reenact_bad_inputs(shared_data, tmp_path, capsys):
    out = tmp_path / "x.mp4"
    rc = cli(["reenact", str(shared_data / "samples/no_face.mp4"), str(shared_data / DRIVER), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "no face found in the source" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    # a driver whose face leaves at ~2.7 s: the frames after keep the last motion, counted
    rc = cli(["reenact", str(shared_data / SOURCE), str(shared_data / "samples/face_noface.mov"), "-o", str(out),
              "--start", "2.3", "--end", "3.3", "--no-paste-back"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    n, *_ = _info(out)
    gaps = int(captured.err.split("mien reenact: ")[1].split(" of ")[0])
    assert 0 < gaps < n and f"{gaps} of {n} driving frames had no face" in captured.err
    rc = cli(["reenact", str(shared_data / SOURCE), "-o", str(tmp_path / "e.png"), "--edit", "AU12=0.5",
              "--model", "copy"])
    err = capsys.readouterr().err
    assert rc == 2 and "AU directions" in err and not (tmp_path / "e.png").exists()


def test_warp_still_portrait_edit(shared_data, source_crop, tmp_path, capsys):
    from PIL import Image

    from mien.pipelines.reenact import WarpReenactor

    w = WarpReenactor()
    st = w.encode_source(source_crop)
    corners = [61, 291]  # mouth corners: AU12 (lip corner puller) raises them, AU15 (depressor) lowers them
    assert (st["au"]["AU12"][corners, 1] < -1).all() and (st["au"]["AU15"][corners, 1] > 0).all()
    with pytest.raises(ValueError, match="AU99"):
        w.animate(st, [source_crop], source_crop, {"AU99": 1.0})
    out = tmp_path / "smile.png"
    rc = cli(["reenact", str(shared_data / SOURCE), "--edit", "AU12=+0.8", "--no-paste-back", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    img = np.asarray(Image.open(out))
    plain = w.animate(st, [source_crop], source_crop)[0]
    assert img.shape == (256, 256, 3) and np.abs(img.astype(int) - plain).max() > 50


def test_evaluate_reenact_cli(shared_data, tmp_path, capsys, monkeypatch):
    import mien.pipelines.reenact_eval as E

    # no ImageNet backbone offline: exercise the LPIPS column with torchmetrics' network on a random backbone
    real = M.lpips_network
    monkeypatch.setattr(E.M, "lpips_network", lambda net="alex": real(net, random_backbone=True))
    out = tmp_path / "ev"
    rc = cli(["evaluate", "reenact", str(shared_data / DRIVER), str(shared_data / "videos/talking/Input__00010.mp4"),
              "--model", "warp", "--frames", "2", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    rep = json.loads((out / "report.json").read_text())
    copy, warp = rep["models"]["copy"], rep["models"]["warp"]
    assert len(rep["pairs"]) == 8 and {p["kind"] for p in rep["pairs"]} == {"self", "cross"}
    assert copy["cross_csim"] == pytest.approx(1.0, abs=1e-3)  # the copy baseline is the source itself
    assert warp["self_akd"] < copy["self_akd"]  # the warp follows the driver's landmarks
    for t in (copy, warp):
        assert 0 < t["self_ssim"] <= 1 and t["self_psnr"] > 10
        assert np.isfinite(t["self_lpips"]) == (rep["lpips"] == "ok")
        assert t["cross_face_rate"] == 1.0 and np.isfinite([t["cross_akd"], t["cross_apd"], t["cross_aed_au"]]).all()
    # the warp is driven by the transfer target, so it is nearer to it than copying the source is
    assert warp["cross_akd_target"] < copy["cross_akd_target"]
    assert "| warp |" in (out / "report.md").read_text() and (out / "metrics.csv").exists()
    assert "AKD-target" in (out / "report.md").read_text()
    rc = cli(["evaluate", "reenact", str(shared_data / DRIVER), str(shared_data / "videos/talking/Input__00010.mp4"),
              "--model", "copy", "--frames", "2", "--reference", "best", "-o", str(tmp_path / "best")])
    assert rc == 0, capsys.readouterr().err
    best = json.loads((tmp_path / "best" / "report.json").read_text())
    assert best["options"]["reference"] == "best"
    assert "cross reference: best" in (tmp_path / "best" / "report.md").read_text()
    # the copy's AKD-target is the driver's motion since its reference frame: another frame, another value; the
    # self pairs (always referenced to the source) are unchanged
    assert best["models"]["copy"]["cross_akd_target"] != pytest.approx(copy["cross_akd_target"])
    assert best["models"]["copy"]["cross_akd"] == pytest.approx(copy["cross_akd"])  # the copy ignores references
    assert best["models"]["warp"]["self_akd"] == pytest.approx(warp["self_akd"])
    assert np.isfinite(best["models"]["warp"]["cross_akd_target"])


def test_transfer_targets():
    from mien.face.warp import relative_targets
    from mien.pipelines.reenact_eval import transfer_targets

    rng = np.random.default_rng(0)
    src, ref = rng.uniform(0, 100, (478, 3)), rng.uniform(0, 100, (478, 3))
    drivers = np.stack([ref, ref + [3.0, -2.0, 0.0], np.full_like(ref, np.nan)])
    t = transfer_targets(src, drivers, ref)
    assert t.shape == (3, 478, 2)
    np.testing.assert_allclose(t[0], src[:, :2])  # no driver motion: the source's own points
    np.testing.assert_allclose(t[1], relative_targets(src, drivers[1], ref))
    assert np.isnan(t[2]).all()  # driver face missing
    assert np.isnan(transfer_targets(np.full_like(src, np.nan), drivers, ref)).all()  # source face missing


def test_reenact_with_exported_model(shared_data, tmp_path, tiny_reenact_export):
    """The adapter on mien's own reenactment model (random init, tiny config) through its export folder."""
    import mien

    _, model = tiny_reenact_export
    run = mien.reenact(shared_data / SOURCE, shared_data / DRIVER, model=tmp_path / "m", paste_back=False,
                       end=0.1, edit="AU12=1")
    frames = list(run)
    S = model.size
    assert run.report.model == "m" and len(frames) == 4 and frames[0].shape == (S, S, 3)
    plain = list(mien.reenact(shared_data / SOURCE, shared_data / DRIVER, model=tmp_path / "m", paste_back=False,
                              end=0.1))
    assert not np.array_equal(frames[0], plain[0])  # the edit moved the expression latent


def test_reenact_video_on_frame_progress_stop_and_cancel(shared_data, tmp_path):
    """``on_frame`` (the contract of ``mien.analyze``): once per output frame in order with the driving frame and
    the report so far; True ends the video after that frame; an exception (a cancelled job) leaves no file."""
    from mien.pipelines.reenact_video import ReenactOptions, reenact_video

    opts = ReenactOptions(model="copy", paste_back=False, end=0.3)
    seen = []
    rep = reenact_video(shared_data / SOURCE, shared_data / DRIVER, tmp_path / "all.mp4", opts,
                        on_frame=lambda fr, r: seen.append((fr.index, fr.t_sec, r.frames)))
    assert rep.frames == len(seen) == 10 and [s[2] for s in seen] == list(range(1, 11))
    assert [s[0] for s in seen] == list(range(10)) and seen[-1][1] == pytest.approx(9 / 30, abs=1e-3)
    rep = reenact_video(shared_data / SOURCE, shared_data / DRIVER, tmp_path / "short.mp4", opts,
                        on_frame=lambda fr, r: r.frames >= 4)
    assert rep.frames == 4 and _info(tmp_path / "short.mp4")[0] == 4

    class Stop(Exception):
        pass

    def cancel(fr, r):
        if r.frames == 3:
            raise Stop

    with pytest.raises(Stop):
        reenact_video(shared_data / SOURCE, shared_data / DRIVER, tmp_path / "cancelled.mp4", opts, on_frame=cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.mp4", "short.mp4"]  # no partial or temporary file
    calls = []
    reenact_video(shared_data / SOURCE, None, tmp_path / "edit.png", ReenactOptions(edit="AU12=0.5"),
                  on_frame=lambda fr, r: calls.append(fr.index))
    assert calls == [0]


def test_shape_distance_ignores_pose_and_size():
    from mien.face.warp import shape_distance

    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (468, 2))
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    moved = 1.7 * src @ rot.T + [30.0, -12.0]  # the same face, elsewhere, turned and larger
    mouth = src.copy()
    mouth[[14, 17, 84, 181, 314, 405], 1] += 8.0  # the same face with the lower lip down
    d = shape_distance(src, np.stack([moved, mouth, np.full_like(src, np.nan), np.zeros_like(src)]))
    assert d[0] == pytest.approx(0.0, abs=1e-9) and d[1] > 0.1 and np.isnan(d[2:]).all()  # NaN, collapsed
    assert np.isnan(shape_distance(np.full_like(src, np.nan), mouth[None])).all()
    with pytest.raises(ValueError, match="expected"):
        shape_distance(src, mouth)


def test_best_reference_is_the_driving_frame_most_like_the_source(shared_data, source_crop):
    """``--reference best`` (FOMM's find_best_frame): the pre-pass picks the driving crop with the least shape
    distance to the source, and the reenactment uses it as the reference of relative motion."""
    import mien
    from mien.face.warp import shape_distance
    from mien.pipelines.reenact import FaceCropper
    from mien.pipelines.reenact_video import best_reference

    best = best_reference(shared_data / DRIVER, source_crop, 256, end=0.5)
    from mien.io.video import open_source

    drv = open_source(shared_data / DRIVER, None, 0.5)
    fc = FaceCropper(drv.info.width, drv.info.height, 256, static=False)
    try:
        crops = [c for c in (fc(f.image, f.index) for f in drv) if c is not None]
    finally:
        fc.close()
    d = shape_distance(source_crop.landmarks[:468], np.stack([c.landmarks[:468] for c in crops]))
    assert best is not None and np.array_equal(best.landmarks, crops[int(np.argmin(d))].landmarks)
    assert len(crops) > 5 and d.max() > d.min()  # a choice was made
    from mien.pipelines.reenact import load_reenactor

    warp = load_reenactor("warp", "cpu", 256)
    used = []
    animate = warp.animate
    warp.animate = lambda st, drivers, ref, edit=None: used.append(ref) or animate(st, drivers, ref, edit)
    run = mien.reenact(shared_data / SOURCE, shared_data / DRIVER, model=warp, paste_back=False, end=0.2,
                       reference="best")
    assert run.reference is not None and len(list(run)) == run.report.frames == 7
    assert used and all(r is run.reference for r in used)  # every batch moved from the chosen frame
    with pytest.raises(ValueError, match="reference"):
        mien.reenact(shared_data / SOURCE, shared_data / DRIVER, reference="middle")
    with pytest.raises(ValueError, match="relative motion"):
        mien.reenact(shared_data / SOURCE, shared_data / DRIVER, reference="best", absolute=True)
