"""The official `openai` Python package against Easel's OpenAI-compatible dialect.

Run by `crates/easel-api/tests/openai.rs` (`official_python_client`) with:
  EASEL_BASE_URL  the dialect's base URL (http://127.0.0.1:PORT/openai/v1)
  EASEL_KEY       an Easel API key
  EASEL_IMAGE     a 64x64 PNG to edit
  EASEL_MASK      a 64x64 PNG mask whose transparent pixels mark the area to edit
The server's default model makes 64x64 images in 2 steps. Decoded sizes are read from the
PNG header, so nothing but `openai` is needed.
"""

import base64
import os
import struct
import sys
import urllib.request

import openai
from openai import OpenAI


def png_size(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR", "no IHDR chunk"
    return struct.unpack(">II", data[16:24])


def check(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
    print("ok:", what)


client = OpenAI(
    base_url=os.environ["EASEL_BASE_URL"],
    api_key=os.environ["EASEL_KEY"],
    max_retries=0,
)
image_path = os.environ["EASEL_IMAGE"]
mask_path = os.environ["EASEL_MASK"]

# images.generate: URLs.
r = client.images.generate(prompt="a red fox in the snow", n=2, size="64x64")
check(len(r.data) == 2, "generate returns n=2 images")
for d in r.data:
    data = urllib.request.urlopen(d.url).read()
    check(png_size(data) == (64, 64), f"generated image at its URL is 64x64: {png_size(data)}")

# images.generate: base64, a size outside OpenAI's list, an Easel extension field.
r = client.images.generate(
    prompt="a red fox",
    model="tiny",
    size="96x64",
    response_format="b64_json",
    extra_body={"steps": 2, "seed": 3},
)
size = png_size(base64.b64decode(r.data[0].b64_json))
check(size == (96, 64), f"b64_json image decodes to 96x64: {size}")
check(r.data[0].revised_prompt == "a red fox", "revised_prompt is the prompt")

# images.edit: image and mask files (multipart), transparent = edit.
with open(image_path, "rb") as image, open(mask_path, "rb") as mask:
    r = client.images.edit(
        image=image,
        mask=mask,
        prompt="a boat on a lake",
        n=2,
        size="64x64",
        response_format="b64_json",
    )
check(len(r.data) == 2, "edit with a mask returns n=2 images")
for d in r.data:
    size = png_size(base64.b64decode(d.b64_json))
    check(size == (64, 64), f"edited image is 64x64: {size}")

# images.edit without a mask (img2img), answered with a URL.
with open(image_path, "rb") as image:
    r = client.images.edit(image=image, prompt="a watercolor painting")
data = urllib.request.urlopen(r.data[0].url).read()
check(png_size(data) == (64, 64), "edit without a mask: 64x64")

# models.list
ids = [m.id for m in client.models.list()]
check("tiny" in ids, f"models.list has the model: {ids}")

# embeddings.create: the SDK asks for base64 by default and decodes it.
e = client.embeddings.create(model="tiny", input=["a red fox", "a red fox", "a blue car"])
vecs = [d.embedding for d in e.data]
check(len(vecs) == 3 and len(vecs[0]) > 0, f"embeddings: 3 vectors of {len(vecs[0])}")
norm = sum(x * x for x in vecs[0]) ** 0.5
check(abs(norm - 1.0) < 1e-4, f"embeddings are unit length: {norm}")
check(vecs[0] == vecs[1] and vecs[0] != vecs[2], "same text same vector, others differ")
check(e.usage.prompt_tokens == 15, f"usage.prompt_tokens: {e.usage.prompt_tokens}")

# Errors arrive as the SDK's exceptions, with OpenAI's fields.
try:
    client.images.generate(prompt="x", model="no-such-model")
    check(False, "an unknown model fails")
except openai.NotFoundError as e:
    check(e.code == "model_not_found", f"unknown model: NotFoundError, code {e.code}")
try:
    client.images.generate(prompt="x", n=0)
    check(False, "n=0 fails")
except openai.BadRequestError as e:
    check(e.param == "n", f"n=0: BadRequestError naming param {e.param}")
try:
    OpenAI(base_url=os.environ["EASEL_BASE_URL"], api_key="wrong", max_retries=0).models.list()
    check(False, "a wrong key fails")
except openai.AuthenticationError:
    check(True, "wrong key: AuthenticationError")

print("all checks passed")
