"""The annotation server over real HTTP (uvicorn on a loopback port): concurrent answers lose none
and duplicate none; images only from the sitting; every refused request stores nothing."""

from __future__ import annotations

import http.client
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from flaudit.errors import FlauditError
from semsim.annotate.server import MAX_BODY, check_host, create_app
from semsim.annotate.session import Session
from semsim.annotate.store import AnswerStore
from tests.semsim.serving import request, running
from tests.semsim.test_annotate_session import make_source


def test_fifty_concurrent_answers_none_lost_none_duplicated(tmp_path: Path) -> None:
    source = make_source(tmp_path / "run", items=10)
    session = Session([source], capacity=5)
    people = [f"p{n}" for n in range(5)]
    wanted = [(person, key) for person in people for key in session.order]  # 50 answers
    with running(create_app(session)) as url:
        def submit(job: tuple[str, str]) -> int:
            person, key = job
            return request(f"{url}/api/answer", {"annotator": person, "item": key, "choice": "7", "latency_ms": 321})[0]

        # Every answer sent twice (a double click), all at once from 16 threads.
        with ThreadPoolExecutor(max_workers=16) as pool:
            statuses = list(pool.map(submit, wanted + wanted))
        status, state = request(f"{url}/api/next?annotator=p0")
    assert sorted(statuses) == [200] * 50 + [409] * 50
    rows = AnswerStore(source.database).answers()
    assert sorted((a.annotator, a.item) for a in rows) == sorted((p, session.shown[k].item.id) for p, k in wanted)
    assert status == 200 and state["item"] is None and state["progress"] == {"done": 10, "total": 10, "complete": 10, "items": 10}


def _raw_get(url: str, path: str, host: str | None = None) -> int:
    """GET `path` exactly as written (no client-side normalisation of `..` or `%2f`)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.putrequest("GET", path, skip_host=host is not None)
    if host is not None:
        connection.putheader("Host", host)
    connection.endheaders()
    status = connection.getresponse().status
    connection.close()
    return status


def test_images_are_served_only_from_the_sitting(tmp_path: Path) -> None:
    classes = make_source(tmp_path / "run", items=2)
    pairs = make_source(tmp_path / "faces", items=2, mode="pair")
    (tmp_path / "secret.png").write_bytes(b"not for you")
    session = Session([classes, pairs], capacity=1)
    class_key = next(k for k, s in session.shown.items() if s.item.mode == "class")
    pair_key = next(k for k, s in session.shown.items() if s.item.mode == "pair")
    with running(create_app(session)) as url:
        status, body = request(f"{url}/img/{class_key}/rec")
        assert status == 200 and body == session.shown[class_key].item.reconstruction.read_bytes()
        assert request(f"{url}/img/{pair_key}/ori")[1] == session.shown[pair_key].item.original.read_bytes()
        assert request(f"{url}/img/{class_key}/ori")[0] == 404  # the original would give a class-mode answer away
        for path in ("/img/..%2f..%2fetc%2fpasswd", "/img/..%2f..%2fetc%2fpasswd/rec", "/img/../../etc/passwd",
                     "/img/%2e%2e%2f%2e%2e%2fsecret.png/rec", f"/img/{class_key}/..%2f..%2fsecret.png",
                     f"/img/{class_key}/x", "/app.js/../../secret.png", "/static/../secret.png"):
            assert _raw_get(url, path) == 404, path
        assert _raw_get(url, f"/img/{class_key}/rec", host="evil.example:80") == 400  # DNS rebinding
        assert _raw_get(url, "/", host="localhost") == 200


def test_refused_requests_store_nothing(tmp_path: Path) -> None:
    source = make_source(tmp_path / "run", items=2)
    session = Session([source], capacity=1)
    key = session.order[0]
    good = {"annotator": "alice", "item": key, "choice": "3", "latency_ms": 10}
    with running(create_app(session)) as url:
        answer = f"{url}/api/answer"
        assert request(answer, raw=b'{"annotator": "alice", "pad": "' + b"x" * MAX_BODY + b'"}')[0] == 413
        assert request(answer, raw=b"annotator=alice", headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
        assert request(answer, raw=b"{not json")[0] == 400
        assert request(answer, [good])[0] == 400
        assert request(answer, {**good, "item": "ffffffff:class:dlg:1:0:0:x"}) == (404, {"error": "no item 'ffffffff:class:dlg:1:0:0:x' in this sitting"})
        status, body = request(answer, {**good, "choice": "42"})
        assert status == 422 and "allowed: 0, 1, 2" in body["error"]
        assert request(answer, {**good, "annotator": "release"})[0] == 422
        assert request(answer, {**good, "latency_ms": 1e12})[0] == 422
        assert request(f"{url}/api/next?annotator=a%20b")[0] == 422
        assert request(f"{url}/api/undo", {"annotator": "majority"})[0] == 422
        assert AnswerStore(source.database).answers() == []
        assert request(answer, good)[0] == 200
    assert len(AnswerStore(source.database).answers()) == 1


def test_the_page_and_the_next_item(tmp_path: Path) -> None:
    session = Session([make_source(tmp_path / "run", items=2)], capacity=1)
    with running(create_app(session)) as url:
        status, page = request(f"{url}/")
        assert status == 200 and b'<script src="/app.js"' in page
        status, state = request(f"{url}/api/next?annotator=alice")
    item = state["item"]
    assert item["mode"] == "class" and set(item["images"]) == {"rec"}
    assert [(c["value"], c["key"]) for c in item["choices"]][-2:] == [("9", "9"), ("unrecognisable", "u")]
    assert state["progress"] == {"done": 0, "total": 2, "complete": 0, "items": 2}


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_flag(host: str) -> None:
    assert "127.0.0.1" in check_host(host, allow_remote=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.org"])
def test_a_non_loopback_host_is_refused_without_allow_remote(host: str) -> None:
    with pytest.raises(FlauditError, match="pass --allow-remote"):
        check_host(host, allow_remote=False)
    assert check_host(host, allow_remote=True) == ("*",)
