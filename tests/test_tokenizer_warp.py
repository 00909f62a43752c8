"""Warp-guided tokenizer decoder (mien.models.tokenizer.warp, ``decoder="warp"``): shapes and contract, an untrained
decoder is exactly the mesh warp of the reference, export/load parity, training on real face crops with landmarks."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning.pytorch")

import mien  # noqa: E402
from mien.face.warp import mesh_warp  # noqa: E402
from mien.models.tokenizer import TokenizerConfig, load_pretrained, save_pretrained  # noqa: E402
from mien.models.tokenizer.config import TINY  # noqa: E402
from mien.models.tokenizer.nets import ExpressionTokenizer  # noqa: E402
from mien.models.tokenizer.warp import DISPLACEMENT_UNIT, MESH_POINTS, reference_frames  # noqa: E402
from mien.tasks.tokenizer.data import batch_landmarks, unpack_batch  # noqa: E402

pytestmark = pytest.mark.usefixtures("torch_one_thread")
VIDEO = "videos/talking/face_1.mp4"
# conv patch encoder at 64² (fast) with the warp decoder; the registered tokenizer-warp-tiny uses face-api at 112²
WARP64 = dict(TINY, decoder="warp", max_subjects=4, warp_hidden=32, warp_refiner_width=4, warp_refiner_levels=3)


@pytest.fixture(scope="module")
def real_faces(shared_data):
    """uint8 (12, 3, 64, 64) aligned crops of the first second of a real talking-head video, float32 (12, 478, 2)
    landmarks in crop px (the crop of ``mien prepare``, margin 0)."""
    from mien.face.align import params_to_affine, similarity_params, transform_landmarks, warp_crop
    from mien.io.video import VideoSource
    from mien.pipelines.analyze import analyze
    from mien.pipelines.tokens import first_faces

    path = shared_data / VIDEO
    faces = first_faces(analyze(path, end=1.0))
    crops, points = [], []
    for fr in VideoSource(path, end=1.0):
        if fr.index in faces and len(crops) < 12:
            lm = faces[fr.index][1]
            a = params_to_affine(similarity_params(np.asarray(lm)[None], 0.0), 64)
            crops.append(warp_crop(fr.image, a[0], 64))
            points.append(transform_landmarks(np.asarray(lm)[None], a)[0, :, :2])
    assert len(crops) == 12
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()
    return x, torch.from_numpy(np.stack(points)).float()


def _model(faces=None, seed=0):
    torch.manual_seed(seed)
    m = ExpressionTokenizer(TokenizerConfig(**WARP64))
    if faces is not None:
        x, p = faces
        m.reconstruction.set_references([0, 1], x[[0, 6]], p[[0, 6]])
    return m


def test_registered_config_contract_and_shapes():
    m = mien.create_model("tokenizer-warp-tiny")
    assert m.contract.crop_size == 112 and m.config.decoder == "warp" and m.config.backbone == "faceapi-expression"
    assert m.reconstruction.refiner is not None and m.config.global_condition == "crop-mesh"
    x, cond = torch.rand(2, 3, 3, 112, 112), torch.randn(2, 3, 936) * 0.1
    with pytest.raises(ValueError, match="no reference face"):
        m(x, torch.tensor([0, 1]), condition=cond)
    refs = torch.rand(2, 478, 3) * 40 + 36
    m.reconstruction.set_references([0, 1], torch.rand(2, 3, 112, 112), refs)
    out = m.eval()(x, torch.tensor([0, 1]), condition=cond)
    assert out.tokens.shape == (2, 3, 64) and out.recon.shape == (2, 3, 3, 112, 112)
    assert out.points.shape == (2, 3, MESH_POINTS, 2)
    # untrained: zero displacements, the decoded points are the references'
    assert torch.allclose(out.points[1, 2], refs[1, :MESH_POINTS, :2])
    with pytest.raises(ValueError, match="max_subjects"):
        TokenizerConfig(**dict(WARP64, max_subjects=0))
    with pytest.raises(ValueError, match="decoder"):
        TokenizerConfig(**dict(WARP64, decoder="paint"))
    with pytest.raises(ValueError, match="nothing to attend to"):
        TokenizerConfig(**dict(WARP64, encoder_patches=False, subject_in_encoder=False))
    # without patches the token depends on the condition (and subject) only, and encode skips the backbone
    m2 = ExpressionTokenizer(TokenizerConfig(**dict(WARP64, encoder_patches=False, global_condition="crop-mesh",
                                                    condition_in_query=True))).eval()
    c = torch.randn(2, 936) * 0.1
    with torch.no_grad():
        za, zb = m2.encode(torch.rand(2, 3, 64, 64), torch.tensor([0, 0]), c), m2.encode(
            torch.rand(2, 3, 64, 64), torch.tensor([0, 0]), c)
        assert torch.allclose(za, zb, atol=1e-6)
        assert not torch.allclose(za, m2.encode(torch.rand(2, 3, 64, 64), torch.tensor([0, 0]), c.flip(0)))


def test_untrained_decoder_is_the_mesh_warp(real_faces):
    x, p = real_faces
    m = _model(real_faces).eval()
    ref = m.reconstruction.ref_images[0].permute(1, 2, 0).numpy()
    with torch.no_grad():
        z = m.encode(x[:3].float() / 255, torch.zeros(3, dtype=torch.long))
        assert torch.equal(m.decode(z, torch.zeros(3, dtype=torch.long))[0], m.reconstruction.ref_images[0])
        # a known displacement (bias of the zero-initialised last layer): the output is mien.face.warp.mesh_warp
        delta = torch.zeros(MESH_POINTS, 2)
        delta[[13, 14, 17, 0], 1] = torch.tensor([-0.04, 0.06, 0.08, -0.02])
        m.reconstruction.displacement[-1].bias.copy_(delta.reshape(-1) / DISPLACEMENT_UNIT)
        img = m.decode(z[:1], torch.zeros(1, dtype=torch.long))[0].permute(1, 2, 0).numpy()
    src = p[0, :MESH_POINTS].double().numpy()
    from mien.models.face3d.mien_face import canonical_triangles

    want = mesh_warp(np.ascontiguousarray(ref), src, src + 64 * delta.double().numpy(), canonical_triangles())[0]
    np.testing.assert_allclose(img, want.clip(0, 1), atol=1e-6)
    assert np.abs(img - ref).max() > 0.1  # the mouth moved


def test_export_load_parity_keeps_references(real_faces, tmp_path):
    x, _ = real_faces
    m = _model(real_faces).eval()
    with torch.no_grad():
        m.reconstruction.displacement[-1].weight.normal_(0, 1e-3)
    save_pretrained(m, tmp_path / "warp")
    back = load_pretrained(tmp_path / "warp")
    assert back.config.decoder == "warp"
    assert torch.equal(back.reconstruction.ref_set, m.reconstruction.ref_set)
    ids = torch.tensor([0, 1, 1])
    with torch.no_grad():
        z1, z2 = m.encode(x[:3].float() / 255, ids), back.encode(x[:3].float() / 255, ids)
        assert torch.equal(z1, z2)
        assert torch.equal(m.decode(z1, ids.flip(0)), back.decode(z2, ids.flip(0)))  # identity swap too
    # with an exemplar bank (uint8 crops + points, stored with the weights; its selection settings in the config)
    mb = _banked(real_faces, bank=4, warp_bank_k=2, warp_bank_distance="aligned-expression").eval()
    save_pretrained(mb, tmp_path / "bank")
    back = load_pretrained(tmp_path / "bank")
    assert back.reconstruction.bank_images.dtype == torch.uint8 and back.config.warp_bank_k == 2
    for k in ("bank_images", "bank_points", "bank_count"):
        assert torch.equal(getattr(back.reconstruction, k), getattr(mb.reconstruction, k))
    with torch.no_grad():
        z = mb.encode(x[:3].float() / 255, ids)
        assert torch.equal(mb.decode(z, ids.flip(0)), back.decode(z, ids.flip(0)))


def test_reference_frames_kinds(real_faces):
    x, p = real_faces
    subj = np.array([0] * 6 + [1] * 6)
    med = reference_frames(x.numpy(), p.numpy(), subj, "medoid")
    mean = reference_frames(x.numpy(), p.numpy(), subj, "mean")
    first = reference_frames(x.numpy(), p.numpy(), subj, "first")
    assert sorted(med) == [0, 1] and med[0][0].shape == (3, 64, 64) and med[0][1].shape == (MESH_POINTS, 2)
    assert any(np.allclose(med[1][0], x[i].numpy() / 255.0, atol=1e-6) for i in range(6, 12))
    np.testing.assert_allclose(mean[0][1], p[:6, :MESH_POINTS].numpy().mean(0), rtol=1e-5)
    np.testing.assert_allclose(first[1][0], x[6].numpy() / 255.0)
    with pytest.raises(ValueError):
        reference_frames(x.numpy(), p.numpy(), subj, "best")


def test_training_steps_reduce_landmark_and_pixel_loss(real_faces):
    from mien.tasks.tokenizer import TokenizerTask
    from mien.tasks.tokenizer.config import ScheduleConfig, TokenizerWeights

    x, p = real_faces
    torch.manual_seed(0)
    task = TokenizerTask("tokenizer-tiny", model_overrides={k: v for k, v in WARP64.items() if k in (
        "decoder", "max_subjects", "warp_hidden", "warp_refiner_width", "warp_refiner_levels")},
        schedule=ScheduleConfig(lr=2e-3, warmup_steps=1, total_steps=30),
        weights=TokenizerWeights(recon=(1, 1, 1), temporal=(0, 0, 0), diversity=(0, 0, 0)))
    batch = {"frames": x.view(2, 6, 3, 64, 64), "subject_id": torch.tensor([0, 1]), "landmarks": p.view(2, 6, 478, 2)}
    frames, ids = unpack_batch(batch, 64)
    lm = batch_landmarks(batch, frames)
    with pytest.raises(ValueError, match="landmarks"):
        task.compute_losses(frames, ids)
    before = task.compute_losses(frames, ids, landmarks=lm)
    assert bool(task.model.reconstruction.ref_set[:2].all())  # first frames became the references
    opt = torch.optim.AdamW([q for q in task.parameters() if q.requires_grad], lr=2e-3)
    for _ in range(30):
        loss = task.compute_losses(frames, ids, landmarks=lm)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
    after = task.compute_losses(frames, ids, landmarks=lm)
    # before: every frame drawn as its clip's first frame (zero displacement) — the no-motion baseline
    assert float(after["loss_landmarks"]) < 0.85 * float(before["loss_landmarks"])  # 0.0039 → 0.0030 of the side
    assert float(after["loss_recon"]) < 0.8 * float(before["loss_recon"])  # 0.0016 → 0.0010
    # without refinement no warp is drawn in training (no parameter learns from pixels): points only
    task.model.reconstruction.refiner = None
    out = task.compute_losses(frames, ids, landmarks=lm)
    assert float(out["loss_recon"]) == 0 and torch.allclose(out["loss_landmarks"], after["loss_landmarks"])


def test_crop_mesh_condition_reads_the_crop_geometry(real_faces):
    from mien.models.tokenizer.condition import crop_mesh_points, global_condition

    x, p = real_faces
    g, ok = global_condition(x[:4].permute(0, 2, 3, 1).numpy(), "crop-mesh")
    assert g.shape == (4, 936) and ok.all()
    pts = crop_mesh_points(g, 64)
    err = np.linalg.norm(pts - p[:4, :MESH_POINTS].numpy(), axis=-1).mean()
    assert err < 2.0  # px at 64²: the same face geometry as the shard's landmarks (found on the whole frame)
    assert TokenizerConfig(**dict(WARP64, global_condition="crop-mesh")).global_dim == 936


def test_init_from_points_only_export_starts_at_its_warp(real_faces, tmp_path):
    """A second stage: TokenizerTask(init_from=...) loads a points-only export (warp_refiner_width 0) into a config
    with the refiner; the refiner starts at zero, so the output is the loaded model's warp. Other gaps refuse."""
    from mien.errors import InputError
    from mien.models.tokenizer.export import load_weights_into
    from mien.tasks.tokenizer import TokenizerTask

    x, _ = real_faces
    points_only = ExpressionTokenizer(TokenizerConfig(**dict(WARP64, warp_refiner_width=0)))
    points_only.reconstruction.set_references([0, 1], *(t[[0, 6]] for t in real_faces))
    with torch.no_grad():
        points_only.reconstruction.displacement[-1].bias.normal_(0, 0.5)
    save_pretrained(points_only, tmp_path / "stage1")
    keys = ("decoder", "max_subjects", "warp_hidden", "warp_refiner_width", "warp_refiner_levels")
    task = TokenizerTask("tokenizer-tiny", model_overrides={k: v for k, v in WARP64.items() if k in keys},
                         init_from=str(tmp_path / "stage1"))
    m = task.model.eval()
    assert m.reconstruction.refiner is not None and task.hparams["init_from"] == str(tmp_path / "stage1")
    ids = torch.tensor([0, 1, 1])
    with torch.no_grad():
        z = points_only.eval().encode(x[:3].float() / 255, ids)
        assert torch.equal(m.encode(x[:3].float() / 255, ids), z)
        want, got = points_only.decode(z, ids), m.decode(z, ids)
    assert torch.allclose(got, want, atol=1e-6) and (want - m.reconstruction.ref_images[ids]).abs().max() > 0.05
    # only the refiner may be missing: another displacement width, or refiner weights the model lacks, refuse
    with pytest.raises(InputError, match="shapes differ"):
        load_weights_into(ExpressionTokenizer(TokenizerConfig(**dict(WARP64, warp_hidden=16))), tmp_path / "stage1")
    save_pretrained(m, tmp_path / "stage2")
    with pytest.raises(InputError, match="unexpected"):
        load_weights_into(points_only, tmp_path / "stage2")
    with pytest.raises(InputError, match="missing"):
        load_weights_into(m, tmp_path / "stage1", allow_missing=())


