"""The in-browser page under /web/ of `onnxstyle serve` (serve/web.py): cross-origin isolated,
revalidated by ETag, only the files of its map, and the same files as a static build. The page
itself runs in headless Chromium in js/test/conformance.test.js (npm test in js/)."""

from __future__ import annotations

import json

import pytest
from helpers_serve import Server

from onnxstyle.serve import web

needs_npm = pytest.mark.skipif(not (web.JS / "node_modules" / "onnxruntime-web").is_dir(),
                               reason="js/node_modules missing: run npm ci --ignore-scripts in js/ (.ci/run does)")


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_path):
    s = Server(tmp_path_factory.mktemp("web"), "--model", str(model_path))
    yield s
    s.stop()


@needs_npm
def test_page_files_cross_origin_isolated_and_revalidated(server, model_path):
    page = server.client.get("/web/")
    assert page.status_code == 200 and "app.js" in page.text
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert page.headers["cross-origin-embedder-policy"] == "require-corp"
    d = server.client.get("/web/models/onnxstyle.defaults.json")
    assert d.status_code == 200 and json.loads(d.content)["defaults"]["style_weight"] > 0
    again = server.client.get("/web/models/onnxstyle.defaults.json", headers={"If-None-Match": d.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert server.client.get("/web/ort/ort.wasm.min.mjs").headers["content-type"].startswith("text/javascript")
    assert server.client.get("/web/ort/ort-wasm-simd-threaded.wasm").headers["content-type"] == "application/wasm"
    w = server.client.get("/web/models/vgg19_gatys.weights")
    assert w.content == model_path.with_suffix(".weights").read_bytes()


@needs_npm
def test_only_the_map_is_served(server):
    for path in ("/web/../pyproject.toml", "/web/src/../../pyproject.toml", "/web/models/x.onnx", "/web/nope"):
        r = server.client.get(path)
        assert r.status_code == 404, path


@needs_npm
def test_static_build_holds_every_file(tmp_path, model_path):
    out = web.build(tmp_path / "site", model_path.parent)
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert names == {p for p in web.files(model_path.parent) if p} | {"_headers"}
    assert "Cross-Origin-Embedder-Policy: require-corp" in (out / "_headers").read_text()


def test_missing_export_says_what_to_do(tmp_path):
    with pytest.raises(web.WebMissing, match="onnxstyle export"):
        web.find("models/vgg19_gatys.onnx", tmp_path)
    assert web.find("no/such/file", tmp_path) is None
