"""Shared fixtures. Real data lives in ../shared/data (never copied into the repo).

Tests that need it skip when it is absent, but fail when MIEN_REQUIRE_SHARED_DATA=1 (as in CI).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MIEN_SHARED_DATA", REPO.parent / "shared" / "data"))


def _require_shared() -> Path:
    if not SHARED_DATA.is_dir():
        msg = f"real test data not found at {SHARED_DATA}"
        if os.environ.get("MIEN_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(msg + " (MIEN_REQUIRE_SHARED_DATA=1)")
        pytest.skip(msg)
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ../shared/data; skips (or fails under MIEN_REQUIRE_SHARED_DATA=1) when it is missing."""
    return _require_shared()


@pytest.fixture(scope="session")
def analyzed(shared_data):
    """Memoised ``mien.analyze`` on a file relative to shared/data, so tests share one analysis."""
    import mien

    cache: dict = {}

    def get(rel: str, **kwargs):
        key = (rel, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = mien.analyze(shared_data / rel, **kwargs)
        return cache[key]

    return get


@pytest.fixture
def torch_one_thread():
    """Run a test with one torch thread (2 shared cores: contending threads are far slower)."""
    torch = pytest.importorskip("torch")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory):
    """A random-init ``tokenizer-tiny`` export (64² crops, D = 32, 16 subjects): enough for plumbing tests."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import mien
    from mien.models.tokenizer import save_pretrained

    torch.manual_seed(0)
    return save_pretrained(mien.create_model("tokenizer-tiny"), tmp_path_factory.mktemp("tok") / "tiny")


@pytest.fixture
def mien_without_lightning():
    """Run ``mien ARGV…`` in a fresh interpreter where importing ``lightning`` fails (a core + models install) and
    check that it exits 0 and never imported ``mien.tasks`` or Lightning. Call as ``run(argv, timeout=300)``."""
    import subprocess
    import sys

    def run(argv: list[str], timeout: float = 300) -> None:
        code = (
            "import sys\n"
            "sys.modules['lightning'] = None; sys.modules['pytorch_lightning'] = None\n"
            "from mien.cli.main import main\n"
            f"rc = main({[str(a) for a in argv]!r})\n"
            "assert rc == 0, rc\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('mien.tasks', 'lightning')) and sys.modules[m])\n"
            "assert not bad, bad\n"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=timeout)
        assert p.returncode == 0, p.stderr[-3000:]

    return run


@pytest.fixture
def tiny_reenact_export(tmp_path):
    """mien's own reenactment model (random init, tiny config) exported to ``tmp_path / "m"`` with one AU
    direction (AU12) that visibly moves the expression latent. Returns (folder, model)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import mien
    from mien.models.reenact import save_reenact_model

    torch.manual_seed(0)
    model = mien.create_model("reenact-tiny")
    for p in model.warp_c2d.parameters():  # an untrained flow starts at zero; make the expression latent matter
        torch.nn.init.normal_(p, std=0.05)
    model.au_directions = {"AU12": 20 * torch.randn(model.config.z_dim)}
    save_reenact_model(model, tmp_path / "m")
    return tmp_path / "m", model


@pytest.fixture(scope="session")
def tiny_reaction_export(tmp_path_factory):
    """A random-init reaction model (FSQ tokenizer + ``reaction-tiny`` transformer on the speaker's presence, 25
    attributes and head pose, no audio) written by ``save_reaction_model`` (what ``mien export reaction`` writes),
    in ``<tmp>/models/tiny-reaction``: enough for plumbing tests (the app's Reactions tab, ``mien react``)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    import mien
    from mien.data.react.features import feature_columns
    from mien.models.reaction import ReactionModel, save_reaction_model

    torch.manual_seed(0)
    tok = mien.create_model("reaction-fsq", hidden=32, depth=1)
    names = feature_columns(None, None, ("presence", "attrs", "pose"))
    tr = mien.create_model("reaction-tiny", speaker_dim=len(names), frames_per_token=tok.frames_per_token,
                           vocab_sizes=tok.vocab_sizes)
    return save_reaction_model(ReactionModel(tok, tr, names, {"maskgit_steps": 4}),
                               tmp_path_factory.mktemp("models") / "tiny-reaction")


@pytest.fixture
def live_webm():
    """``write(path, frames)``: a WebM as a browser's MediaRecorder writes it (64×48, 15 fps in a 1 ms time base,
    no duration in the header) — what the app's webcam recordings look like."""
    av = pytest.importorskip("av")
    from fractions import Fraction

    import numpy as np

    def write(path, frames: int = 30) -> Path:
        with av.open(str(path), "w", format="webm", options={"live": "1"}) as c:
            s = c.add_stream("libvpx", rate=15)
            s.width, s.height, s.pix_fmt, s.time_base = 64, 48, "yuv420p", Fraction(1, 1000)
            for i in range(frames):
                f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 8, np.uint8), format="rgb24")
                f.pts, f.time_base = round(i * 1000 / 15), Fraction(1, 1000)
                for pk in s.encode(f):
                    c.mux(pk)
            for pk in s.encode():
                c.mux(pk)
        return Path(path)

    return write