def _banked(faces, bank, seed=0, **cfg):
    """WARP64 with a bank of ``bank`` entries per subject: subject 0 from frames 0..5, subject 1 from 6..11."""
    from mien.models.tokenizer.bank import build_bank

    x, p = faces
    torch.manual_seed(seed)
    m = ExpressionTokenizer(TokenizerConfig(**dict(WARP64, warp_bank=bank, **cfg)))
    m.reconstruction.set_references([0, 1], x[[0, 6]], p[[0, 6]])
    with torch.no_grad():
        m.reconstruction.displacement[-1].weight.normal_(0, 2e-2)
    build_bank(m.reconstruction, x.numpy(), p.numpy(), np.array([0] * 6 + [1] * 6))
    return m


def test_bank_of_one_equals_the_reference_decoder(real_faces):
    """warp_bank = 1 holding each subject's reference frame draws exactly what the decoder without a bank draws
    (refinement included); without a bank nothing about the model changed (no bank buffers)."""
    x, p = real_faces
    ref = _model(real_faces).eval()
    with torch.no_grad():
        ref.reconstruction.displacement[-1].weight.normal_(0, 2e-2)
        ref.reconstruction.refiner.requires_grad_(False)
        for q in ref.reconstruction.refiner.parameters():
            q.normal_(0, 1e-2)
    one = ExpressionTokenizer(TokenizerConfig(**dict(WARP64, warp_bank=1))).eval()
    one.load_state_dict({**ref.state_dict(), **{k: v for k, v in one.state_dict().items() if "bank_" in k}})
    one.reconstruction.set_bank(0, x[[0]], p[[0]])
    one.reconstruction.set_bank(1, x[[6]], p[[6]])
    assert not any("bank" in k for k in ref.state_dict())
    ids = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        z = ref.encode(x[[1, 2, 7, 8]].float() / 255, ids)
        want = ref.decode(z, ids)
        assert torch.equal(one.decode(z, ids), want) and torch.equal(one.decode(z, ids.flip(0)), ref.decode(z, ids.flip(0)))
    assert (want - ref.reconstruction.ref_images[ids]).abs().max() > 0.01  # the points moved


