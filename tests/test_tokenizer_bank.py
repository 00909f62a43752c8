"""Exemplar banks of the warp tokenizer (:mod:`mien.models.tokenizer.bank`, :func:`mien.tasks.tokenizer.banks.fill_banks`,
export with ``--bank``): robustness to bad input (non-finite landmarks, foreign subject ids), memory (no batch kept
alive) and refusals of settings that would be ignored. Synthetic crops and jittered canonical meshes (fast)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")


pytestmark = pytest.mark.usefixtures("torch_one_thread")
S = 64
KEYS = dict(decoder="warp", max_subjects=4, warp_hidden=8, warp_refiner_width=0)


def _faces(n: int, seed: int = 0) -> np.ndarray:
    """float32 (n, 478, 2) crop px: MediaPipe's canonical face (iris points at its centre), jittered per frame."""
    from mien.face.geometry import canonical_face

    p = canonical_face()[:, :2] * np.array([1.0, -1.0])
    p = (p - p.min(0)) / (p.max(0) - p.min(0)) * 40 + 12
    p = np.concatenate([p, np.repeat(p.mean(0, keepdims=True), 10, 0)])
    return (p + np.random.default_rng(seed).normal(0, 0.5, (n, *p.shape))).astype(np.float32)


def _task(bank: int = 3):
    from mien.tasks.tokenizer import TokenizerTask

    return TokenizerTask("tokenizer-tiny", model_overrides={**KEYS, "warp_bank": bank})


def _batch(subject, t: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"video": torch.randint(0, 256, (1, t, 3, S, S), dtype=torch.uint8, generator=g),
            "meta": [{"subject_id": subject}], "landmarks": torch.from_numpy(_faces(t, seed))[None]}


def test_fill_banks_copies_frames_and_skips_non_finite_landmarks():
    from mien.tasks.tokenizer.banks import fill_banks

    task = _task(bank=3)
    batches = [_batch(0, seed=0), _batch(1, seed=1)]
    batches[1]["landmarks"][0, 2, 5, 0] = float("nan")
    with pytest.warns(UserWarning, match=r"shards: 1 frame\(s\) with non-finite landmarks"):
        seen = fill_banks(task, batches, "fps", pool=8, source="shards")
    assert seen == {0: 4, 1: 3}
    dec = task.model.reconstruction
    assert dec.bank_count[:2].tolist() == [3, 3] and bool(torch.isfinite(dec.bank_points).all())
    assert not any(torch.equal(dec.bank_images[1, j], batches[1]["video"][0, 2]) for j in range(3))



def test_fill_banks_pool_holds_copies_not_views(monkeypatch):
    """Each pooled frame is its own array (base None), so a (B, T, 3, S, S) batch is not kept alive by it."""
    import mien.tasks.tokenizer.banks as banks

    pooled = []
    real_stack = np.stack

    def spy(arrays, *a, **k):
        arrays = list(arrays)
        pooled.append(arrays)
        return real_stack(arrays, *a, **k)

    monkeypatch.setattr(banks.np, "stack", spy)
    banks.fill_banks(_task(bank=2), [_batch(0, t=3)], "fps", pool=8)
    pool = pooled[0] + pooled[1]  # the pool's crops, then its points (later stacks: the neutral-mesh classifier's)
    assert len(pool) == 6 and all(a.base is None for a in pool)


def test_fill_banks_refuses_foreign_subject_ids_and_takes_per_clip_ids():
    from mien.tasks.tokenizer.banks import fill_banks

    with pytest.raises(ValueError, match=r"^data/x: subject id 7 outside the tokenizer's \[0, 4\)"):
        fill_banks(_task(), [_batch(7)], "fps", source="data/x")
    task = _task(bank=2)
    frames = torch.rand(2, 3, 3, S, S)
    lm = torch.from_numpy(_faces(6).reshape(2, 3, 478, 2))
    fill_banks(task, [{"frames": frames, "subject_id": torch.tensor([[1, 1, 1], [2, 2, 2]]), "landmarks": lm}], "fps")
    assert task.model.reconstruction.bank_count.tolist() == [0, 2, 2, 0]
    with pytest.raises(ValueError, match="vary within a clip"):
        fill_banks(task, [{"frames": frames, "subject_id": torch.tensor([[1, 2, 1], [2, 2, 2]]), "landmarks": lm}],
                   "fps")


