"""The official `replicate` Python package against a tiny Sana model on Easel's Replicate
dialect: Sana-spec inputs (model_variant, pag_guidance_scale) produce an image, the same seed
gives the same bytes, and the logs say the local engine applied PAG.

Run by `crates/easel-api/tests/replicate.rs` (`sana_predictions_apply_pag_on_the_local_engine`):
  EASEL_BASE_URL  the dialect's base URL without /v1 (http://127.0.0.1:PORT/replicate)
  EASEL_KEY       an Easel API key
The server has the tiny Sana model `sana`, aliased `600M-512px-multilang`, 64x64 by default.
"""

import os
import struct
import sys
import urllib.request

import replicate


def png_size(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def fetch(output) -> bytes:
    if hasattr(output, "read"):
        return output.read()
    return urllib.request.urlopen(str(output)).read()


def check(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
    print("ok:", what)


client = replicate.Client(
    api_token=os.environ["EASEL_KEY"], base_url=os.environ["EASEL_BASE_URL"]
)
client.poll_interval = 0.1
inp = {
    "prompt": "a cyberpunk cat with a neon sign that says Sana",
    "seed": 8,
    "num_inference_steps": 2,
    "guidance_scale": 5,
    "pag_guidance_scale": 2,
    "model_variant": "600M-512px-multilang",
}
a = fetch(client.run("easel/sana", input=inp))
check(png_size(a) == (64, 64), "run on a Sana model returns a 64x64 image")
b = fetch(client.run("easel/sana", input=inp))
check(a == b, "the same seed gives the same image")
p = client.predictions.create(version="600M-512px-multilang", input=inp)
p.wait()
check(p.status == "succeeded", f"prediction by model_variant: {p.status} {p.error}")
check(
    "pag_guidance_scale 2 was applied by the local engine" in (p.logs or ""),
    f"the logs say PAG was applied: {p.logs}",
)
print("ok: Sana with the official client")