def test_bank_selects_the_exact_entry_and_blends(real_faces):
    from mien.models.tokenizer.bank import blend_weights, compose, mesh_distance, nearest

    x, p = real_faces
    m = _banked(real_faces, bank=6).eval()
    dec = m.reconstruction
    assert dec.bank_count[:2].tolist() == [6, 6]
    ids = torch.tensor([0, 0, 1])
    for distance in ("points", "aligned", "aligned-expression"):
        dec.bank_distance = distance
        want = torch.tensor([2, 5, 3])
        idx, w = nearest(dec, dec.bank_points[ids, want], ids)
        assert torch.equal(idx[:, 0], want) and torch.equal(w, torch.ones(3, 1))
        with torch.no_grad():
            img = dec.draw(dec.bank_points[ids, want], ids)  # warp of an entry to its own mesh: the entry itself
        torch.testing.assert_close(img, dec.bank_images[ids, want].float() / 255, atol=2e-6, rtol=0)
    # a rotated, scaled, shifted copy of an entry's mesh: the same shape for the aligned distances
    q = dec.bank_points[0, 4]
    c, s = np.cos(0.2), np.sin(0.2)
    moved = (q - q.mean(0)) @ torch.tensor([[c, -s], [s, c]], dtype=torch.float32).T * 1.1 + q.mean(0) + 3.0
    d = mesh_distance(moved[None], dec.bank_points[[0]], "aligned")[0]
    assert int(d.argmin()) == 4 and float(d[4]) < 1e-3 < float(mesh_distance(moved[None], dec.bank_points[[0]],
                                                                              "points")[0, 4])
    # top-k softmax blend: weights sum to 1, nearest first, invalid entries never chosen; k = 1 = hard selection
    dist = torch.tensor([[3.0, 1.0, 2.0, 0.5], [1.0, 2.0, 9.0, 9.0]])
    valid = torch.tensor([[True, True, True, False], [True, True, False, False]])
    idx, w = blend_weights(dist, valid, 3, 1.0)
    assert idx[0].tolist() == [1, 2, 0] and idx[1, :2].tolist() == [0, 1] and float(w[1, 2]) == 0.0
    torch.testing.assert_close(w.sum(1), torch.ones(2))
    torch.testing.assert_close(w[0], torch.softmax(-torch.tensor([1.0, 2.0, 3.0]), 0))
    dec.bank_k, dec.bank_temperature = 3, 0.5
    pts = dec.points(m.encode(x[[1, 7]].float() / 255, ids[1:]), ids[1:])
    i3, w3 = nearest(dec, pts, ids[1:])
    with torch.no_grad():
        blend, img0, _ = compose(dec, pts, ids[1:], i3, w3)
        hard, _, _ = compose(dec, pts, ids[1:], i3[:, :1], torch.ones(2, 1))
        dec.bank_k = 1
        torch.testing.assert_close(dec.draw(pts, ids[1:]), hard, atol=1e-6, rtol=0)  # untrained refiner: the warp
    assert torch.equal(img0, dec.bank_images[ids[1:], i3[:, 0]].float() / 255)
    assert (blend - hard).abs().max() > 0 and blend.min() >= 0 and blend.max() <= 1 + 1e-6
    dec.set_references([2], x[:1], p[:1])  # a reference but no bank: refused, not drawn from an empty bank
    with pytest.raises(ValueError, match="no exemplar bank"):
        dec.draw(pts, torch.tensor([1, 2]))


