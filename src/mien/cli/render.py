"""``mien render reconstruction|swap VIDEO --tokenizer DIR -o OUT.mp4``: side-by-side videos rendered by an
exported expression tokenizer (see :mod:`mien.pipelines.render`); ``mien render face3d VIDEO -o OUT.mp4``:
input | shaded 3-D face mesh | mesh overlay, with optional mesh-sequence export (see
:mod:`mien.pipelines.face3d`)."""

from __future__ import annotations

import argparse

from mien.cli.tokens import add_tokenizer_video_args


def _common(p: argparse.ArgumentParser) -> None:
    add_tokenizer_video_args(p, "OUT.mp4", "output video (written atomically)")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="side of each panel in px (default: the tokenizer's crop size)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="frames per forward pass")


def add_parser(sub) -> None:
    p = sub.add_parser("render", help="render reconstruction / identity-swap videos with an expression tokenizer",
                       description=__doc__)
    kinds = p.add_subparsers(dest="render_kind", required=True, metavar="KIND")
    rec = kinds.add_parser("reconstruction", help="side by side: input face crop | its reconstruction")
    _common(rec)
    rec.set_defaults(func=run)
    swap = kinds.add_parser("swap", help="side by side: input face crop | its expressions on another subject")
    _common(swap)
    swap.add_argument("--target-subject", type=int, required=True, metavar="ID",
                      help="subject-embedding index of the identity to render")
    swap.add_argument("--anchor", choices=("auto", "neutral", "reference"), default="auto",
                      help="banked warp tokenizers: 'neutral' moves the target's neutral face by the input's motion "
                           "from the --subject's neutral face; 'reference' moves the target's reference by the token's "
                           "displacement (the swap before neutral meshes; keeps more of the target's own typical "
                           "expression); 'auto' (default): neutral with --subject, else reference")
    swap.set_defaults(func=run)
    _face3d_parser(kinds)
    _transfer_parser(kinds)


def _face3d_parser(kinds) -> None:
    f = kinds.add_parser(
        "face3d", help="side by side: input | shaded 3-D face mesh | mesh overlay",
        description="Fit a parametric 3-D face (mien-face, a `mien train face-model` .npz, or a FLAME file you "
                    "supply) to every face's landmarks and write input | shaded mesh | mesh overlay side by side; with "
                    "--encoder DIR also the neural renderer's reconstruction of each face.")
    f.add_argument("video", help="input video file")
    f.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="output video (written atomically)")
    f.add_argument("--model", default=None, metavar="SPEC",
                   help="face model: a .npz from `mien train face-model`, or flame:/path/generic_model.pkl"
                        "[,embedding.npz] (default: the shipped mien-face)")
    f.add_argument("--smooth", action="store_true", help="One Euro-smooth coefficients and pose per track")
    f.add_argument("--encoder", default=None, metavar="DIR",
                   help="a face3d export (`mien export face3d`): adds the neural-reconstruction panel")
    f.add_argument("--start", type=float, default=None, metavar="SEC", help="first time to process (s)")
    f.add_argument("--end", type=float, default=None, metavar="SEC", help="last time to process (s)")
    f.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    f.add_argument("--max-faces", type=int, default=1, metavar="N", help="most faces per frame")
    f.add_argument("--height", type=int, default=None, metavar="PX",
                   help="panel height in px (default: the input's, at most 720)")
    f.add_argument("--analysis", default=None, metavar="FILE.parquet",
                   help="landmarks from an earlier `mien analyze` of this video (default: analyse it now)")
    f.add_argument("--export-mesh", default=None, metavar="DIR",
                   help="also write the mesh sequence: DIR/mesh.npz (vertices (T, V, 3), triangles, pose)")
    f.add_argument("--obj", action="store_true", help="with --export-mesh: also one .obj per frame in DIR/obj/")
    f.add_argument("--gltf", action="store_true",
                   help="with --export-mesh: also DIR/face_<id>.glb per track, glTF morph targets + weights "
                        "animation (needs pygltflib)")
    f.set_defaults(func=run_face3d)


