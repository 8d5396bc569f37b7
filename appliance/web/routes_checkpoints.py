"""`/v1/checkpoints`: signed checkpoints as text/plain notes (public), listings as JSON (public), and
an on-demand cut (admin scope).

Reading needs no token: a checkpoint reveals only the log's size and root, and witnesses and
auditors must be able to fetch them. The notes are served byte for byte as signed.
"""

import base64
from datetime import date
from typing import Annotated, Any

import msgspec
from litestar import Controller, MediaType, Request, Response, get, post
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, QueryParameter

from appliance.core.entry import MAX_SAFE_INTEGER
from appliance.core.errors import InvalidInput
from appliance.service import Appliance
from appliance.store import checkpoints
from appliance.store.checkpoints import StoredCheckpoint
from appliance.store.errors import StoreUnavailable
from appliance.web.auth import require_scope
from appliance.web.errors import NotFound
from appliance.web.routes_read import SEQ_PARAM

NOTE_MEDIA_TYPE = MediaType.TEXT  # Litestar adds "; charset=utf-8"


class CheckpointOut(msgspec.Struct, frozen=True):
    """One checkpoint: tree size, root hash (standard base64, as in the note), when it was cut, the
    signed note; `day` is set for daily roots (the UTC day whose entries the tree holds)."""

    size: int
    root: str
    cut_at: str
    note: str
    day: str | None = None

    @classmethod
    def of(cls, checkpoint: StoredCheckpoint, day: date | None = None) -> "CheckpointOut":
        return cls(size=checkpoint.size, root=base64.b64encode(checkpoint.root).decode("ascii"),
                   cut_at=checkpoint.cut_at, note=checkpoint.note, day=None if day is None else day.isoformat())


class CheckpointPageOut(msgspec.Struct, frozen=True):
    """`GET /v1/checkpoints`: newest first; pass `next_cursor` back as `cursor` for the next page."""

    checkpoints: list[CheckpointOut]
    next_cursor: str | None = None


def _appliance(request: Request[Any, Any, Any]) -> Appliance:
    return request.app.state.appliance


def _note(checkpoint: StoredCheckpoint, status_code: int = 200) -> Response[str]:
    return Response(checkpoint.note, media_type=NOTE_MEDIA_TYPE, status_code=status_code)


def _cursor(cursor: str | None, daily: bool) -> Any:
    if cursor is None:
        return None
    try:
        before = date.fromisoformat(cursor) if daily else int(cursor)
        if not daily and not 0 <= before <= MAX_SAFE_INTEGER + 1:
            raise ValueError("beyond any tree size")
        return before
    except ValueError:
        expected = "a day (YYYY-MM-DD)" if daily else "a tree size"
        raise InvalidInput(f"cursor: must be {expected} from a previous page's next_cursor", field="cursor") from None


class CheckpointsController(Controller):
    path = "/v1/checkpoints"

    @get("/latest", sync_to_thread=True, media_type=NOTE_MEDIA_TYPE,
         summary="The latest signed checkpoint (C2SP signed note, text/plain)")
    def latest(self, request: Request[Any, Any, Any]) -> Response[str]:
        checkpoint = checkpoints.latest_checkpoint(_appliance(request).reader())
        if checkpoint is None:
            raise NotFound("no checkpoint has been signed yet")
        return _note(checkpoint)

    @get("/{size:int}", sync_to_thread=True, media_type=NOTE_MEDIA_TYPE,
         summary="The signed checkpoint of one tree size (text/plain)")
    def at_size(self, request: Request[Any, Any, Any], size: Annotated[int, SEQ_PARAM]) -> Response[str]:
        reader = _appliance(request).reader()
        checkpoint = checkpoints.checkpoint_at(reader, size) if 0 <= size <= MAX_SAFE_INTEGER + 1 else None
        if checkpoint is None:
            raise NotFound(f"no checkpoint at tree size {size}")
        return _note(checkpoint)

    @get("/", sync_to_thread=True, summary="Signed checkpoints, newest first; daily=true lists daily roots")
    def listing(
        self,
        request: Request[Any, Any, Any],
        daily: FromQuery[bool] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=checkpoints.MAX_PAGE)] = 100,
        cursor: Annotated[str | None, QueryParameter(
            schema_extra={"pattern": "^([0-9]{1,19}|[0-9]{4}-[0-9]{2}-[0-9]{2})$"},
            description="next_cursor of the previous page: a tree size, or a day (YYYY-MM-DD) when daily")] = None,
    ) -> CheckpointPageOut:
        conn = _appliance(request).reader()
        before = _cursor(cursor, daily)
        if daily:
            roots = checkpoints.list_daily_roots(conn, before=before, limit=limit)
            items = [CheckpointOut.of(r.checkpoint, r.day) for r in roots]
            last = roots[-1].day.isoformat() if len(roots) == limit else None
        else:
            found = checkpoints.list_checkpoints(conn, before=before, limit=limit)
            items = [CheckpointOut.of(c) for c in found]
            last = str(found[-1].size) if len(found) == limit else None
        return CheckpointPageOut(checkpoints=items, next_cursor=last)

    @post("/", guards=[require_scope("admin")], sync_to_thread=True, media_type=NOTE_MEDIA_TYPE,
          responses={200: ResponseSpec(str, description="That tree size was already signed: its note",
                                       media_type=NOTE_MEDIA_TYPE)},
          summary="Sign a checkpoint of every committed entry now (201; 200 when that size was already signed)")
    def cut(self, request: Request[Any, Any, Any]) -> Response[str]:
        checkpointer = _appliance(request).checkpointer
        if checkpointer is None:
            raise StoreUnavailable("the checkpointer is not running")
        checkpoint, created = checkpointer.cut_now()
        return _note(checkpoint, 201 if created else 200)