def test_bank_is_built_from_the_given_frames_only(real_faces):
    from mien.models.tokenizer.bank import bank_frames, build_bank

    x, p = real_faces
    train = np.array([0, 1, 2, 3, 6, 7, 8, 9])  # frames 4, 5, 10, 11 are "held out"
    subj = np.array([0] * 4 + [1] * 4)
    for method in ("fps", "kmeans"):
        chosen = bank_frames(p.numpy()[train], subj, 3, method)
        assert sorted(chosen) == [0, 1] and all(len(v) == len(set(v.tolist())) == 3 for v in chosen.values())
        assert set(chosen[0].tolist()) <= {0, 1, 2, 3} and set(chosen[1].tolist()) <= {4, 5, 6, 7}
    m = ExpressionTokenizer(TokenizerConfig(**dict(WARP64, warp_bank=8)))
    chosen = build_bank(m.reconstruction, x.numpy()[train], p.numpy()[train], subj, "fps")
    assert m.reconstruction.bank_count[:2].tolist() == [4, 4]  # ≤ M frames given: all of them
    given = {x[i].numpy().tobytes() for i in train}
    for s in (0, 1):
        for j in range(4):
            assert m.reconstruction.bank_images[s, j].numpy().tobytes() in given
    with pytest.raises(ValueError, match="bank"):
        bank_frames(p.numpy(), np.zeros(12), 2, "random")
    with pytest.raises(ValueError, match="no exemplar bank"):
        ExpressionTokenizer(TokenizerConfig(**WARP64)).reconstruction.set_bank(0, x[:1], p[:1])