def _transfer_parser(kinds) -> None:
    f = kinds.add_parser(
        "expression-transfer", help="the target's identity and appearance with the source's expression, per frame",
        description="Fit the 3-D face model to SOURCE and TARGET (videos or images) and write, per source frame: "
                    "source | target | mesh of the target's identity and pose with the source's expression, jaw "
                    "and eyelids | that mesh over the target; with --encoder DIR (a face3d-learn export) also the "
                    "neural renderer's image of it (--swap tokens: TEASER's token swap).")
    f.add_argument("source", help="video or image whose expressions are transferred")
    f.add_argument("target", help="video or image whose identity, pose and appearance are kept (an image is "
                                  "used for every frame; a shorter video starts again)")
    f.add_argument("-o", "--output", required=True, metavar="OUT.mp4", help="output video (written atomically)")
    f.add_argument("--model", default=None, metavar="SPEC",
                   help="face model: a .npz from `mien train face-model`, or flame:/path/generic_model.pkl"
                        "[,embedding.npz] (default: the shipped mien-face)")
    f.add_argument("--encoder", default=None, metavar="DIR",
                   help="a face3d-learn export (encoder + neural renderer): adds the neural-render panel")
    f.add_argument("--swap", choices=("tokens",), default=None,
                   help="tokens: render the source's geometry with the target's appearance tokens (TEASER)")
    f.add_argument("--relative", action="store_true",
                   help="transfer the source's expression relative to its median (removes person-specific "
                        "offsets)")
    f.add_argument("--smooth", action="store_true", help="One Euro-smooth coefficients and pose per track")
    f.add_argument("--start", type=float, default=None, metavar="SEC", help="first source time (s)")
    f.add_argument("--end", type=float, default=None, metavar="SEC", help="last source time (s)")
    f.add_argument("--every", type=int, default=1, metavar="N", help="process every N-th frame")
    f.add_argument("--height", type=int, default=None, metavar="PX",
                   help="panel height in px (default: the source's, at most 512)")
    f.set_defaults(func=run_transfer)


def run(args: argparse.Namespace) -> int:
    from mien.pipelines.render import render_video

    rep = render_video(args.video, args.tokenizer, args.output, args.render_kind, subject=args.subject,
                       target_subject=getattr(args, "target_subject", None),
                       anchor=getattr(args, "anchor", "auto"), start=args.start, end=args.end,
                       every=args.every, size=args.size, device=args.device, batch_size=args.batch_size,
                       analysis=args.analysis)
    anchor = f", swap anchored at the {rep.anchor}" if rep.anchor else ""
    print(f"mien render {rep.kind}: {rep.frames} frames ({rep.faces} with a face), {rep.width}x{rep.height} "
          f"at {rep.fps:.2f} fps{anchor}, {rep.seconds:.1f} s -> {rep.output}")
    return 0


def run_face3d(args: argparse.Namespace) -> int:
    from mien.pipelines.face3d import render_face3d

    if (args.obj or args.gltf) and not args.export_mesh:
        raise ValueError("--obj and --gltf need --export-mesh DIR")
    rep = render_face3d(args.video, args.output, model=args.model, smooth=args.smooth, start=args.start,
                        end=args.end, every=args.every, max_faces=args.max_faces, height=args.height,
                        analysis=args.analysis, export_mesh=args.export_mesh, obj=args.obj,
                        gltf=args.gltf, encoder=args.encoder)
    print(f"mien render face3d: {rep.frames} frames ({rep.faces} faces), {rep.width}x{rep.height} at "
          f"{rep.fps:.2f} fps, {rep.seconds:.1f} s -> {rep.output}")
    if rep.mesh_files:
        print(f"mesh sequence: {rep.mesh_files[0]} (+ {len(rep.mesh_files) - 1} .obj/.glb files)")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    from mien.pipelines.face3d_transfer import expression_transfer

    rep = expression_transfer(args.source, args.target, args.output, model=args.model, smooth=args.smooth,
                              relative=args.relative, start=args.start, end=args.end, every=args.every,
                              height=args.height, encoder=args.encoder, swap=args.swap)
    print(f"mien render expression-transfer: {rep.frames} frames ({rep.transferred} transferred), "
          f"{rep.width}x{rep.height} at {rep.fps:.2f} fps [{' | '.join(rep.panels)}], {rep.seconds:.1f} s "
          f"-> {rep.output}")
    return 0
