"""Submitting a task: mint our task id and record the task first, then ask the upstream.

The task exists, owned by its client and with the hash of its callback capability, before the upstream
hears of it. So whatever happens to the generate call, nothing the upstream makes is ever unowned:
- a reply with the upstream's id confirms the task (`submitted`);
- no definite reply (a timeout, a lost connection, a 5xx without an envelope) leaves it `submitting`:
  its callback, which can only ever move this task, names the upstream's id; if none comes within
  SUBMIT_UNCONFIRMED_AFTER_SECONDS the reconciler ends it `failed` / submit_unconfirmed;
- a definite refusal withdraws it: the client gets the error and never sees a task.
With an Idempotency-Key, the key is claimed for the task id before anything else, so a retry always
answers with the task the first request made and never calls generate a second time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from image_pipeline.errors import (
    IdempotencyKeyReused,
    IdempotencyKeyTaskDeleted,
    InvalidIdempotencyKey,
    UpstreamError,
    UpstreamNoAnswer,
)
from image_pipeline.logic.inputs import NO_INPUTS, ResolvedInputs, with_references
from image_pipeline.logic.ports import Admission, ConfirmOutbox, IdempotencyStore, SubmissionRecords, Upstream
from image_pipeline.logic.records import confirm_submit
from image_pipeline.task_records import ConfirmSubmit, TaskStatus, iso, utc_now
from image_pipeline.tokens import hash_token, new_callback_token, new_task_id
from image_pipeline.upstream_requests import (
    FluxGenerateRequest,
    FluxKontextOptions,
    GenerateRequest,
    GenerationOptions,
    MarketOptions,
)

if TYPE_CHECKING:
    from image_pipeline.client_requests import TaskRequest

CONFIRM_ATTEMPTS = 3
CONFIRM_BACKOFF_SECONDS = 0.5
MAX_IDEMPOTENCY_KEY_CHARS = 255
# Visible ASCII and the space: what an HTTP header carries as it is, the same in every regex engine.
IDEMPOTENCY_KEY_PATTERN = "^[ -~]+$"


class SubmitTimes(NamedTuple):
    """When the reconciler looks at a task: a confirmed one, and one the upstream never confirmed."""

    reconcile_after: timedelta = timedelta(minutes=30)
    unconfirmed_after: timedelta = timedelta(hours=2)

    @classmethod
    def from_seconds(cls, reconcile_after: float, unconfirmed_after: float) -> SubmitTimes:
        return cls(timedelta(seconds=reconcile_after), timedelta(seconds=unconfirmed_after))


DEFAULT_TIMES = SubmitTimes()


class SubmittedTask(NamedTuple):
    task_id: str
    status: TaskStatus
    confirm_queued: bool = False  # confirmed upstream, but only the outbox could write it down
    repeated: bool = False  # an Idempotency-Key retry: the task an earlier request made

    @property
    def new(self) -> bool:
        """A generation this request asked for (not a retry answered with an earlier request's task)."""
        return not self.repeated

    @property
    def unconfirmed(self) -> bool:
        """A new task the upstream gave no definite answer for: it waits for its callback."""
        return self.new and self.status is TaskStatus.SUBMITTING


def check_request(
    options: TaskRequest, idempotency_key: str | None, *, check_webhook_url: Callable[[str], object]
) -> None:
    """A submission's own rules, before anything is claimed, recorded or asked for: its webhookUrl may
    be called (WebhookUrlError; checked again, resolved and pinned, when it is delivered), and its
    Idempotency-Key is 1 to MAX_IDEMPOTENCY_KEY_CHARS printable characters (InvalidIdempotencyKey)."""
    if options.webhookUrl:
        check_webhook_url(options.webhookUrl)
    if idempotency_key is not None and (
        not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY_CHARS
        or not re.fullmatch(IDEMPOTENCY_KEY_PATTERN.strip("^$"), idempotency_key)
    ):
        raise InvalidIdempotencyKey(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters of visible ASCII or spaces"
        )


def upstream_fields(generation: GenerationOptions | FluxKontextOptions | MarketOptions) -> dict[str, Any]:
    """The generate fields of a request, as recorded with the task (Flux's include its model)."""
    return generation.model_dump(exclude_none=True)


def image_count(generation: GenerationOptions | FluxKontextOptions | MarketOptions) -> int:
    """The images a generation asks for: what the client's daily quota counts."""
    if isinstance(generation, MarketOptions):
        return generation.image_count
    return generation.nVariants if isinstance(generation, GenerationOptions) else 1


def callback_url(callback_base: str, task_id: str, token: str) -> str:
    return f"{callback_base.rstrip('/')}/{task_id}?token={quote(token, safe='')}"


def request_hash(request: dict[str, Any]) -> str:
    """Which request an Idempotency-Key came with: the same body, in any key order, hashes the same."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def submit_task(
    options: TaskRequest,
    *,
    owner: str,
    callback_base: str,
    store: SubmissionRecords,
    upstream: Upstream,
    idempotency_key: str | None = None,
    claims: IdempotencyStore | None = None,
    admission: Admission | None = None,
    outbox: ConfirmOutbox | None = None,
    times: SubmitTimes = DEFAULT_TIMES,
    clock: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], None] = time.sleep,
    resolve_inputs: Callable[[], ResolvedInputs] | None = None,
) -> SubmittedTask:
    """Record the task under a new id of ours, then submit it upstream; returns our id and its status.

    `admission` (the client's daily images, its share of the generate window, the account's window)
    admits a new generation just before its task is recorded, never a retry answered from its key; it
    raises to refuse (RateLimited). Images the upstream refused to make are given back.

    `resolve_inputs` turns the request's input references (upload:, task:) into presigned links
    (logic.inputs.resolve_inputs); it runs before anything is admitted or recorded, and the task
    records the references, never the links.
    """
    key = idempotency_key if claims is not None else None
    claimed = _claim(options, owner, key, claims, store, clock) if key is not None else new_task_id()
    if isinstance(claimed, SubmittedTask):  # a retry, answered with the task the first request made
        return claimed
    task_id = claimed
    try:  # nothing recorded yet: a refusal here frees the key for a corrected retry
        inputs = resolve_inputs() if resolve_inputs is not None else NO_INPUTS
        generation = options.generation(inputs.links)
        give_back = admission.admit(owner, image_count(generation)) if admission is not None else None
    except Exception:
        if key is not None:
            _release(claims, owner, key, task_id)
        raise
    token = new_callback_token()
    now = clock()
    recorded = store.create_task(
        task_id,
        owner=owner,
        options=with_references(upstream_fields(generation), inputs.used, options.market_image_fields()),
        token_hash=hash_token(token),
        now=now,
        next_check_at=now + times.unconfirmed_after,
        webhook_url=options.webhookUrl,
        idempotency_key=key,
        inputs=inputs.used or None,
    )
    if not recorded:  # a concurrent retry of the same key recorded it (and calls the upstream) first
        task = store.get_task(task_id)
        return SubmittedTask(task_id, task.status if task else TaskStatus.SUBMITTING, repeated=True)
    try:
        upstream_task_id = _generate(generation, upstream, callback_url(callback_base, task_id, token))
    except UpstreamNoAnswer:
        # The upstream may have made the task (and charged for it): ours stands, and waits for its
        # callback or the reconciler's bound.
        return SubmittedTask(task_id, TaskStatus.SUBMITTING)
    except UpstreamError:
        # A definite refusal: no task exists upstream, so none may exist for the client either.
        with contextlib.suppress(Exception):  # it ends submit_unconfirmed otherwise, never unowned
            store.withdraw(task_id, clock())
        if key is not None:
            _release(claims, owner, key, task_id)
        if give_back is not None:
            with contextlib.suppress(Exception):  # at worst the client's quota counts images never made
                give_back()
        raise
    message = ConfirmSubmit(
        confirmTask=task_id,
        upstreamTaskId=upstream_task_id,
        nextCheckAt=iso(clock() + times.reconcile_after),
    )
    return _record_confirmation(message, store=store, outbox=outbox, clock=clock, sleep=sleep)


def _record_confirmation(
    message: ConfirmSubmit,
    *,
    store: SubmissionRecords,
    outbox: ConfirmOutbox | None,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> SubmittedTask:
    """The upstream's id written to the task (``submitted``), or, while DynamoDB keeps failing, handed
    to the outbox: the task stays ``submitting`` until its callback names the upstream id, and the
    outbox (SQS, another service) writes it sooner, so the reconciler can ask about it if none comes."""
    task_id = message.confirmTask
    if _confirm(message, store=store, clock=clock, sleep=sleep):
        return SubmittedTask(task_id, TaskStatus.SUBMITTED)
    if outbox is not None:
        with contextlib.suppress(Exception):
            outbox.send_confirm(message)
            return SubmittedTask(task_id, TaskStatus.SUBMITTING, confirm_queued=True)
    return SubmittedTask(task_id, TaskStatus.SUBMITTING)


def _claim(
    options: TaskRequest,
    owner: str,
    key: str,
    claims: IdempotencyStore | None,
    store: SubmissionRecords,
    clock: Callable[[], datetime],
) -> str | SubmittedTask:
    """Claim the Idempotency-Key for a new task id, or answer a retry with the task its key made."""
    assert claims is not None
    task_id = new_task_id()
    fingerprint = request_hash(options.model_dump(mode="json"))
    earlier = claims.claim(owner, key, fingerprint, task_id, clock())
    if earlier is None:
        return task_id
    if earlier.request_hash != fingerprint:
        raise IdempotencyKeyReused()
    task = store.get_task(earlier.task_id)
    if task is not None:
        if task.status is TaskStatus.DELETED:
            raise IdempotencyKeyTaskDeleted(earlier.task_id)
        return SubmittedTask(task.taskId, task.status, repeated=True)
    # Claimed, but the request that claimed it stopped before recording the task (so before calling
    # the upstream): this request carries on with the claimed id.
    return earlier.task_id


def _generate(
    generation: GenerationOptions | FluxKontextOptions | MarketOptions, upstream: Upstream, callback: str
) -> str:
    """The generate call of the task's API: the Market's createTask, Flux Kontext's or 4o's generate."""
    if isinstance(generation, MarketOptions):
        return upstream.create_market_task(generation.model, generation.input, callback)
    # The generation was validated as the client gave it (client_requests.TaskRequest.generation); what
    # it gains here is ours: the callback URL, and input links longer than a client's URL may be.
    if isinstance(generation, FluxKontextOptions):
        return upstream.generate_flux(
            FluxGenerateRequest.model_construct(**upstream_fields(generation), callBackUrl=callback)
        )
    return upstream.generate(
        GenerateRequest.model_construct(**upstream_fields(generation), callBackUrl=callback)
    )


def _release(claims: IdempotencyStore | None, owner: str, key: str, task_id: str) -> None:
    """Free the key of a task never made; if that fails, a retry is told to use another key."""
    if claims is not None:
        with contextlib.suppress(Exception):
            claims.release(owner, key, task_id)


def _confirm(
    message: ConfirmSubmit,
    *,
    store: SubmissionRecords,
    clock: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> bool:
    """Write the upstream's id down; False if storage kept failing."""
    for attempt in range(CONFIRM_ATTEMPTS):
        try:
            confirm_submit(message, store=store, clock=clock)
            return True
        except Exception:  # an AWS fault that outlived the SDK's retries: wait, then try again
            if attempt == CONFIRM_ATTEMPTS - 1:
                return False
            sleep(CONFIRM_BACKOFF_SECONDS * 2**attempt)
    return False