def test_transfer_warp_baselines_use_the_true_source_mesh(real_faces, tmp_path):
    """The identity-swap baselines of a banked warp tokenizer: the source frames' own meshes (found on the crops)
    select and warp bank entries; a subject's own frames find themselves (or a neighbour) in its bank."""
    from mien.heads.tokens import TokenExtractor
    from mien.pipelines.token_eval import TransferFrames, warp_baselines

    x, _ = real_faces
    save_pretrained(_banked(real_faces, bank=6).eval(), tmp_path / "bank")
    ex = TokenExtractor(tmp_path / "bank")
    crops = x.permute(0, 2, 3, 1).numpy()
    own = warp_baselines(TransferFrames(crops[:6], 0, crops[:6], 0), ex)
    assert len(own) == 3 and all(v.shape == (6, 64, 64, 3) and v.dtype == np.uint8 for v in own.values())
    unwarped = own["target bank frame nearest the source mesh, unwarped (baseline)"]
    bank = {c.tobytes() for c in crops[:6]}
    assert all(u.tobytes() in bank for u in unwarped) and sum(np.array_equal(u, c) for u, c in zip(unwarped, crops[:6],
                                                                                                   strict=True)) >= 3
    swap = warp_baselines(TransferFrames(crops[:6], 0, crops[6:], 1), ex)
    assert all(u.tobytes() in {c.tobytes() for c in crops[6:]} for u in
               swap["target bank frame nearest the source mesh, unwarped (baseline)"])
    big = torch.nn.functional.interpolate(x[:6].float(), scale_factor=2, mode="bilinear", antialias=True)
    big = big.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()  # source crops at 128²: the mesh is in
    swap2 = warp_baselines(TransferFrames(big, 0, crops[6:], 1), ex, batch=4)  # unit crop coordinates → 64² px
    key = "classical warp of the target reference to the source mesh (baseline)"
    assert swap2[key].shape == (6, 64, 64, 3)
    assert np.abs(swap2[key].astype(int) - swap[key].astype(int)).mean() < 3.0