def test_non_finite_bank_points_are_refused_and_never_chosen():
    from mien.models.tokenizer.bank import bank_frames, blend_weights

    dec = _task(bank=2).model.reconstruction
    pts = _faces(2)
    pts[1, 3, 1] = np.inf
    with pytest.raises(ValueError, match="not all finite"):
        dec.set_bank(0, torch.zeros(2, 3, S, S, dtype=torch.uint8), pts)
    with pytest.warns(UserWarning, match=r"1 frame\(s\) with non-finite"):
        chosen = bank_frames(np.concatenate([pts, _faces(3, 1)]), np.array([0, 0, 0, 1, 1]), 1, "fps")
    assert chosen[0].tolist() == [0] and len(chosen[1]) == 1
    dist = torch.tensor([[float("nan"), 2.0, 1.0], [0.5, float("nan"), 3.0]])
    idx, w = blend_weights(dist, torch.ones(2, 3, dtype=torch.bool), 3, 1.0)
    assert idx[:, :2].tolist() == [[2, 1], [0, 2]] and bool(torch.isfinite(w).all())
    assert w[:, 2].tolist() == [0.0, 0.0]


def test_set_bank_takes_float_tensors():
    dec = _task(bank=2).model.reconstruction
    dec.set_bank(1, torch.rand(2, 3, S, S), torch.from_numpy(_faces(2)))  # tensors (on any device: the .cpu() path)
    assert dec.bank_count[1] == 2 and dec.bank_images.dtype == torch.uint8
    from mien.models.tokenizer.bank import build_bank

    build_bank(dec, torch.rand(4, 3, S, S), torch.from_numpy(_faces(4, 3)), np.array([2, 2, 2, 3]), "fps")
    assert dec.bank_count.tolist() == [0, 2, 2, 1]


def test_export_refuses_a_banked_model_with_no_bank_at_all(tmp_path):
    task = _task(bank=2)  # no reference set and no bank: nothing would be drawn
    with pytest.raises(ValueError, match="exemplar banks are empty for every subject"):
        task.export(tmp_path / "x")


def test_export_cli_refuses_ignored_bank_options_and_names_the_dataset(tmp_path, monkeypatch, capsys):
    import importlib.util

    import mien.export.tokenizer as E
    from mien.cli.main import main
    from mien.errors import InputError

    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"not read: the options are checked first")
    out = str(tmp_path / "out")
    for extra, reason in ((["--bank-k", "3"], "give --bank N too"), (["--bank-distance", "points"], "give --bank N"),
                          (["--bank", "0"], "must be >= 1")):
        assert main(["export", "tokenizer", str(ckpt), "-o", out, *extra]) == 2
        err = capsys.readouterr().err
        assert reason in err and err.count("\n") == 1, err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sklearn" else real(name, *a))
    assert main(["export", "tokenizer", str(ckpt), "-o", out, "--bank-data", str(tmp_path)]) == 2
    assert "pip install 'mien[train]' or --bank-method fps" in capsys.readouterr().err
    monkeypatch.undo()

    def bad_data(*a, **k):
        raise InputError("data/shards", "subject id 7 outside the tokenizer's [0, 4)")

    monkeypatch.setattr(E, "export_checkpoint", bad_data)  # a dataset error keeps the dataset's name
    assert main(["export", "tokenizer", str(ckpt), "-o", out, "--bank-data", "data/shards"]) == 2
    err = capsys.readouterr().err
    assert "data/shards: subject id 7" in err and str(ckpt) not in err, err


