"""The HTTP API and the web page of a retrieval service (FastAPI).

  GET  /                          the search page (hashjax/serving/page.html)
  GET  /api/health                {"status": "ok", ...}
  GET  /api/stats                 the index, its run, batching counters
  POST /api/search/image          query by an uploaded image (form field
                                  `file`); k, label, radius, query_label
  POST /api/search                query by {"id": ...} or {"code": ...}
  GET  /api/items/{row}           an item's id and labels
  GET  /api/items/{row}/thumbnail its image, small (JPEG)
  POST /api/items                 add uploaded images (`files`, `labels`)
  GET  /docs, /openapi.json       the API's schema

Every error is JSON {"detail": "<what is wrong and what to do>"} with a 4xx
status (a 5xx only for a fault of the server, which keeps serving). A
request body over the upload limit is refused (413) before it is read.
No request names a file: results and thumbnails address the index's rows,
so nothing outside the index's items can be read.
"""
import asyncio
import importlib.resources
import json
import logging
from typing import List, Optional

import fastapi
from fastapi import File, Form, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
import pydantic
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from hashjax.serving import engine as engine_lib

_log = logging.getLogger('hashjax.serve')


class SearchRequest(pydantic.BaseModel):
  """A query by an item already in the index (`id`) or by a code."""
  model_config = pydantic.ConfigDict(extra='forbid')
  id: Optional[str] = pydantic.Field(
      None, description='An id in the index (as returned in results).')
  code: Optional[str] = pydantic.Field(
      None, description='A code: `bits` characters 0/1, or 0x and bits/4 '
      'hex digits (bit j = bit j of the number).')
  k: int = pydantic.Field(10, description='Results wanted (1 to max_k).')
  label: Optional[str] = pydantic.Field(
      None, description='Rank only the items with this label.')
  radius: Optional[int] = pydantic.Field(
      None, description='Keep the results within this Hamming distance.')


class _TooLarge(Exception):
  pass


class BodyLimit:
  """ASGI middleware: a request body over `limit` bytes gets 413 (by its
  Content-Length before anything is read, or as soon as a streamed body
  passes the limit)."""

  def __init__(self, app, limit):
    self.app, self.limit = app, limit

  async def __call__(self, scope, receive, send):
    if scope['type'] != 'http':
      return await self.app(scope, receive, send)
    length = dict(scope['headers']).get(b'content-length')
    if length is not None:
      try:
        too_big = int(length) > self.limit
      except ValueError:
        return await _send_json(send, 400, 'Bad Content-Length header.')
      if too_big:
        return await _send_json(send, 413, self._message(int(length)))
    seen = 0
    started = False

    async def limited_receive():
      nonlocal seen
      message = await receive()
      if message['type'] == 'http.request':
        seen += len(message.get('body', b''))
        if seen > self.limit:
          raise _TooLarge()
      return message

    async def tracking_send(message):
      nonlocal started
      started = started or message['type'] == 'http.response.start'
      await send(message)

    try:
      await self.app(scope, limited_receive, tracking_send)
    except _TooLarge:
      if not started:
        await _send_json(send, 413, self._message(seen))

  def _message(self, size):
    return (f'The request body ({size:,} bytes) is over this server\'s '
            f'upload limit of {self.limit:,} bytes. Send a smaller image, '
            'or start the server with a larger --max_upload_mb.')


async def _send_json(send, status, detail):
  body = json.dumps({'detail': detail}).encode()
  await send({'type': 'http.response.start', 'status': status,
              'headers': [(b'content-type', b'application/json'),
                          (b'content-length', str(len(body)).encode())]})
  await send({'type': 'http.response.body', 'body': body})