def test_fill_banks_from_shard_batches_and_export_needs_them(real_faces, tmp_path):
    """``fill_banks`` pools training batches per subject (shard layout) and fills the
    decoder's banks; exporting a banked tokenizer whose banks are empty is refused with the remedy."""
    from mien.tasks.tokenizer import TokenizerTask
    from mien.tasks.tokenizer.banks import fill_banks

    x, p = real_faces
    keys = ("decoder", "max_subjects", "warp_hidden", "warp_refiner_width", "warp_refiner_levels")
    task = TokenizerTask("tokenizer-tiny", model_overrides={**{k: v for k, v in WARP64.items() if k in keys},
                                                            "warp_bank": 3, "warp_refiner_width": 0})
    dec = task.model.reconstruction
    dec.set_references([0, 1], x[[0, 6]], p[[0, 6]])
    with pytest.raises(ValueError, match=r"exemplar banks are empty for subject id\(s\) \[0, 1\].*--bank-data"):
        task.export(tmp_path / "nobank")
    batches = [{"video": x[i:i + 6].view(1, 6, 3, 64, 64), "meta": [{"subject_id": s}],
                "landmarks": p[i:i + 6].view(1, 6, 478, 2)} for i, s in ((0, 0), (6, 1))]
    seen = fill_banks(task, batches, "fps", pool=4)
    assert seen == {0: 6, 1: 6} and dec.bank_count[:2].tolist() == [3, 3]
    own = {0: {x[i].numpy().tobytes() for i in range(6)}, 1: {x[i].numpy().tobytes() for i in range(6, 12)}}
    for s in (0, 1):  # each subject's entries are its own training frames
        assert all(dec.bank_images[s, j].numpy().tobytes() in own[s] for j in range(3))
    loaded = load_pretrained(task.export(tmp_path / "bank"))
    assert torch.equal(loaded.reconstruction.bank_images, dec.bank_images)
    with pytest.raises(ValueError, match="no exemplar bank"):
        fill_banks(TokenizerTask("tokenizer-tiny", model_overrides={k: v for k, v in WARP64.items() if k in keys}),
                   batches)


def test_with_bank_adds_an_empty_bank_and_keeps_every_weight(real_faces):
    from mien.models.tokenizer.export import with_bank

    x, p = real_faces
    m = _model(real_faces).eval()
    b = with_bank(m, 4, k=2, temperature=0.5)
    assert (b.config.warp_bank, b.config.warp_bank_k, b.config.warp_bank_temperature) == (4, 2, 0.5)
    assert not b.training and b.reconstruction.bank_count.sum() == 0
    old, new = m.state_dict(), b.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old)
    assert sorted(set(new) - set(old)) == ["reconstruction.bank_count", "reconstruction.bank_images",
                                          "reconstruction.bank_neutral_points", "reconstruction.bank_neutral_set",
                                          "reconstruction.bank_points"]
    assert not b.reconstruction.bank_neutral_set.any()
    ids = torch.tensor([0, 1])
    with torch.no_grad():
        torch.testing.assert_close(b.encode(x[:2].float() / 255, ids), m.encode(x[:2].float() / 255, ids))
    with pytest.raises(ValueError, match="warp decoder"):
        with_bank(ExpressionTokenizer(TokenizerConfig(**TINY)), 4)


