#!/usr/bin/python3
"""Tiny JPEG fixtures for tests/engine/test_images.c, decoded by PIL.

  /usr/bin/python3 tests/engine/make_image_fixtures.py [OUT_DIR]

Writes OUT_DIR (default tests/engine/fixtures/images) with, for each KIND in
rgb, grey, progressive, cmyk:
  KIND.jpg          a 40 x 30 JPEG written by PIL (cmyk: PIL's Adobe CMYK,
                    stored inverted as Photoshop does)
  KIND.ppm          PIL's decode, Image.open(f).convert("RGB"), at full size
and for rgb.jpg only:
  rgb_resize64.ppm  .resize((64, 64), BILINEAR): upscaling, where PIL's
                    bilinear is plain half-pixel bilinear like the engine's
  rgb_crop64.ppm    torchvision-style Resize(72) (short side: 96 x 72) then
                    the centre 64 x 64 crop (offsets round((n - 64) / 2))
libjpeg-turbo decodes for PIL and for the engine, so the full-size pixels must
agree exactly (within 1 allowed); the resized ones within PIL's 8-bit rounding.
Total size: a few tens of KB, committed.
"""
import os
import sys

import numpy as np
from PIL import Image

W, H = 40, 30


def content(seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    r = 128 + 90 * np.sin(x / 7.0) * np.cos(y / 5.0)
    g = 60 + 3.5 * x + 2.0 * y
    b = 200 - 4.0 * y + 20 * (x > 22)
    a = np.stack([r, g, b], axis=2) + rng.normal(0, 6, size=(H, W, 3))
    return Image.fromarray(np.uint8(np.clip(a, 0, 255)), "RGB")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures", "images")
    os.makedirs(out, exist_ok=True)
    im = content(1)
    im.save(os.path.join(out, "rgb.jpg"), quality=90)
    im.convert("L").save(os.path.join(out, "grey.jpg"), quality=90)
    content(2).save(os.path.join(out, "progressive.jpg"), quality=85, progressive=True)
    content(3).convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=90)
    for kind in ("rgb", "grey", "progressive", "cmyk"):
        dec = Image.open(os.path.join(out, kind + ".jpg"))
        dec.convert("RGB").save(os.path.join(out, kind + ".ppm"))
    dec = Image.open(os.path.join(out, "rgb.jpg")).convert("RGB")
    dec.resize((64, 64), Image.BILINEAR).save(os.path.join(out, "rgb_resize64.ppm"))
    # Resize(72): short side 72, long int(72 * 40 / 30) = 96; CenterCrop(64)
    nw, nh = int(72 * W / H), 72
    big = dec.resize((nw, nh), Image.BILINEAR)
    left, top = int(round((nw - 64) / 2.0)), int(round((nh - 64) / 2.0))
    big.crop((left, top, left + 64, top + 64)).save(os.path.join(out, "rgb_crop64.ppm"))
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print("wrote %s (%d files, %d bytes)" % (out, len(os.listdir(out)), total))


if __name__ == "__main__":
    main()