def _answer_json(answer, kind, query_labels=None):
  query_labels = (answer.query_labels if answer.query_labels is not None
                  else query_labels)
  results = []
  for rank, (row, item_id, d, labels) in enumerate(zip(
      answer.rows, answer.ids, answer.distances, answer.labels), 1):
    results.append(dict(
        rank=rank, row=row, id=item_id, distance=d, labels=labels,
        relevant=(bool(set(labels) & set(query_labels))
                  if query_labels and labels else None),
        thumbnail=f'/api/items/{row}/thumbnail'))
  return dict(query=dict(kind=kind, labels=query_labels or [],
                         code=engine_lib.format_code(answer.code)),
              count=len(results), results=results,
              index_version=answer.index_version, timing_ms=answer.timing_ms)


def _validation_message(error):
  """FastAPI's validation errors -> one sentence naming each field."""
  parts = []
  for e in error.errors():
    if e.get('type') == 'json_invalid':
      parts.append('the body is not valid JSON')
      continue
    where = '.'.join(str(x) for x in e.get('loc', ()) if x != 'body')
    got = e.get('input')
    got = '' if got is None or isinstance(got, dict) else f' (got {got!r})'
    parts.append(f'{where or "body"}: {e.get("msg")}{got}')
  return 'Bad request: ' + '; '.join(parts) + '. See /docs for the API.'


_IMAGE_BODY = {'requestBody': {'required': True, 'content': {
    'multipart/form-data': {'schema': {
        'type': 'object', 'required': ['file'],
        'properties': {'file': {'type': 'string', 'format': 'binary',
                                'description': 'The query image.'}}}},
    'image/*': {'schema': {'type': 'string', 'format': 'binary'}}}}}


async def _upload(request):
  """The image of a request: the form field `file` of a multipart body,
  or the whole body."""
  kind = request.headers.get('content-type', '')
  if not kind.startswith('multipart/form-data'):
    return await request.body()
  form = await request.form(max_files=1, max_fields=4)
  file = form.get('file')
  if not isinstance(file, StarletteUploadFile):
    raise engine_lib.QueryError(
        'A form upload needs the image in a field named "file" (e.g. curl '
        "-F file=@q.jpg); or send the image itself as the body.", 422)
  return await file.read()