def test_training_with_a_bank_and_refiner_is_refused_with_the_remedy(tmp_path):
    from mien.tasks.tokenizer import TokenizerTask

    keys = ("decoder", "max_subjects", "warp_hidden", "warp_refiner_width", "warp_refiner_levels")
    over = {**{k: v for k, v in WARP64.items() if k in keys}, "warp_bank": 4}
    with pytest.raises(ValueError, match=r"added after training.*--bank N --bank-data"):
        TokenizerTask("tokenizer-tiny", model_overrides=over)
    save_pretrained(ExpressionTokenizer(TokenizerConfig(**WARP64)), tmp_path / "nobank")  # an export without banks
    with pytest.raises(ValueError, match="added after training"):
        TokenizerTask("tokenizer-tiny", model_overrides=over, init_from=str(tmp_path / "nobank"))
    # points only (nothing drawn in training) is allowed: the benchmark adds a bank to such a model
    assert TokenizerTask("tokenizer-tiny", model_overrides={**over, "warp_refiner_width": 0}).model.config.warp_bank == 4


def test_points_only_losses_keep_the_token_terms(real_faces):
    """A warp decoder without refiner trains on points, but the terms on the tokens alone (temporal, diversity,
    variance) still count with their weights: they were once dropped silently."""
    from mien.tasks.tokenizer import TokenizerTask
    from mien.tasks.tokenizer.config import ScheduleConfig, TokenizerWeights

    x, p = real_faces
    keys = ("decoder", "max_subjects", "warp_hidden", "warp_refiner_levels")
    over = {**{k: v for k, v in WARP64.items() if k in keys}, "warp_refiner_width": 0}
    task = TokenizerTask("tokenizer-tiny", model_overrides=over, schedule=ScheduleConfig(warmup_steps=1, total_steps=10),
                         weights=TokenizerWeights(temporal=(5, 5, 5), diversity=(2, 2, 2), landmarks=(1, 1, 1)))
    batch = {"frames": x.view(2, 6, 3, 64, 64), "subject_id": torch.tensor([0, 1]), "landmarks": p.view(2, 6, 478, 2)}
    frames, ids = unpack_batch(batch, 64)
    out = task.compute_losses(frames, ids, landmarks=batch_landmarks(batch, frames))
    w = task.loss_weights()
    want = (w["landmarks"] * out["loss_landmarks"] + w["temporal"] * out["loss_temporal"]
            + w["diversity"] * out["loss_diversity"] + w.get("variance", 0.0) * out["loss_variance"])
    assert float(out["loss_temporal"]) > 0 and w["temporal"] == 5
    torch.testing.assert_close(out["loss"], want)


class _FakeMeasures:
    """Stand-in for token_eval.FaceMeasures (no networks): every crop neutral, no AU, a constant descriptor."""

    au_thresholds = np.full(2, 0.5, np.float32)

    def descriptor(self, crops):
        return np.ones((len(crops), 128), np.float32)

    def measure(self, crops):
        return {"emotion": np.zeros(len(crops), int), "au": np.zeros((len(crops), 2), np.float32),
                "face": np.ones(len(crops), bool)}

    def close(self):
        pass


