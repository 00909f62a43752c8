"""Listener-reaction models (mien.models.reaction): tokenizers, leak-free online path, decoding, files."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from mien.models.reaction.decoding import (  # noqa: E402
    filter_logits,
    mask_count,
    masked_after,
    maskgit_decode,
    online_decode,
)
from mien.models.reaction.model import (  # noqa: E402
    ReactionModel,
    load_reaction_model,
    load_reaction_tokenizer,
    save_reaction_model,
    save_reaction_tokenizer,
)
from mien.models.reaction.tokenizers import FSQTokenizer, SeedTokenizer  # noqa: E402
from mien.models.reaction.transformer import ReactionTransformer, TransformerConfig  # noqa: E402

D_S = 6


def _attrs(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    au = (torch.rand(b, t, 15, generator=g) > 0.7).float()
    va = torch.rand(b, t, 2, generator=g) * 2 - 1
    e = torch.randn(b, t, 8, generator=g).softmax(-1)
    return torch.cat([au, va, e], -1)


def _model(chunk: int = 1, streams: str = "fsq", seed: int = 0) -> ReactionModel:
    torch.manual_seed(seed)
    tok = FSQTokenizer(window=5, hidden=16, depth=1) if streams == "fsq" else \
        SeedTokenizer().fit(_attrs(4, 40), n_exp=6)
    cfg = TransformerConfig(speaker_dim=D_S, frames_per_token=tok.frames_per_token, vocab_sizes=tok.vocab_sizes,
                            dim=32, layers=2, heads=4, online_chunk=chunk)
    return ReactionModel(tok, ReactionTransformer(cfg), [f"f{i}" for i in range(D_S)]).eval()


def test_fsq_round_trip_and_vocabulary(torch_one_thread):
    tok = FSQTokenizer(levels=(8, 5, 5, 5), window=5, hidden=16)
    assert tok.vocab_sizes == (1000,)
    ids = torch.arange(1000)
    codes = tok.codes_from_ids(ids)
    assert torch.equal(tok.ids_from_codes(codes), ids)  # every id ↔ one code
    assert codes.min() >= -1 and codes.max() <= 1 and len(torch.unique(codes, dim=0)) == 1000
    z = torch.randn(64, 4) * 3
    q, idx = tok.quantize(z)
    assert torch.equal(tok.codes_from_ids(idx), q.detach())
    assert idx.min() >= 0 and idx.max() < 1000
    x = _attrs(2, 23)
    rec, ids2 = tok(x)
    assert rec.shape == (2, 23, 25) and ids2.shape == (2, 5)
    tokens, valid = tok.encode(x)
    assert torch.allclose(tok.decode(tokens)[:, :23], rec, atol=1e-6) and valid.all()
    # ranges: AUs [0, 1], VA [-1, 1], expressions sum to 1
    assert rec[..., :15].min() >= 0 and rec[..., :15].max() <= 1 and rec[..., 15:17].abs().max() <= 1
    assert torch.allclose(rec[..., 17:].sum(-1), torch.ones(2, 23), atol=1e-5)
    # NaN: masked in the loss, windows without any finite value are invalid tokens
    x[0, :5] = float("nan")
    x[1, :, 15:17] = float("nan")
    loss, _ = tok.loss(x)
    assert torch.isfinite(loss)
    _, valid = tok.encode(x)
    assert not valid[0, 0, 0] and valid[0, 1:].all() and valid[1].all()
    loss.backward()  # straight-through gradient reaches the encoder
    assert tok.encoder[0].weight.grad.abs().sum() > 0


def test_seed_tokenizer_unknown_combinations_map_to_nearest(torch_one_thread):
    train = torch.zeros(1, 4, 25)
    train[0, :, 17] = 1.0  # neutral
    train[0, 1, 0] = 1.0  # AU01 alone
    train[0, 2, [0, 1]] = 1.0  # AU01 + AU02
    train[0, :, 15] = torch.tensor([0.0, 0.5, -0.5, 0.25])
    tok = SeedTokenizer().fit(train, n_exp=2)
    assert tok.vocab_sizes[0] == 3 and tok.vocab_sizes[1] == 4
    x = torch.zeros(1, 2, 25)
    x[0, :, 17] = 1.0
    x[0, 0, [0, 1, 3]] = 1.0  # unseen AU01+AU02+AU06 → nearest known: AU01+AU02 (Hamming 1)
    x[0, 1, 15] = 0.49  # unseen VA pair (0.475 or 0.5 grid) → nearest known (0.5, 0)
    tokens, valid = tok.encode(x)
    dec = tok.decode(tokens)
    assert dec[0, 0, :15].nonzero().flatten().tolist() == [0, 1]
    assert dec[0, 1, 15].item() == pytest.approx(0.5) and dec[0, 1, 16].item() == 0.0
    assert valid.all() and torch.allclose(dec[..., 17:].sum(-1), torch.ones(1, 2))
    nan = torch.full((1, 1, 25), float("nan"))
    assert not tok.encode(nan)[1].any()  # no finite value → not a training target


def test_online_path_has_no_target_leakage(torch_one_thread):
    for chunk in (1, 3):
        net = _model(chunk).transformer
        b, steps = 2, 9
        speaker = torch.randn(b, steps * 5, D_S)
        tokens = torch.randint(0, 1000, (b, steps, 1))
        base = net.forward_online(speaker, tokens)[0]
        for t in (0, 2, 4, 7):
            pert = tokens.clone()
            pert[:, t:] = torch.randint(0, 1000, pert[:, t:].shape)
            out = net.forward_online(speaker, pert)[0]
            # logits for every step <= t are unchanged when listener tokens at or after t change
            assert torch.allclose(out[:, :t + 1], base[:, :t + 1], atol=1e-5), (chunk, t)
        # the online path does condition on EARLIER chunks' listener tokens (what decoding generated) …
        pert = tokens.clone()
        pert[:, 0] = (pert[:, 0] + 1) % 1000
        first_later_chunk = chunk
        assert not torch.allclose(net.forward_online(speaker, pert)[0][:, first_later_chunk], base[:, first_later_chunk])
        # … and never on the speaker after its chunk
        sp2 = speaker.clone()
        sp2[:, 5 * chunk * 2:] += 1.0
        assert torch.allclose(net.forward_online(sp2, tokens)[0][:, :chunk * 2], base[:, :chunk * 2], atol=1e-5)


def test_maskgit_schedule_values():
    assert [masked_after(k, 8, 100) for k in range(1, 9)] == [98, 92, 83, 70, 55, 38, 19, 0]
    assert masked_after(1, 1, 50) == 0
    r = torch.tensor([0.0, 0.5, 0.999])
    assert mask_count(r, 100).tolist() == [100, math.ceil(100 * math.cos(math.pi / 4)), 1]
    with pytest.raises(ValueError):
        masked_after(0, 8, 10)


def test_filter_logits_per_sample():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]] * 3)
    lp = filter_logits(logits, temperature=[1.0, 1.0, 2.0], top_k=[1, 0, 2], top_p=None)
    assert torch.isfinite(lp[0]).tolist() == [False, False, False, True]
    assert torch.isfinite(lp[1]).all() and torch.isfinite(lp[2]).sum() == 2
    lp = filter_logits(logits, top_p=torch.tensor([0.01, 0.7, 1.0]))
    assert torch.isfinite(lp).sum(-1).tolist() == [1, 2, 4]
    with pytest.raises(ValueError, match="temperature"):
        filter_logits(logits, temperature=0.0)


@pytest.mark.parametrize("streams", ["fsq", "seed"])
def test_generate_n_distinct_reactions(streams, torch_one_thread):
    model = _model(2, streams)
    speaker = torch.randn(2, 23, D_S)
    for online in (False, True):
        out = model.generate(speaker, n=4, online=online, seed=0, temperature=[1.0, 1.2, 1.4, 1.6])
        assert out.shape == (2, 4, 23, 25) and out.dtype == torch.float32 and torch.isfinite(out).all()
        flat = out.reshape(8, -1)
        assert len(torch.unique(flat, dim=0)) == 8  # N distinct reactions per speaker
        assert torch.allclose(out[..., 17:].sum(-1), torch.ones(2, 4, 23), atol=1e-4)
        assert torch.equal(model.generate(speaker, n=4, online=online, seed=0, temperature=[1.0, 1.2, 1.4, 1.6]),
                           out)
    greedy = model.generate(speaker, n=3, top_k=1, seed=1)
    assert torch.equal(greedy[:, 0], greedy[:, 1])  # top-k 1 is deterministic: same reaction


def test_kv_cache_online_decoding_equals_recomputation(torch_one_thread):
    for chunk in (1, 3):
        model = _model(chunk)
        x = model.normalise_speaker(torch.randn(3, 47, D_S))
        a = online_decode(model.transformer, x, generator=torch.Generator().manual_seed(3), use_cache=True)
        b = online_decode(model.transformer, x, generator=torch.Generator().manual_seed(3), use_cache=False)
        assert a.shape == (3, 10, 1) and torch.equal(a, b)
        # the logits too: incremental steps vs the whole prefix
        full = model.transformer.forward_online(x, a)[0]
        win = model.transformer.speaker_windows(x)
        cache, prev, got = None, None, []
        for start in range(0, 10, chunk):
            steps = torch.arange(start, min(start + chunk, 10))
            lg, cache = model.transformer.online_step(win[:, steps], steps, None if prev is None else a[:, prev],
                                                      prev, cache)
            got.append(lg[0])
            prev = steps
        assert torch.allclose(torch.cat(got, 1), full, atol=1e-5)
    assert maskgit_decode(model.transformer, x, steps=4).shape == (3, 10, 1)


def test_export_load_parity(tmp_path, torch_one_thread):
    for streams in ("fsq", "seed"):
        model = _model(1, streams)
        model.speaker_mean.fill_(0.5)
        save_reaction_model(model, tmp_path / streams)
        back = load_reaction_model(tmp_path / streams)
        assert back.speaker_feature_names == model.speaker_feature_names
        sp = torch.randn(1, 20, D_S)
        for online in (False, True):
            assert torch.equal(back.generate(sp, 2, online=online, seed=5), model.generate(sp, 2, online=online, seed=5))
        save_reaction_tokenizer(model.tokenizer, tmp_path / f"tok-{streams}", metrics={"val/recon_mse": 0.1})
        tok = load_reaction_tokenizer(tmp_path / f"tok-{streams}")
        x = _attrs(1, 20)
        assert torch.equal(tok.encode(x)[0], model.tokenizer.encode(x)[0])


def test_bad_inputs(tmp_path, torch_one_thread):
    from mien.errors import InputError

    model = _model()
    with pytest.raises(ValueError, match="D_s|expects|speaker must be"):
        model.generate(torch.randn(1, 20, D_S + 1), n=2)
    with pytest.raises(ValueError, match="n must be"):
        model.generate(torch.randn(1, 20, D_S), n=0)
    with pytest.raises(ValueError, match="n=3 values"):
        model.generate(torch.randn(1, 20, D_S), n=3, temperature=[1.0, 2.0])
    with pytest.raises(InputError, match="config.json missing"):
        load_reaction_model(tmp_path)
    save_reaction_tokenizer(model.tokenizer, tmp_path / "tok")
    with pytest.raises(InputError, match="not a reaction model"):
        load_reaction_model(tmp_path / "tok")
    with pytest.raises(ValueError, match="levels"):
        FSQTokenizer(levels=(1, 5))


def test_registered_configs(torch_one_thread):
    import mien

    assert {"reaction-fsq", "reaction-seed-tokenizer", "reaction-tiny", "reaction-base"} <= set(mien.list_models("reaction"))
    assert mien.create_model("reaction-fsq").vocab_sizes == (1000,)
    sizes = {}
    for name in ("reaction-tiny", "reaction-base"):
        net = mien.create_model(name, speaker_dim=D_S, frames_per_token=5, vocab_sizes=(1000,))
        sizes[name] = sum(p.numel() for p in net.parameters())
        out = net.forward_online(torch.randn(1, 20, D_S), torch.zeros(1, 4, 1, dtype=torch.long))
        assert out[0].shape == (1, 4, 1000)
    assert sizes["reaction-base"] > 20 * sizes["reaction-tiny"]