def test_warp_decoder_ring_cache_fits_its_sources_and_is_capped():
    from mien.models.tokenizer.warp import RING_CACHE, WarpDecoder

    dec = WarpDecoder(8, S, 4, hidden=8, refiner_width=0, bank=3)
    dec._ring(_faces(1)[0, :468].astype(np.float64), (S, S, 3))
    assert dec._rings.size == 2 * 4 * 3
    dec.bank_size = 5  # another bank size: a cache of its size, not the old one's
    dec._ring(_faces(1)[0, :468].astype(np.float64), (S, S, 3))
    assert dec._rings.size == 2 * 4 * 5
    big = WarpDecoder(8, 16, 10000, hidden=8, refiner_width=0, bank=2)
    big._ring(_faces(1)[0, :468].astype(np.float64) / 4, (16, 16, 3))
    assert big._rings.size == RING_CACHE


def test_umeyama_torch_agrees_with_umeyama_batch_and_drives_the_aligned_distance():
    from mien.face.align import umeyama_batch, umeyama_torch
    from mien.models.tokenizer.bank import mesh_distance

    rng = np.random.default_rng(0)
    for d in (2, 3):
        src = rng.normal(size=(6, 30, d)) * 20 + 50
        dst = src @ np.linalg.qr(rng.normal(size=(d, d)))[0].T * 1.3 + rng.normal(size=(6, 30, d))  # some reflected
        w = rng.uniform(0, 1, (6, 30))
        for weights in (None, w):
            want = umeyama_batch(src, dst, weights=weights)
            got = umeyama_torch(torch.from_numpy(src), torch.from_numpy(dst),
                                weights=None if weights is None else torch.from_numpy(weights))
            for a, b in zip(want, got, strict=True):
                np.testing.assert_allclose(b.numpy(), a, rtol=1e-9, atol=1e-9)
        s, _, _ = umeyama_torch(torch.from_numpy(src), torch.from_numpy(dst), scale=False)
        assert torch.equal(s, torch.ones(6, dtype=torch.float64))
    q = rng.normal(size=(3, 468, 2)) * 20 + 50  # the bank's aligned distance = RMS after umeyama_batch's fit
    e = rng.normal(size=(3, 5, 468, 2)) * 20 + 50
    src, dst = np.repeat(q[:, None], 5, 1).reshape(-1, 468, 2), e.reshape(-1, 468, 2)
    s, r, t = umeyama_batch(src, dst)
    fit = s[:, None, None] * np.einsum("bkj,bij->bki", src, r) + t[:, None]
    want = np.sqrt(((fit - dst) ** 2).sum(-1).mean(-1)).reshape(3, 5)
    np.testing.assert_allclose(mesh_distance(torch.tensor(q), torch.tensor(e), "aligned").numpy(), want, rtol=1e-5)


def _swap_model():
    """A banked warp tokenizer with references for subjects 0..2 and a non-zero displacement head."""
    task = _task(bank=3)
    m = task.model.eval()
    dec = m.reconstruction
    faces = _faces(3, seed=3)
    dec.set_references([0, 1, 2], np.zeros((3, 3, S, S), np.float32), faces)
    torch.manual_seed(0)
    torch.nn.init.normal_(dec.displacement[-1].weight, std=0.05)
    return m


def test_identity_swap_moves_the_target_by_the_motion_from_the_neutral_meshes():
    m = _swap_model()
    dec = m.reconstruction
    z = torch.nn.functional.normalize(torch.randn(5, m.config.dim), dim=1)
    src, tgt = torch.zeros(5, dtype=torch.long), torch.ones(5, dtype=torch.long)
    with torch.no_grad():
        plain = dec.points(z, tgt)
        assert torch.equal(dec.transfer_points(z, src, tgt), plain)  # no neutral meshes: the old swap exactly
        n0, n1 = torch.from_numpy(_faces(2, seed=7))
        dec.set_neutral(0, n0)
        assert torch.equal(dec.transfer_points(z, src, tgt), plain)  # the target has none: both keep references
        dec.set_neutral(1, n1)
        want = n1[:468] + (dec.points(z, src) - n0[:468])
        torch.testing.assert_close(dec.transfer_points(z, src, tgt), want)
        assert not torch.allclose(want, plain)
        torch.testing.assert_close(dec.transfer_points(z, src, src), dec.points(z, src))  # own subject: unchanged
        dec.set_bank(1, np.zeros((1, 3, S, S), np.uint8), n1[None])
        _, pts = dec(z, tgt, src)
        torch.testing.assert_close(pts, want)
        with pytest.raises(ValueError, match=r"no reference face set for subject id\(s\) \[3\]"):
            dec.anchors(torch.tensor([3]), torch.tensor([1]))
        a_s, a_t = dec.anchors(torch.tensor([0, 2]), torch.tensor([1, 1]))  # subject 2 has no neutral mesh
        assert torch.equal(a_s[0], n0[:468]) and torch.equal(a_s[1], dec.ref_points[2])
        assert torch.equal(a_t[0], n1[:468]) and torch.equal(a_t[1], dec.ref_points[1])


