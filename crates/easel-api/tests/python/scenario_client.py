"""The official `scenario-sdk` Python package against Easel's Scenario dialect.

Run by `crates/easel-api/tests/scenario.rs` (`official_python_client`) with:
  EASEL_BASE_URL    the dialect's base URL (http://127.0.0.1:PORT/scenario/v1)
  EASEL_API_KEY     the key id of an Easel key (Scenario's api_key)
  EASEL_API_SECRET  its secret part (Scenario's api_secret)
  EASEL_ADMIN_API_KEY, EASEL_ADMIN_API_SECRET  an admin's pair (another user on the same
                    canvas)
The server has the tiny model `tiny` (64x64, 2 steps by default). Its worker holds each job
running until the test sees the first job canceled, so the first check cancels a running
job. Decoded sizes are read from the PNG header, so nothing but `scenario_sdk` is needed.
"""

import base64
import os
import struct
import sys
import time
import urllib.request

import httpx
import scenario_sdk
from scenario_sdk import Scenario


def png_size(data: bytes) -> tuple:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR", "no IHDR chunk"
    return struct.unpack(">II", data[16:24])


def check(cond, what):
    if not cond:
        print("FAILED:", what, file=sys.stderr)
        sys.exit(1)
    print("ok:", what)


def tiny_png(width: int, height: int) -> bytes:
    """A solid grey PNG, written by hand (zlib is in the standard library)."""
    import zlib

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + b"\x80\x80\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


client = Scenario(
    api_key=os.environ["EASEL_API_KEY"],
    api_secret=os.environ["EASEL_API_SECRET"],
    base_url=os.environ["EASEL_BASE_URL"],
    max_retries=0,
)


def generate(endpoint: str, body: dict) -> dict:
    """The SDK has no typed method for the diffusion endpoints: its generic `post`."""
    return client.post(f"/generate/{endpoint}", body=body, cast_to=object)


def wait(job_id: str, until=("success", "failure", "canceled")):
    for _ in range(1200):
        job = client.jobs.retrieve(job_id).job
        if job.status in until:
            return job
        time.sleep(0.05)
    check(False, f"job {job_id} reached {until}")


# 1. Cancel a running job: the worker holds it running.
running = generate("txt2img", {"modelId": "tiny", "prompt": "to cancel", "numSamples": 1})
job_id = running["job"]["jobId"]
wait(job_id, until=("in-progress",))
canceled = client.jobs.trigger_action(job_id, action="cancel")
check(canceled.job.job_id == job_id, "jobs.trigger_action answers the job")
job = wait(job_id)
check(job.status == "canceled", f"the running job was canceled ({job.status})")
history = [h.status for h in job.status_history]
check(history == ["queued", "in-progress", "canceled"], f"statusHistory {history}")

# 2. txt2img, polled with jobs.retrieve, its asset read and downloaded.
created = generate("txt2img", {"modelId": "tiny", "prompt": "a red fox", "numSamples": 1,
                               "width": 64, "height": 96, "seed": "7"})
check(created["inference"]["type"] == "txt2img", "the answer carries the inference")
check(created["creativeUnitsCost"] >= 1, "and its cost")
job = wait(created["job"]["jobId"])
check(job.status == "success", f"txt2img succeeded ({job.status})")
check(job.progress == 1, "progress 1 when done")
asset_id = job.metadata.asset_ids[0]
asset = client.assets.retrieve(asset_id).asset
check(asset.id == asset_id and asset.kind == "image", "assets.retrieve reads the output")
data = urllib.request.urlopen(asset.url).read()
check(png_size(data) == (64, 96), f"the signed URL gives a 64x96 PNG ({png_size(data)})")

# 3. Upload an image, then img2img and inpaint with it.
up = client.assets.upload(name="grey.png", image=base64.b64encode(tiny_png(64, 64)).decode())
upload_id = up.asset.id
check(upload_id.startswith("asset_"), "assets.upload stores the image")
job = wait(generate("img2img", {"modelId": "tiny", "prompt": "a cat", "image": upload_id,
                                "strength": 0.6, "numSamples": 1})["job"]["jobId"])
check(job.status == "success", "img2img with an uploaded asset")
mask = "data:image/png;base64," + base64.b64encode(tiny_png(64, 64)).decode()
job = wait(generate("inpaint", {"modelId": "tiny", "prompt": "a cat", "image": upload_id,
                                "mask": mask, "numSamples": 1})["job"]["jobId"])
