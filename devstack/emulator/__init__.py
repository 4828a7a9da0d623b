"""A local emulator of the 4o Image API, Flux Kontext and the Market (api.kie.ai), per docs/upstream.md.

Run it alone::

    python -m devstack.emulator --port 8099 --api-key dev-key --generation-seconds 2

or from Python (port 0 picks a free port)::

    from devstack.emulator import EmulatorConfig, EmulatorServer
    with EmulatorServer(EmulatorConfig(generation_seconds=0.2)) as server:
        server.base_url  # http://127.0.0.1:<port>

It binds 127.0.0.1 unless ``--host`` says otherwise (the sam local container listens on 0.0.0.0 inside
its own network) and, unless ``allow_external_callbacks`` is set, delivers callbacks to loopback hosts
only (other deliveries are recorded as ``blocked``).

Upstream endpoints (Bearer auth, ``{"code","msg","data"}`` envelopes, errors in the body code)::

    POST /api/v1/gpt4o-image/generate          GET  /api/v1/gpt4o-image/record-info?taskId=
    POST /api/v1/gpt4o-image/download-url      POST /api/v1/common/download-url
    POST /api/v1/flux/kontext/generate         GET  /api/v1/flux/kontext/record-info?taskId=
    POST /api/v1/jobs/createTask               GET  /api/v1/jobs/recordInfo?taskId=
    GET  /api/v1/chat/credit                   GET  /s/<taskId>_<index>_<unixSec>_<4 digits>.png

Flux Kontext tasks share the key, the generate rate limit (20 per 10 s, both APIs together), the
credits (``credits_per_image`` per task) and callback delivery with 4o; each API's record-info and
download-url answer "record is null" for the other's tasks. A Flux task makes one JPEG (or PNG) in
its ``aspectRatio``: ``resultImageUrl`` ``/s/<taskId>_0_<unixSec>_<4 digits>.jpg`` and
``originImageUrl`` ``/s/<taskId>_origin_...jpg`` (same bytes, 403 after ``origin_ttl_seconds``);
its callback is always the single-image shape, its failures 400, 500 or 501 (any other fail code is
sent as 500), its record-info has no ``status``/``progress``, ISO 8601 times and successFlag 3 for
a failed generation (``fail_flag=2``: 2, creation failed). Flux has no download-url of its own.

Market tasks (``market.py``; the per-model rules and canvases in ``market_validation.py``, a table of
the emulator's own that tests/emulator/test_market_agreement.py checks against the bundle's registry)
share the same key, window, credits (``credits_per_image`` per image, given back when a task fails)
and delivery. Every Market error is HTTP 200 with the code in the body, 429 included. recordInfo walks
waiting -> queuing -> generating -> success/fail and is limited to ``market_record_info_rate_limit``
(10) queries per second per task; results are ``/s/<taskId>_<i>_<unixSec>_<4 digits>.png|jpg|webp`` in
the model's canvas (aspect ratio, 1K/2K/4K or size preset) and format, as many as ``num_images``; the
callback is recordInfo-shaped (``state``, ``resultJson`` string, ``failCode`` string, code 501 on
failure). The common download-url re-mints Market links; the 4o one answers "record is null".

Input images
------------
Every input URL a task names (4o ``filesUrl``/``maskUrl``, Flux ``inputImage``, a Market model's image
fields) is fetched when the task completes (``inputs.py``), loopback hosts only unless
``allow_external_inputs``; each fetch is recorded (``GET /admin/tasks/<id>`` ``inputs``). One that cannot
be downloaded, or is not a PNG/JPEG/WebP, fails a 4o task 451 (400: over 25 MiB, or a mask of another
size than its image) and a Flux or Market task 500, the message naming the field.

Fault switches
--------------
Run-wide (``EmulatorConfig(faults=...)``, ``--faults``, ``POST /admin/faults``) or per task, by a
marker anywhere in the prompt; task markers override run-wide values::

    marker := "[fault:" item ("," item)* "]"      e.g. "a cat [fault:duplicate=3,task_key=task_id]"
    item   := key | key "=" value                 keys case-insensitive, "-" == "_"; a bare key
                                                  means true, or the default shown in brackets

    duplicate=N [2]     deliver the callback N times in a row (each copy a full delivery)
    concurrent=N [2]    N copies of the callback leave at the same moment (1..8)
    drop                never deliver the callback (recorded as dropped)
    fail=C [500]        the task fails: 400, 451, 500, or 501 (501 uses the single-image shape)
    shape=flux|4o       4o callback body shape; flux = {"info":{"originImageUrl","resultImageUrl"}}
    submit=C [500]      generate answers code C (400 401 402 404 422 429 455 500 505 550)
    trickle=S [3]       image bodies dribble out over S seconds
    truncate            image responses announce a Content-Length twice what is sent
    oversize=N          image bodies padded (still a decodable PNG/JPEG) to N bytes [25 MiB + 1 MiB]
    html                image URLs answer 200, the image's Content-Type, with an HTML page
    expired             result and presigned links answer 403 AccessDenied "Request has expired"
    stale_links         result URLs answer 403 "Request has expired"; links minted by download-url work
    image_5xx=N [1]     the first N GETs of each image answer 503 SlowDown, later ones succeed
    slow_first=N [1]    the first N GETs of each image trickle over 30 s, later ones are prompt
    result_key=resultUrls|result_urls     record-info response key (default resultUrls)
    time_format=ms|string|iso             createTime/completeTime (default: epoch ms; Flux iso)
    download_form=auto|reference|quickstart  download-url answer: data string or data.downloadUrl
                                          (auto: quickstart when the request sent imageUrl)
    task_key=taskId|task_id|both          callback data key holding the task id
    fail_flag=2|3 [3]   successFlag reported for failed tasks (default: 4o 2, Flux 3)
    stall               the task never finishes by itself (POST /admin/tasks/<id>/complete does)
    gen=S               this task's generation time in seconds
    submit_delay=S [30] generate creates the task but answers only after S seconds
    mirror_http         error envelopes also carry the code as HTTP status (429 always does)
    tolerance_error=C [500]  Flux: the code for a safetyTolerance out of range (default 422)
    market_fail_code=501|reason [reason]  Market failure callback code: 501 (default) or the failCode
    market_format=png|jpeg|webp [webp]    Market results of a model without a format field (default png)
    market_blank=null|empty [empty]       Market recordInfo failCode/failMsg before/without a failure

Market tasks honour fail (400, 500, 501; 451 is sent as failCode "500"), drop, duplicate, concurrent,
submit, submit_delay, stall, gen, task_key, mirror_http and the file faults, from markers in
``input.prompt``; shape, result_key, download_form, fail_flag, time_format and tolerance_error do
not concern them.

An unknown key in a prompt marker makes generate answer 422, so typos do not go unnoticed.

Admin endpoints (no auth, loopback clients only; JSON)::

    GET    /admin/health                      {"ok": true, "baseUrl": ...}
    GET    /admin/faults                      {"faults": {...}}
    POST   /admin/faults                      {"duplicate": 3} | {"faults": {...}, "replace": bool}
                                              | {"spec": "duplicate=3,drop"}  -> {"faults": {...}}
    PUT    /admin/faults                      the same, replacing instead of merging
    DELETE /admin/faults  (or POST /admin/faults/clear)                    -> {"faults": {}}
    GET    /admin/tasks                       {"tasks": [taskId, ...]}
    GET    /admin/tasks/<taskId>              api, state, request, faults, images (sha256), deliveries,
                                              served, inputs (what it fetched)
    POST   /admin/tasks/<taskId>/complete     {} or {"fail": 500, "message": "..."}  (+ "completedNow")
    POST   /admin/tasks/<taskId>/redeliver    send the callback again now  (+ "redelivered")
    GET    /admin/deliveries?taskId=<id>      {"taskId", "deliveries": [...]}
    GET    /admin/images                      {"generated": [...], "served": [...], "fetched": [inputs...]}
    GET|POST /admin/credits                   {"credits": N}
    POST   /admin/reset                       forget tasks, faults, links, counters
"""

from .callbacks import sign
from .config import EmulatorConfig
from .faults import FAULT_KEYS, Faults, FaultSpecError, parse_fault_spec, parse_prompt_markers
from .server import EmulatorServer

__all__ = [
    "FAULT_KEYS",
    "EmulatorConfig",
    "EmulatorServer",
    "FaultSpecError",
    "Faults",
    "parse_fault_spec",
    "parse_prompt_markers",
    "sign",
]