def test_extractor_swaps_from_the_encoding_subject(tmp_path):
    from mien.heads.tokens import TokenExtractor
    from mien.models.tokenizer.export import save_pretrained

    m = _swap_model()
    dec = m.reconstruction
    for s, seed in ((0, 7), (1, 8)):
        dec.set_neutral(s, _faces(1, seed=seed)[0])
        dec.set_bank(s, np.random.default_rng(s).integers(0, 256, (1, 3, S, S), dtype=np.uint8), _faces(1, seed=seed))
    save_pretrained(m, tmp_path / "tok")
    ex = TokenExtractor(tmp_path / "tok")
    ex.subject_id = 0
    crops = np.random.default_rng(0).integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    tokens, swapped = ex.reconstruct(crops, target_subject=1)
    assert np.array_equal(swapped, ex.decode(tokens, 1, source_subject=0))
    assert not np.array_equal(swapped, ex.decode(tokens, 1))  # the motion is measured from subject 0's neutral mesh
    assert np.array_equal(ex.reconstruct(crops, 1, anchor="reference")[1], ex.decode(tokens, 1))
    assert (ex.swap_anchor(0, 1), ex.swap_anchor(0, 1, "reference"), ex.swap_anchor(0, 2)) == \
        ("neutral", "reference", "reference")  # subject 2 has no neutral mesh
    with pytest.raises(ValueError, match="swap anchor must be one of"):
        ex.reconstruct(crops, 1, anchor="mean")
    with pytest.raises(ValueError, match="source subject 9 out of range"):
        ex.decode(tokens, 1, source_subject=9)
    with pytest.raises(ValueError, match="target subject -1 out of range"):
        ex.swap_anchor(0, -1)


def test_neutral_meshes_average_the_neutral_frames_and_name_the_subjects_left_out():
    from mien.models.tokenizer.bank import neutral_meshes, set_neutral_meshes

    pts = _faces(8, seed=1)
    subjects = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    neutral = np.array([1, 1, 1, 0, 1, 1, 0, 0], bool)
    pts[1, 3, 0] = np.nan  # a neutral frame without finite points does not count
    got = neutral_meshes(pts, subjects, neutral, min_frames=2)
    assert sorted(got) == [0, 1]
    np.testing.assert_allclose(got[0], pts[[0, 2], :468].mean(0), rtol=1e-6)
    np.testing.assert_allclose(got[1], pts[[4, 5], :468].mean(0), rtol=1e-6)
    dec = _task(bank=2).model.reconstruction
    with pytest.warns(UserWarning, match=r"2 subject\(s\) with fewer than 3 neutral .* ids \[0, 1\]"):
        assert set_neutral_meshes(dec, pts, subjects, neutral) == []  # subject 0 has 2 finite neutral frames < 3
    neutral[3] = True
    with pytest.warns(UserWarning, match=r"ids \[1\]"):
        assert set_neutral_meshes(dec, pts, subjects, neutral) == [0]
    assert dec.bank_neutral_set.tolist() == [True, False, False, False]
    with pytest.warns(UserWarning, match=r"ids \[0, 1\]"):  # a refill without neutral frames clears the old mesh
        assert set_neutral_meshes(dec, pts, subjects, np.zeros(8, bool)) == []
    assert not dec.bank_neutral_set.any()
    with pytest.raises(ValueError, match="not all finite"):
        dec.set_neutral(1, pts[1])
    with pytest.raises(ValueError, match=r"subject ids \[-1\] outside \[0, 4\)"):
        set_neutral_meshes(dec, pts[:2], np.array([-1, -1]), np.ones(2, bool))
    with pytest.raises(ValueError, match=r"subject id must lie in \[0, 4\)"):
        dec.set_neutral(4, pts[0])
    with pytest.raises(ValueError, match="no exemplar bank"):
        _task(bank=0).model.reconstruction.set_neutral(0, pts[0])


