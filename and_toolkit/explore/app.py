"""The explorer's web app (Starlette): pages, the JSON API, clip audio and spectrograms.

Routes::

    GET  /                                    search and browse (page)
    GET  /neurons/{model}/{layer}/{unit}      one neuron (page)
    GET  /rate?model=&seed=&n=&i=             rating mode: the i-th neuron of the walk (page)
    GET  /api/neurons?q=&model=&layer=&method=&similarity=&concept=&sort=&order=&limit=&offset=
    GET  /api/neurons/{model}/{layer}/{unit}
    GET  /api/ratings?model=&layer=&unit=     counts
    POST /api/ratings                         {model, layer, unit, method, rating, rater, comment?}
    GET  /clips/{clip_id}                     WAV
    GET  /clips/{clip_id}/spectrogram.png
    GET  /static/...                          CSS / JS (local files only)

Bad query or body -> 422 ``{"detail": reason}`` (nothing written); unknown neuron or clip ->
404. Templates autoescape every value; pages load no inline script (the Content-Security-Policy
forbids it), so untrusted captions and summaries render as text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from and_toolkit.errors import DataError
from and_toolkit.explore.clips import ClipSource, UnknownClip
from and_toolkit.explore.data import RATED_METHODS, Tables, load_tables
from and_toolkit.explore.detail import neuron_detail
from and_toolkit.explore.queries import NeuronQuery, search
from and_toolkit.explore.rating_mode import RatingWalk
from and_toolkit.explore.ratings import RatingPost, RatingStore
from and_toolkit.run import Run

HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; media-src 'self'; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
DEFAULT_PER_BLOCK = 10
"""Neurons per block in the rating walk (the paper: 10 AST neurons per block)."""


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                     for e in exc.errors())


def _unprocessable(reason: str) -> JSONResponse:
    return JSONResponse({"detail": reason}, status_code=422, headers=SECURITY_HEADERS)


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"not found: {what}"}, status_code=404,
                        headers=SECURITY_HEADERS)


class Explorer:
    """The app's state (tables, clips, ratings) and its endpoints."""

    def __init__(self, tables: Tables, clips: ClipSource) -> None:
        self.t, self.clips = tables, clips
        self.store = RatingStore(tables.run)
        self.walk = RatingWalk(tables)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True),
                               undefined=StrictUndefined)

    # ----- helpers ----------------------------------------------------------------------------
    def page(self, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(run_name=self.t.config.name, **ctx)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def options(self) -> dict[str, Any]:
        """Filter choices shown by the search form."""
        closed = self.t.closed
        return {"models": sorted(self.t.browse["model"].unique().to_list()),
                "methods": sorted({*closed["method"].unique().to_list(), "OCP"}),
                "similarities": sorted(closed["similarity"].unique().to_list())}

    @staticmethod
    def _key(request: Request) -> tuple[str, str, int]:
        p = request.path_params
        return str(p["model"]), str(p["layer"]), int(p["unit"])

    # ----- JSON API ---------------------------------------------------------------------------
    def api_neurons(self, request: Request) -> Response:
        try:
            query = NeuronQuery.model_validate(dict(request.query_params))
            page = search(self.t.browse, self.t.closed, query)
        except ValidationError as exc:
            return _unprocessable(_reason(exc))
        except ValueError as exc:
            return _unprocessable(str(exc))
        return JSONResponse(_json_safe(page.model_dump()), headers=SECURITY_HEADERS)

    def api_neuron(self, request: Request) -> Response:
        detail = neuron_detail(self.t, *self._key(request))
        if detail is None:
            return _not_found("neuron")
        return JSONResponse(_json_safe(detail), headers=SECURITY_HEADERS)

    def api_rating_counts(self, request: Request) -> Response:
        q = request.query_params
        unit = q.get("unit")
        if unit is not None and not unit.isdigit():
            return _unprocessable(f"unit: not a non-negative integer: {unit!r}")
        return JSONResponse(self.store.counts(q.get("model"), q.get("layer"),
                                              int(unit) if unit is not None else None),
                            headers=SECURITY_HEADERS)

    async def api_post_rating(self, request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"detail": f"origin {origin!r} is not this server"},
                                status_code=403, headers=SECURITY_HEADERS)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":  # also keeps cross-site form posts out (CORS preflight)
            return _unprocessable(f"body: Content-Type must be application/json, got {ctype!r}")
        raw = await request.body()
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _unprocessable(f"body: not JSON: {exc}")
        if not isinstance(body, dict):
            return _unprocessable("body: expected a JSON object")
        try:
            post = RatingPost.model_validate(body)
        except ValidationError as exc:
            return _unprocessable(_reason(exc))
        if post.method not in RATED_METHODS:
            return _unprocessable(f"method: {post.method!r} is not rated; "
                                  f"known: {list(RATED_METHODS)}")
        if self.t.neuron(post.model, post.layer, post.unit) is None:
            return _unprocessable(f"neuron ({post.model}, {post.layer}, {post.unit}) is not in "
                                  "this run")
        text = self.t.description(post.model, post.layer, post.unit, post.method)
        if not text:
            return _unprocessable(f"method: the neuron has no {post.method} description")
        from starlette.concurrency import run_in_threadpool

        row = await run_in_threadpool(self.store.append, post, text)
        counts = await run_in_threadpool(self.store.counts, post.model, post.layer, post.unit)
        return JSONResponse({"rating": row, "counts": counts}, status_code=201,
                            headers=SECURITY_HEADERS)

    # ----- clips ------------------------------------------------------------------------------
    def clip_audio(self, request: Request) -> Response:
        try:
            data = self.clips.wav(str(request.path_params["clip_id"]))
        except UnknownClip:
            return _not_found("clip")
        return Response(data, media_type="audio/wav",
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})

    def clip_spectrogram(self, request: Request) -> Response:
        try:
            data = self.clips.spectrogram(str(request.path_params["clip_id"]))
        except UnknownClip:
            return _not_found("clip")
        return Response(data, media_type="image/png",
                        headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})

    # ----- pages ------------------------------------------------------------------------------
    def index(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if v != ""}
        try:
            page = search(self.t.browse, self.t.closed, NeuronQuery.model_validate(params))
            error = ""
        except ValidationError as exc:
            page, error = None, _reason(exc)
        except ValueError as exc:
            page, error = None, str(exc)
        return self.page("index.html.j2", status=422 if error else 200, page=page,
                         error=error, params=params, options=self.options(),
                         total_neurons=self.t.browse.height)

    def neuron(self, request: Request) -> Response:
        detail = neuron_detail(self.t, *self._key(request))
        if detail is None:
            return self.page("missing.html.j2", status=404, what="neuron")
        return self.page("neuron.html.j2", n=detail, counts=self.store.counts(
            detail["model"], detail["layer"], detail["unit"]))

    def rate(self, request: Request) -> Response:
        q = request.query_params
        models = self.walk.models()
        try:
            model = q.get("model") or (models[0] if models else "")
            seed = int(q.get("seed", self.t.config.seed))
            n = int(q.get("n", DEFAULT_PER_BLOCK))
            i = int(q.get("i", 0))
            if n < 1 or i < 0:
                raise ValueError("n must be >= 1 and i >= 0")
            walk = self.walk.sample(model, seed, n)
        except ValueError as exc:
            return self.page("missing.html.j2", status=422, what=f"rating walk ({exc})")
        item = walk[i] if i < len(walk) else None
        detail = neuron_detail(self.t, item["model"], item["layer"], item["unit"]) if item else None
        counts = (self.store.counts(item["model"], item["layer"], item["unit"]) if item
                  else self.store.counts())
        return self.page("rate.html.j2", item=item, n=detail, i=i, size=len(walk),
                         model=model, seed=seed, per_block=n, models=models, counts=counts)