def test_identity_swaps_and_their_baselines_share_the_neutral_anchors(real_faces, tmp_path):
    """With neutral meshes set, ``transfer_report``'s identity swap decodes from the source subject, and the
    true-mesh baselines move the target's neutral mesh by the source mesh's motion from the source's neutral mesh."""
    from mien.heads.tokens import TokenExtractor, to_uint8
    from mien.models.tokenizer.condition import crop_mesh_points, global_condition
    from mien.pipelines import token_eval as te

    x, p = real_faces
    m = _banked(real_faces, bank=6).eval()
    m.reconstruction.set_neutral(0, p[2])
    m.reconstruction.set_neutral(1, p[8])
    save_pretrained(m, tmp_path / "bank")
    ex = TokenExtractor(tmp_path / "bank")
    crops = x.permute(0, 2, 3, 1).numpy()
    frames = te.TransferFrames(crops[:6], 0, crops[6:], 1)
    key = "classical warp of the target reference to the source mesh (baseline)"
    got = te.warp_baselines(frames, ex)[key]
    g, ok = global_condition(crops[:6], "crop-mesh")
    want = p[8, :468] + torch.from_numpy(crop_mesh_points(g, 64).astype(np.float32)) - p[2, :468]
    want[torch.from_numpy(~ok)] = p[8, :468]
    dec = ex.model.reconstruction
    assert np.array_equal(got, to_uint8(dec.warp_references(torch.ones(6, dtype=torch.long), want)))
    dec.bank_neutral_set[:] = False
    assert not np.array_equal(got, te.warp_baselines(frames, ex)[key])  # the reference-anchored baseline differs
    dec.bank_neutral_set[:2] = True

    calls = []
    decode = ex.decode

    def spy(tokens, subject_id=None, source_subject=None):
        calls.append((subject_id, source_subject))
        return decode(tokens, subject_id, source_subject)

    ex.decode = spy
    rep = te.transfer_report(frames, ex, _FakeMeasures())
    assert (1, 0) in calls and rep["anchor"] == "neutral"
    calls.clear()
    rep = te.transfer_report(frames, ex, _FakeMeasures(), anchor="reference")  # the swap before neutral meshes
    assert (1, None) in calls and (1, 0) not in calls and rep["anchor"] == "reference"
    old = te.warp_baselines(frames, ex, anchor="reference")[key]
    dec.bank_neutral_set[:] = False
    assert np.array_equal(old, te.warp_baselines(frames, ex)[key])
    dec.bank_neutral_set[:2] = True
    dec.bank_neutral_set[1] = False
    assert te.transfer_report(frames, ex, _FakeMeasures())["anchor"] == "reference"


def test_swap_report_subject_swap_decodes_from_the_frames_subject(real_faces):
    from mien.metrics import tokenizer_swap_report

    x, p = real_faces
    m = _banked(real_faces, bank=6).eval()
    m.reconstruction.set_neutral(0, p[2])
    m.reconstruction.set_neutral(1, p[8])
    seen = []
    decode = m.decode

    def spy(tokens, subject_ids=None, source_ids=None):
        seen.append(None if source_ids is None else source_ids.tolist())
        return decode(tokens, subject_ids, source_ids)

    m.decode = spy
    ids = torch.tensor([0] * 6 + [1] * 6)
    rep = tokenizer_swap_report(m, x.float() / 255, ids)
    assert seen == [None, None, ids.tolist()] and rep["subject_swap"]["psnr"] > 0


def test_render_swap_anchor_follows_the_subject_and_the_option(real_faces, shared_data, tmp_path):
    """``render_video`` swaps of a banked warp tokenizer: 'auto' anchors at the neutral meshes only for a given
    subject (an unknown person would get subject 0's typical expression), 'reference' keeps the old swap; the
    frames differ between the anchors."""
    import av

    from mien.pipelines.render import render_swap

    _, p = real_faces
    m = _banked(real_faces, bank=6).eval()
    m.reconstruction.set_neutral(0, p[2])
    m.reconstruction.set_neutral(1, p[8])
    save_pretrained(m, tmp_path / "bank")
    video = shared_data / VIDEO
    kw = dict(end=0.6, every=3, size=64)
    reps = {a: render_swap(video, tmp_path / "bank", tmp_path / f"{a}.mp4", 1, subject=0, anchor=a, **kw)
            for a in ("neutral", "reference")}
    assert (reps["neutral"].anchor, reps["reference"].anchor) == ("neutral", "reference")
    assert render_swap(video, tmp_path / "bank", tmp_path / "auto0.mp4", 1, subject=0, **kw).anchor == "neutral"
    assert render_swap(video, tmp_path / "bank", tmp_path / "unknown.mp4", 1, **kw).anchor == "reference"

    def frames(path):
        with av.open(str(path)) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])

    a, b = frames(tmp_path / "neutral.mp4"), frames(tmp_path / "reference.mp4")
    left = np.abs(a[:, :, :64].astype(int) - b[:, :, :64].astype(int)).mean()  # the same input crops (H.264)
    right = np.abs(a[:, :, 64:].astype(int) - b[:, :, 64:].astype(int)).mean()
    assert a.shape == b.shape and left < 1.0 and right > left + 0.5, (left, right)  # different swaps
    with pytest.raises(ValueError, match="swap anchor must be one of"):
        render_swap(video, tmp_path / "bank", tmp_path / "bad.mp4", 1, anchor="mean", **kw)