def test_fill_banks_takes_neutral_meshes_from_the_frames_the_classifier_calls_neutral(monkeypatch):
    from mien.heads.faceapi import EMOTIONS, ExpressionHead
    from mien.tasks.tokenizer.banks import fill_banks

    batches = [_batch(0, t=4, seed=0), _batch(1, t=4, seed=1)]
    for b, s in zip(batches, (0, 1), strict=True):  # subject 0's frames 100, subject 1's 200 grey levels
        b["video"][:] = 100 * (s + 1)

    def emotions(self, crops, batch=64):  # neutral for subject 0's grey, happy for subject 1's
        p = np.zeros((len(crops), len(EMOTIONS)), np.float32)
        p[np.asarray(crops)[:, 0, 0, 0] == 100, EMOTIONS.index("neutral")] = 1
        p[np.asarray(crops)[:, 0, 0, 0] == 200, EMOTIONS.index("happy")] = 1
        return p

    monkeypatch.setattr(ExpressionHead, "emotions", emotions)
    task = _task(bank=2)
    with pytest.warns(UserWarning, match=r"ids \[1\]"):
        fill_banks(task, batches, "fps", pool=8)
    dec = task.model.reconstruction
    assert dec.bank_neutral_set.tolist() == [True, False, False, False]
    torch.testing.assert_close(dec.bank_neutral_points[0], batches[0]["landmarks"][0, :, :468].mean(0))


def test_fill_neutral_takes_float_crops_as_set_bank_does(monkeypatch):
    from mien.heads.faceapi import EMOTIONS, ExpressionHead
    from mien.tasks.tokenizer.banks import fill_neutral

    seen = []

    def emotions(self, crops, batch=64):  # the real one refuses float crops
        seen.append(np.asarray(crops))
        p = np.zeros((len(crops), len(EMOTIONS)), np.float32)
        p[:, EMOTIONS.index("neutral")] = 1
        return p

    monkeypatch.setattr(ExpressionHead, "emotions", emotions)
    dec = _task(bank=2).model.reconstruction
    u8 = np.random.default_rng(0).integers(0, 256, (3, 3, S, S), dtype=np.uint8)
    pts = _faces(3)
    assert fill_neutral(dec, torch.from_numpy(u8).float() / 255, pts, np.zeros(3, int)) == [0]
    assert seen[0].dtype == np.uint8 and np.array_equal(seen[0], u8.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(dec.bank_neutral_points[0].numpy(), pts[:, :468].mean(0), rtol=1e-6)


def test_exports_made_before_neutral_meshes_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    from mien.models.tokenizer.export import load_pretrained, save_pretrained

    m = _swap_model()
    m.reconstruction.set_neutral(0, _faces(1)[0])
    save_pretrained(m, tmp_path / "tok")
    assert bool(load_pretrained(tmp_path / "tok").reconstruction.bank_neutral_set[0])
    f = tmp_path / "tok" / "model.safetensors"
    state = {k: v for k, v in load_file(str(f)).items() if "bank_neutral" not in k}
    save_file(state, str(f))
    with pytest.warns(UserWarning, match="exported before neutral meshes; identity swaps move the target by the "
                                         "motion from the subjects' references"):
        old = load_pretrained(tmp_path / "tok")
    assert not old.reconstruction.bank_neutral_set.any()
    save_file({k: v for k, v in state.items() if k != "reconstruction.bank_points"}, str(f))
    from mien.errors import InputError

    with pytest.raises(InputError, match="bank_points"):
        load_pretrained(tmp_path / "tok")