def _json_safe(obj: Any) -> Any:
    """Replace non-finite floats by None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def create_app(run: Run | str | Path, *, data_root: Path | None = None,
               allowed_hosts: list[str] | None = None) -> Starlette:
    """The explorer app over one run (tables read once, here).

    Args:
        run: the run directory (or its :class:`Run`).
        data_root: dataset root of the probe clips (default: from the run's configuration).
        allowed_hosts: answer only requests whose Host header names one of these (without
            port; keeps DNS-rebinding pages out of a loopback server); None: any.

    Raises:
        DataError: not a run, or the run holds no neurons yet.
    """
    run = run if isinstance(run, Run) else Run.at(run)
    if not run.root.is_dir():
        raise DataError(f"{run.root}: run directory does not exist")
    tables = load_tables(run)
    ex = Explorer(tables, ClipSource(tables.probe, tables.config, data_root))
    routes = [
        Route("/", ex.index),
        Route("/neurons/{model}/{layer}/{unit:int}", ex.neuron),
        Route("/rate", ex.rate),
        Route("/api/neurons", ex.api_neurons),
        Route("/api/neurons/{model}/{layer}/{unit:int}", ex.api_neuron),
        Route("/api/ratings", ex.api_rating_counts, methods=["GET"]),
        Route("/api/ratings", ex.api_post_rating, methods=["POST"]),
        Route("/clips/{clip_id}", ex.clip_audio),
        Route("/clips/{clip_id}/spectrogram.png", ex.clip_spectrogram),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = ([Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)]
                  if allowed_hosts else [])
    app = Starlette(routes=routes, middleware=middleware)
    app.state.explorer = ex
    return app