check(job.status == "success", "inpaint with an asset and a data URL mask")

# 4. A dry run: 269 with a cost, nothing queued.
before = [j.job_id for j in client.jobs.list(page_size=200)]
raw = client.post("/generate/txt2img", body={"modelId": "tiny", "prompt": "x", "numSamples": 2},
                  cast_to=httpx.Response, options={"params": {"dryRun": "true"}})
check(raw.status_code == 269, f"a dry run answers 269 ({raw.status_code})")
check(raw.json()["creativeUnitsCost"] >= 1, "with its cost")
after = [j.job_id for j in client.jobs.list(page_size=200)]
check(before == after, "and queues nothing")

# 5. Auto-pagination with a page size of 1 walks every asset once.
ids = [a.id for a in client.assets.list(page_size=1)]
check(len(ids) == len(set(ids)) and len(ids) >= 4, f"assets.list pages through {len(ids)} assets")
check(upload_id in ids and asset_id in ids, "and finds them all")

# 6. Models.
models = [m.name for m in client.models.list()]
check("tiny" in models, f"models.list shows the registry ({models})")

# 7. The library: tags, collections, search.
client.assets.update_tags(upload_id, add=["grey", "sample"])
tags = {t.tag_name: t.item_count for t in client.tags.list()}
check(tags.get("grey") == 1, f"tags.list shows the tag and its count ({tags})")
tagged = [a.id for a in client.assets.list(tags="grey")]
check(tagged == [upload_id], f"assets.list filters by tag ({tagged})")
col = client.collections.create(name="picks").collection
client.collections.assets.add(col.id, asset_ids=[upload_id, asset_id])
check(client.collections.retrieve(col.id).collection.asset_count == 2,
      "collections.assets.add: the count follows")
client.collections.assets.remove(col.id, asset_ids=[asset_id])
check(client.collections.retrieve(col.id).collection.asset_count == 1,
      "collections.assets.remove: the count follows")
in_col = [a.id for a in client.assets.list(collection_id=col.id)]
check(in_col == [upload_id], f"assets.list by collection ({in_col})")
hits = [h.id for h in client.search.asset_search(query="fox")]
check(asset_id in hits, "search.asset_search finds an output by a word of its prompt")
hits = [h.id for h in client.search.asset_search(query="grey")]
check(upload_id in hits, "and an upload by its name and tags")
# Auto-pagination: the client asks for the next pages with ?offset=N.
every = [h.id for h in client.search.asset_search(filter="type = uploaded", limit=1)]
check(len(every) == len(set(every)) and upload_id in every,
      f"search pages with the client's offsets ({every})")
every = [h.id for h in client.search.asset_search(query="a", limit=1)]
check(len(every) == len(set(every)) >= 3, f"one hit a page, each once ({len(every)})")
names = [h.name for h in client.search.model_search(query="tiny")]
check(names == ["tiny"], f"search.model_search finds the model ({names})")

# 8. A model of one's own (a composition of `tiny`) whose default preset, made from a job,
#    fills what a later generation leaves out.
own = client.models.create(name="Python foxes", base_model_id="tiny").model
check(own.id.startswith("model_") and own.type == "sd-1_5-composition",
      f"models.create makes a composition ({own.id}, {own.type})")
first = wait(generate("txt2img", {"modelId": own.id, "prompt": "a fox", "numSamples": 1,
                                  "numInferenceSteps": 3})["job"]["jobId"])
check(first.status == "success", "a generation runs on the user's model")
preset = client.models.presets.create(own.id, inference_id=first.job_id, is_default=True).preset
check(preset.is_default and preset.parameters.num_inference_steps == 3,
      f"models.presets.create keeps the job's parameters ({preset.parameters})")
listed = [p.id for p in client.models.presets.list(own.id).presets]
check(listed == [preset.id], f"models.presets.list shows it ({listed})")
later = wait(generate("txt2img", {"modelId": own.id, "prompt": "another fox"})["job"]["jobId"])
steps = later.metadata.input.get("numInferenceSteps")
samples = later.metadata.input.get("numSamples")
check(later.status == "success" and steps == 3 and samples == 1,
      f"the default preset applies to a later generation (steps {steps}, samples {samples})")
client.models.delete(own.id)

