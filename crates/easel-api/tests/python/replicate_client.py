"""The official `replicate` Python package against Easel's Replicate dialect.

Run by `crates/easel-api/tests/replicate.rs` (`official_python_client`) with:
  EASEL_BASE_URL  the dialect's base URL without /v1 (http://127.0.0.1:PORT/replicate)
  EASEL_KEY       an Easel API key
The server has the model `tiny` (64x64 images in 2 steps by default). Decoded sizes are
read from the PNG header, so nothing but `replicate` is needed.
"""

import os
import struct
import sys
import urllib.request

import replicate
from replicate.exceptions import ModelError, ReplicateError


def png_size(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR", "no IHDR chunk"
    return struct.unpack(">II", data[16:24])


def fetch(output) -> bytes:
    # http:// URLs stay strings; https:// and data: URLs become FileOutput objects.
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

# run(): POST /v1/models/{owner}/{name}/predictions with `Prefer: wait`.
out = client.run("easel/tiny", input={"prompt": "a red fox", "seed": 4})
check(png_size(fetch(out)) == (64, 64), "run returns one image at 64x64")

# Several outputs: a list.
outs = client.run("easel/tiny", input={"prompt": "a fox", "num_outputs": 2, "width": 96})
check(isinstance(outs, list) and len(outs) == 2, "run with num_outputs=2 returns a list")
check(all(png_size(fetch(o)) == (96, 64) for o in outs), "both images are 96x64")

# run("owner/name:version"): a prediction by version, then the version looked up.
out = client.run("easel/tiny:tiny", input={"prompt": "a fox"})
check(png_size(fetch(out)) == (64, 64), "run by owner/name:version")

# predictions.create / wait / reload / progress / get / list.
p = client.predictions.create(version="tiny", input={"prompt": "a cat", "seed": 9})
check(p.status in ("starting", "processing", "succeeded"), f"created: {p.status}")
p.wait()
check(p.status == "succeeded", f"waited until succeeded: {p.status}")
check(p.progress is not None and p.progress.current == p.progress.total > 0,
      f"progress parsed from the logs: {p.progress}")
check(p.metrics.get("predict_time") is not None, "metrics.predict_time")
again = client.predictions.get(p.id)
# Output URLs are signed when answered (a fresh `iat`, time of issue): compare the assets.
def unsigned(output):
    outs = output if isinstance(output, list) else [output]
    return [str(o).split("?")[0] for o in outs]
check(again.id == p.id and unsigned(again.output) == unsigned(p.output), "predictions.get")
page = client.predictions.list()
check(any(x.id == p.id for x in page.results), "predictions.list holds it")
canceled = client.predictions.cancel(p.id)
check(canceled.status == "succeeded", "canceling a finished prediction changes nothing")

# models.get.
m = client.models.get("easel/tiny")
check(m.owner == "easel" and m.name == "tiny" and m.latest_version is not None, "models.get")

# Errors: a 422 is a ReplicateError with the status.
try:
    client.predictions.create(version="tiny", input={"prompt": "x", "width": 100})
    check(False, "a bad width is refused")
except ReplicateError as e:
    check(e.status == 422, f"a bad width is a 422 ReplicateError: {e}")
try:
    client.run("easel/no-such-model", input={"prompt": "x"})
    check(False, "an unknown model is refused")
except ReplicateError as e:
    check(e.status == 404, f"an unknown model is a 404: {e}")
print("ok: run and predictions with the official client")