def create_app(engine, *, max_upload_bytes=10 << 20, upload_dir=None):
  """The FastAPI app serving `engine` (an Engine). `upload_dir`: where
  images added through POST /api/items are stored (None: adding is off)."""
  app = fastapi.FastAPI(
      title='hashjax retrieval',
      description='Search an archive of images by Hamming distance between '
      'binary codes. Results are exact: ascending distance, ties by index '
      'row.')
  page = importlib.resources.files('hashjax.serving').joinpath(
      'page.html').read_text()

  @app.exception_handler(engine_lib.QueryError)
  async def query_error(request, e):  # pylint: disable=unused-argument
    return JSONResponse({'detail': str(e)}, status_code=e.status)

  @app.exception_handler(StarletteHTTPException)
  async def http_error(request, e):
    detail = e.detail
    if e.status_code == 404 and detail == 'Not Found':
      detail = (f'No such page or API route: {request.method} '
                f'{request.url.path}. The routes are listed at /docs.')
    elif e.status_code == 405:
      detail = (f'{request.method} is not allowed on {request.url.path}; '
                'see /docs.')
    return JSONResponse({'detail': detail}, status_code=e.status_code,
                        headers=getattr(e, 'headers', None))

  @app.exception_handler(RequestValidationError)
  async def validation_error(request, e):  # pylint: disable=unused-argument
    return JSONResponse({'detail': _validation_message(e)}, status_code=422)

  @app.exception_handler(Exception)
  async def server_error(request, e):  # pylint: disable=unused-argument
    _log.exception('internal error on %s', request.url.path)
    return JSONResponse({'detail': f'Internal error ({type(e).__name__}: '
                                   f'{e}); the server keeps running.'},
                        status_code=500)

  async def answer(query, kind, query_labels=None):
    future = engine.submit(query)
    result = await asyncio.wrap_future(future)
    # A JSONResponse directly: FastAPI's generic encoder costs more than
    # the search.
    return JSONResponse(_answer_json(result, kind, query_labels))

  @app.get('/', response_class=HTMLResponse, include_in_schema=False)
  async def index_page():
    return page

  @app.get('/api/health')
  async def health():
    """The server is up and has an index loaded."""
    snap = engine.watcher.current
    return {'status': 'ok', 'count': len(snap.index),
            'index_version': snap.version}

  @app.get('/api/stats')
  async def stats():
    """The index (size, bits, labels, version), its run, and counters."""
    return dict(engine.stats(), max_upload_bytes=max_upload_bytes,
                adding=upload_dir is not None)

  @app.post('/api/search/image', openapi_extra=_IMAGE_BODY)
  async def search_image(
      request: fastapi.Request,
      k: int = Query(10, description='Results wanted.'),
      label: Optional[str] = Query(None, description='Rank only items '
                                   'with this label.'),
      radius: Optional[int] = Query(None, description='Keep results within '
                                    'this Hamming distance.'),
      query_label: Optional[str] = Query(
          None, description="The query's own class, if known: results are "
          'marked relevant or not.')):
    """Query by an image (JPEG, PNG, GIF, BMP or TIFF): a form upload
    (field `file`), or the file itself as the body (`curl --data-binary
    @q.jpg -H 'Content-Type: image/jpeg'`)."""
    if query_label is not None and query_label not in (
        engine.watcher.current.index.class_names or []):
      raise engine_lib.QueryError(f'Unknown query_label {query_label!r}.')
    engine.check_options(k, label, radius)   # before decoding
    data = await _upload(request)
    query = engine_lib.Query('image', k=k, label=label, radius=radius,
                             pixels=await run_in_threadpool(engine.prepare,
                                                            data))
    return await answer(query, 'image', [query_label] if query_label else None)

  @app.post('/api/search')
  async def search(request: SearchRequest):
    """Query by an id in the index (`id`) or by a code (`code`)."""
    if (request.id is None) == (request.code is None):
      raise engine_lib.QueryError('Give exactly one of "id" (an item of the '
                                  'index) or "code".')
    query = engine_lib.Query('id' if request.id is not None else 'code',
                             k=request.k, label=request.label,
                             radius=request.radius, item_id=request.id)
    if request.code is not None:
      query.code = engine_lib.parse_code(request.code, engine.bits)
    return await answer(query, query.kind)

  @app.get('/api/items/{row}')
  async def item(row: int):
    """An item of the index: its id and labels."""
    item_id, labels = engine.item(row)
    return {'row': row, 'id': item_id, 'labels': labels,
            'thumbnail': f'/api/items/{row}/thumbnail'}

  @app.get('/api/items/{row}/thumbnail',
           responses={200: {'content': {'image/jpeg': {}}}})
  async def thumbnail(row: int):
    """The item's image, at most 160 px a side."""
    data = await run_in_threadpool(engine.thumbnail, row)
    return Response(data, media_type='image/jpeg',
                    headers={'Cache-Control': 'max-age=3600'})

  @app.post('/api/items')
  async def add_items(
      files: List[UploadFile] = File(..., description='Images to add.'),
      labels: Optional[List[str]] = Form(
          None, description='One class name per image, if the index has '
          'labels.')):
    """Adds images to the index (stored on the server, encoded, appended;
    queries see them once the new index is complete)."""
    if upload_dir is None:
      raise engine_lib.QueryError('This server does not accept new items '
                                  '(start it with --upload_dir=DIR).', 403)
    blobs = [(f.filename or 'upload', await f.read()) for f in files]
    ids = await run_in_threadpool(engine.add, blobs, upload_dir, labels)
    snap = engine.watcher.current
    return {'added': len(ids), 'ids': ids, 'count': len(snap.index),
            'index_version': snap.version}

  app.add_middleware(BodyLimit, limit=max_upload_bytes)
  return app