# 9. A two-part upload: announced, each part PUT to its signed URL (no key), completed into an
#    asset of the right size, in the collection asked for.
photo = tiny_png(48, 40)
half = len(photo) // 2
up = client.uploads.create(file_name="photo.png", file_size=len(photo), content_type="image/png",
                           parts=2, kind="image",
                           asset_options={"collectionIds": [col.id]}).upload
check(up.status == "pending" and [p.number for p in up.parts] == [1, 2],
      f"uploads.create gives a URL per part ({up.status}, {len(up.parts)} parts)")
for part, chunk in zip(up.parts, [photo[:half], photo[half:]]):
    put = httpx.put(part.url, content=chunk)
    check(put.status_code == 200, f"part {part.number} PUT to its URL ({put.status_code})")
done = client.uploads.trigger_action(up.id, action="complete").upload
check(done.status == "complete" and done.entity_id.startswith("asset_"),
      f"uploads.trigger_action completes it ({done.status}, {done.entity_id})")
check(client.uploads.retrieve(up.id).upload.status == "complete", "uploads.retrieve agrees")
made = client.assets.retrieve(done.entity_id).asset
data = urllib.request.urlopen(made.url).read()
check(data == photo and png_size(data) == (48, 40),
      f"the asset holds the file, {len(data)} bytes of {len(photo)}")
in_col = [a.id for a in client.assets.list(collection_id=col.id)]
check(done.entity_id in in_col, "in the collection asked for")

# 10. A zip of assets: asked for, its status read, its URL downloaded and listed.
import io
import zipfile
req = client.assets.download.request_batch(
    query={"asset_ids": [upload_id, done.entity_id], "inference_ids": [], "model_ids": []},
    options={"file_name_template": "<id>", "flat": True})
status = client.assets.download.get_status(req.job_id)
check(status.job_status == "success" and status.download_url,
      f"assets.download.get_status gives the archive ({status.job_status})")
archive = zipfile.ZipFile(io.BytesIO(urllib.request.urlopen(status.download_url).read()))
names = sorted(archive.namelist())
check(len(names) == 2 and archive.read(names[0]) and archive.testzip() is None,
      f"the zip's URL downloads and lists the assets ({names})")

# 11. A canvas: made, locked by another user (an admin reaches every canvas), refused to its
# owner with 409 while that lock holds, saved with the lock's id, unlocked, its snapshots listed.
import datetime
import json
admin = Scenario(api_key=os.environ["EASEL_ADMIN_API_KEY"],
                 api_secret=os.environ["EASEL_ADMIN_API_SECRET"],
                 base_url=os.environ["EASEL_BASE_URL"], max_retries=0)
canvas = client.assets.upload(name="board", canvas=json.dumps({"layers": []})).asset
check(canvas.kind == "json" and canvas.source == "canvas", f"assets.upload makes a canvas ({canvas.kind})")
until = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)).isoformat()
held = admin.assets.lock(canvas.id, lock_expires_at=until)
check(held.lock_id and held.asset.metadata.lock_expires_at, "assets.lock gives the lock's id")
try:
    client.assets.lock(canvas.id, lock_expires_at=until)
    check(False, "a lock held by another user is refused")
except scenario_sdk.ConflictError as e:
    check(e.status_code == 409, "a lock held by another user is ConflictError (409)")
try:
    client.assets.update(canvas.id, canvas=json.dumps({"layers": [1]}))
    check(False, "a save without the lock's id is refused")
except scenario_sdk.ConflictError:
    check(True, "and so is a save without the lock's id")
admin.assets.update(canvas.id, canvas=json.dumps({"layers": [1]}), lock_id=held.lock_id)
admin.assets.unlock(canvas.id, lock_id=held.lock_id)
snaps = [s.raw_data for s in client.assets.list_snapshots(canvas.id)]
check(snaps == ['{"layers": [1]}', '{"layers": []}'],
      f"assets.list_snapshots lists the saves, newest first ({snaps})")
check(urllib.request.urlopen(client.assets.retrieve(canvas.id).asset.url).read() == b'{"layers": [1]}',
      "the canvas's URL gives its current document")

# 12. A bad credential is the SDK's authentication error.
bad = Scenario(api_key=os.environ["EASEL_API_KEY"], api_secret="wrong",
               base_url=os.environ["EASEL_BASE_URL"], max_retries=0)
try:
    bad.jobs.list()
    check(False, "a wrong secret is refused")
except scenario_sdk.AuthenticationError as e:
    check(e.status_code == 401, "a wrong secret is AuthenticationError (401)")

print("all checks passed")
