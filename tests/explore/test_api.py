"""The explorer's JSON API, clips and pages through Starlette's TestClient (hand-made run)."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import soundfile as sf
from explore_run import DB_WORDS, MODEL, UNITS, XSS, n_neurons
from starlette.testclient import TestClient

from and_toolkit.explore.app import create_app
from and_toolkit.records import ProbeClip
from and_toolkit.run import Run

N0 = "/api/neurons/toy/blocks.0.fc1/0"


@pytest.fixture
def client(explore_run: Run) -> TestClient:
    return TestClient(create_app(explore_run))


def _keys(items: list[dict]) -> list[tuple[str, str, int]]:
    return [(r["model"], r["layer"], r["unit"]) for r in items]


# ----- GET /api/neurons -------------------------------------------------------------------------
def test_default_page_lists_every_neuron_in_key_order(client: TestClient) -> None:
    page = client.get("/api/neurons").json()
    assert page["total"] == n_neurons() and page["offset"] == 0
    assert _keys(page["items"]) == sorted(_keys(page["items"]))
    assert {"summary", "open_concepts", "alias", "block"} <= set(page["items"][0])


def test_full_text_search_and_filters(client: TestClient) -> None:
    hit = client.get("/api/neurons", params={"q": "unit 3 BLOCK2.FC1"}).json()
    assert _keys(hit["items"]) == [(MODEL, "blocks.1.fc1", 3)]
    assert client.get("/api/neurons", params={"q": "no such words"}).json()["total"] == 0
    by_alias = client.get("/api/neurons", params={"layer": "block2.fc1"}).json()
    by_path = client.get("/api/neurons", params={"layer": "blocks.1.fc1"}).json()
    assert by_alias == by_path and by_alias["total"] == UNITS["blocks.1.fc1"]
    assert client.get("/api/neurons", params={"model": MODEL}).json()["total"] == n_neurons()


def test_unknown_layer_is_422_like_an_unknown_model(client: TestClient) -> None:
    """An unknown layer is refused (not an empty page), naming the known layers (aliases)."""
    for params in ({"layer": "nosuch"}, {"model": MODEL, "layer": "nosuch"}):
        r = client.get("/api/neurons", params=params)
        assert r.status_code == 422, params
        detail = r.json()["detail"]
        assert detail.startswith("layer: unknown 'nosuch'")
        assert "'block1.fc1', 'block2.fc1', 'head'" in detail
    assert f"for model {MODEL!r}" in client.get(
        "/api/neurons", params={"model": MODEL, "layer": "nosuch"}).json()["detail"]
    page = client.get("/", params={"layer": "nosuch"})
    assert page.status_code == 422 and "layer: unknown" in page.text
    assert client.get("/api/neurons", params={"layer": "head"}).json()["total"] == UNITS["head"]


def test_concept_filters_closed_and_open(client: TestClient) -> None:
    # DB cos_cubed rank-0 of unit u is DB_WORDS[u % 4]; "Siren" matches case-insensitively
    page = client.get("/api/neurons", params={"method": "DB", "similarity": "cos_cubed",
                                              "concept": "Siren"}).json()
    assert {r["unit"] for r in page["items"]} == {0} and page["total"] == 3
    assert {r["concept"] for r in page["items"]} == {DB_WORDS[0]}
    shrill = client.get("/api/neurons", params={"method": "OCP", "concept": "shrill"}).json()
    assert shrill["total"] == 5 and all(r["unit"] % 2 for r in shrill["items"])
    negated = client.get("/api/neurons", params={"method": "OCP", "concept": "not"}).json()
    assert negated["total"] == 0  # dropped open concepts are not the neuron's concepts
    anywhere = client.get("/api/neurons", params={"concept": "pure tone"}).json()
    assert anywhere["total"] == n_neurons()  # TAB's pure_tone, "_" read as a space


def test_sort_by_score_and_paging(client: TestClient) -> None:
    params = {"method": "DB", "similarity": "wpmi", "sort": "score"}
    full = client.get("/api/neurons", params={**params, "limit": 200}).json()
    scores = [r["score"] for r in full["items"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == n_neurons()
    asc = client.get("/api/neurons", params={**params, "order": "asc", "limit": 200}).json()
    assert [r["score"] for r in asc["items"]] == sorted(scores)
    pages = [client.get("/api/neurons", params={**params, "limit": 3, "offset": o}).json()
             for o in range(0, n_neurons(), 3)]
    assert [k for p in pages for k in _keys(p["items"])] == _keys(full["items"])
    past = client.get("/api/neurons", params={"offset": 100}).json()
    assert past["items"] == [] and past["total"] == n_neurons()


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"), ({"limit": "ten"}, "limit"),
    ({"offset": "-1"}, "offset"), ({"sort": "random"}, "sort"), ({"order": "up"}, "order"),
    ({"bogus": "1"}, "bogus"), ({"method": "XYZ"}, "method"), ({"model": "nope"}, "model"),
    ({"method": "DB", "similarity": "nope"}, "similarity"), ({"sort": "score"}, "sort"),
    ({"sort": "score", "method": "DB"}, "sort"), ({"q": "x" * 201}, "q"),
])
def test_bad_queries_get_422_with_the_reason(client: TestClient, params: dict,
                                            field: str) -> None:
    r = client.get("/api/neurons", params=params)
    assert r.status_code == 422
    assert field in r.json()["detail"]


# ----- GET /api/neurons/{model}/{layer}/{unit} --------------------------------------------------
def test_neuron_detail(client: TestClient, explore_run: Run) -> None:
    n = client.get(N0).json()
    assert (n["alias"], n["block"], len(n["top"]), len(n["bottom"])) == ("block1.fc1", 1, 3, 3)
    top = n["top"][0]
    assert (top["clip_id"], top["activation"]) == ("pure_tone_00", 10.0)
    assert top["caption"] == f"A loud siren {XSS}"  # the JSON carries the raw text
    assert [c["activation"] for c in n["top"]] == sorted((c["activation"] for c in n["top"]),
                                                         reverse=True)
    assert n["calibration"]["dropped"] == [{"point": "It is loud.", "matched": "It is quiet.",
                                            "cos": 0.875}]
    assert n["calibration"]["threshold"] == 0.7
    assert [(c["concept"], c["verdict"]) for c in n["open_concepts"]["OCP"]] == [
        ("loud", "kept"), ("not", "dropped:negation"), ("deep", "kept")]
    cells = {(g["method"], g["similarity"]): g["concepts"] for g in n["closed_concepts"]}
    assert set(cells) == {("DB", "cos_cubed"), ("DB", "wpmi"), ("TAB", "wpmi")}
    assert [c["concept"] for c in cells[("DB", "cos_cubed")]] == DB_WORDS[:3]
    assert n["descriptions"] == {"TAB": "pure_tone", "DB": "siren",
                                 "SUM": "Unit 0 of block1.fc1: high sirens."}


@pytest.mark.parametrize("path", [
    "/api/neurons/toy/blocks.0.fc1/99", "/api/neurons/other/blocks.0.fc1/0",
    "/api/neurons/toy/nope/0", "/api/neurons/toy/blocks.0.fc1/-1",
    "/api/neurons/toy/blocks.0.fc1/x", "/neurons/toy/blocks.0.fc1/99",
])
def test_unknown_neurons_are_404(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


# ----- clips ------------------------------------------------------------------------------------
def test_clip_audio_is_the_probe_clip(client: TestClient, explore_run: Run) -> None:
    probe = explore_run.read(ProbeClip)
    row = probe.filter(probe["clip_id"] == "siren_01").row(0, named=True)
    r = client.get("/clips/siren_01")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wave, sr = sf.read(io.BytesIO(r.content))
    assert sr == 16000 and len(wave) == row["n_samples"]  # rendered from the seed, full length
    assert float(abs(wave).max()) > 0.0


def test_spectrogram_is_a_cached_png(client: TestClient) -> None:
    a = client.get("/clips/siren_01/spectrogram.png")
    assert a.status_code == 200 and a.headers["content-type"] == "image/png"
    assert a.content[:8] == b"\x89PNG\r\n\x1a\n"
    ex = client.app.state.explorer  # type: ignore[attr-defined]
    assert "siren_01" in ex.clips._png._items
    assert client.get("/clips/siren_01/spectrogram.png").content == a.content


@pytest.mark.parametrize("path", [
    "/clips/nope", "/clips/..%2F..%2Fmanifest.json", "/clips/../manifest.json",
    "/clips/%2e%2e%2fprobe.parquet", "/clips/%2Fetc%2Fpasswd", "/clips/probe.parquet",
    "/clips/%2E%2E", "/clips/nope/spectrogram.png", "/clips/..%2Fprobe.parquet/spectrogram.png",
    "/static/../probe.parquet", "/static/..%2F..%2Frun.py",
])
def test_traversal_and_unknown_clips_are_404(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404
    assert b"PAR1" not in r.content and b"root:" not in r.content


# ----- POST /api/ratings ------------------------------------------------------------------------
GOOD = {"model": MODEL, "layer": "blocks.0.fc1", "unit": 0, "method": "DB", "rating": 4,
        "rater": "ann"}


def test_rating_is_stored_as_a_typed_record(client: TestClient, explore_run: Run) -> None:
    r = client.post("/api/ratings", json={**GOOD, "comment": "fits <b>well</b>"})
    assert r.status_code == 201
    assert r.json()["counts"] == {"total": 1, "by_method": {"DB": 1}, "neuron": 1}
    stored = explore_run.ratings().row(0, named=True)
    assert stored["description"] == "siren"  # the run's text, not the request's
    assert (stored["rating"], stored["rater"], stored["comment"]) == (4, "ann",
                                                                      "fits <b>well</b>")
    assert re.fullmatch(r"[0-9a-f]{32}", stored["rating_id"])
    counts = client.get("/api/ratings", params={"model": MODEL, "layer": "blocks.0.fc1",
                                                "unit": 0}).json()
    assert counts["neuron"] == 1 and counts["total"] == 1


@pytest.mark.parametrize(("body", "field"), [
    ("not json", "JSON"), ("[1, 2]", "object"), ({**GOOD, "rating": 0}, "rating"),
    ({**GOOD, "rating": 6}, "rating"), ({**GOOD, "rating": "4"}, "rating"),
    ({**GOOD, "rating": 3.5}, "rating"), ({**GOOD, "rating": True}, "rating"),
    ({k: v for k, v in GOOD.items() if k != "rater"}, "rater"), ({**GOOD, "rater": "  "}, "rater"),
    ({**GOOD, "extra": 1}, "extra"), ({**GOOD, "method": "ICL"}, "method"),
    ({**GOOD, "unit": 99}, "neuron"), ({**GOOD, "unit": -1}, "unit"),
    ({**GOOD, "layer": "../../x"}, "neuron"), ({**GOOD, "comment": "x" * 2001}, "comment"),
])
def test_malformed_rating_gets_422_and_writes_nothing(client: TestClient, explore_run: Run,
                                                      body: object, field: str) -> None:
    kwargs = ({"content": body, "headers": {"Content-Type": "application/json"}}
              if isinstance(body, str) else {"json": body})
    r = client.post("/api/ratings", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == 422
    assert field in r.json()["detail"]
    assert not explore_run.ratings_path.exists()


def test_cross_site_posts_are_refused(client: TestClient, explore_run: Run) -> None:
    form = client.post("/api/ratings", content="model=toy",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 422 and "Content-Type" in form.json()["detail"]
    plain = client.post("/api/ratings", content=str(GOOD).replace("'", '"'),
                        headers={"Content-Type": "text/plain"})
    assert plain.status_code == 422
    other = client.post("/api/ratings", json=GOOD, headers={"Origin": "http://evil.example"})
    assert other.status_code == 403
    assert not explore_run.ratings_path.exists()
    same = client.post("/api/ratings", json=GOOD, headers={"Origin": "http://testserver"})
    assert same.status_code == 201


def test_loopback_server_refuses_other_host_headers(explore_run: Run) -> None:
    app = create_app(explore_run, allowed_hosts=["127.0.0.1", "localhost"])
    assert TestClient(app, base_url="http://127.0.0.1:8765").get("/").status_code == 200
    assert TestClient(app, base_url="http://rebound.example").get("/").status_code == 400


def test_rating_a_missing_description_is_422(client: TestClient, explore_run: Run) -> None:
    from and_toolkit.records import ConceptSet

    concepts = explore_run.read(ConceptSet)
    explore_run.write(ConceptSet, concepts.filter(concepts["method"] != "TAB"))
    fresh = TestClient(create_app(explore_run))
    r = fresh.post("/api/ratings", json={**GOOD, "method": "TAB"})
    assert r.status_code == 422 and "no TAB description" in r.json()["detail"]
    assert not explore_run.ratings_path.exists()


def test_twenty_concurrent_posts_lose_no_row(client: TestClient, explore_run: Run) -> None:
    bodies = [{**GOOD, "unit": i % 4, "rating": 1 + i % 5, "rater": f"r{i}"} for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda b: client.post("/api/ratings", json=b).status_code, bodies))
    assert codes == [201] * 20
    stored = explore_run.ratings()
    assert stored.height == 20 and sorted(stored["rater"].to_list()) == sorted(
        b["rater"] for b in bodies)
    assert stored["rating_id"].n_unique() == 20


# ----- pages and escaping -----------------------------------------------------------------------
def test_pages_escape_untrusted_text_and_forbid_inline_script(client: TestClient) -> None:
    r = client.get("/neurons/toy/blocks.0.fc1/0")
    assert r.status_code == 200
    assert XSS not in r.text and "A loud siren &lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert re.findall(r"<script[^>]*>", r.text) == ['<script src="/static/explore.js" defer>']
    for needle in ("It is loud.", "0.875", "dropped:negation", "cos_cubed", "pure_tone"):
        assert needle in r.text
    assert r.text.count("<audio") == 6 and r.text.count('class="spectrogram"') == 6
    index = client.get("/", params={"q": XSS})
    assert XSS not in index.text and "&lt;script&gt;" in index.text


def test_static_assets_are_local(client: TestClient) -> None:
    for path in ("/", "/neurons/toy/blocks.0.fc1/0", "/rate"):
        html = client.get(path).text
        for url in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert url.startswith(("/", "data:")), url
    assert client.get("/static/explore.js").status_code == 200
    assert client.get("/static/explore.css").status_code == 200


def test_rating_walk_is_seeded_and_hides_method_names(client: TestClient) -> None:
    def walk(seed: int) -> list[tuple[str, list[str]]]:
        out = []
        for i in range(2):  # one neuron per block, two blocks
            html = client.get("/rate", params={"seed": seed, "n": 1, "i": i}).text
            out.append((re.search(r'data-layer="([^"]+)" data-unit="(\d+)"', html).group(0),
                        re.findall(r'data-method="(\w+)"', html)))
            legends = re.findall(r"<legend>([^<]*)</legend>", html)
            assert legends == ["Description 1", "Description 2", "Description 3"]
            shown = re.sub(r'data-method="\w+"', "", html)
            assert not re.search(r">\s*(TAB|DB|SUM)\b", shown)
        return out

    blind = client.get("/rate", params={"seed": 0, "n": 1, "i": 0}).text
    assert re.findall(r"<figcaption>([^<]*)</figcaption>", blind) == ["clip 1", "clip 2",
                                                                      "clip 3"]  # no labels
    first = walk(0)
    assert walk(0) == first
    assert {m for _, methods in first for m in methods} == {"TAB", "DB", "SUM"}
    assert len({layer for layer, _ in first}) == 2  # one neuron from each block
    others = [walk(s) for s in range(1, 6)]
    assert any(o != first for o in others)  # the seed changes the sample or the order


def test_bad_rating_walk_parameters_are_422(client: TestClient) -> None:
    for params in ({"n": "0"}, {"i": "-1"}, {"seed": "x"}, {"model": "nope"}):
        assert client.get("/rate", params=params).status_code == 422


def test_not_a_run_is_refused(tmp_path: Path) -> None:
    from and_toolkit.errors import DataError

    with pytest.raises(DataError, match="does not exist"):
        create_app(tmp_path / "missing")
    with pytest.raises(DataError, match="config"):
        create_app(tmp_path)
