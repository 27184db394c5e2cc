"""Media given by reference (URL, file path, raw bytes), and the narrow URL fetcher.

A local ``http.server`` on 127.0.0.1 serves the files; calls go through a real runner.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import module_runner
from PIL import Image

from jupyter_deploy import InputError
from jupyter_deploy.model.media import fetch_url, read_media

pytestmark = pytest.mark.timeout(60)

MEDIA_MODEL = '''
import hashlib
from PIL import Image
from jupyter_deploy import ModelClass


class Media(ModelClass):
    @ModelClass.method
    def predict(self, image: Image.Image, scale: int = 1) -> list[int]:
        """Width, height and the red value of the top-left pixel."""
        return [image.width * scale, image.height * scale, image.convert("RGB").getpixel((0, 0))[0]]

    @ModelClass.method
    def digest(self, data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()
'''


def _png(width: int = 5, height: int = 4, red: int = 200) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (red, 10, 20)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()
BIG = b"z" * 10_000


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/cat.png":
            self._send(200, PNG, "image/png")
        elif self.path == "/big":
            self._send(200, BIG, "application/octet-stream")
        elif self.path == "/big-undeclared":
            # No Content-Length: the size cap must hold while reading, too.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(BIG)
            self.close_connection = True
        elif self.path == "/trickle":
            # One byte every 0.2 s: each read is quick, the whole download is not.
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for _ in range(50):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:  # the client gave up, as it should
                pass
            self.close_connection = True
        elif self.path.startswith("/redirect-to-"):
            self.send_response(302)
            self.send_header("Location", {"/redirect-to-file": "file:///etc/passwd",
                                          "/redirect-to-ftp": "ftp://127.0.0.1/x",
                                          "/redirect-to-png": "/cat.png"}[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"not here", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def silent_server():
    """Accepts connections (via the backlog) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/never"
    sock.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    gen = module_runner(tmp_path_factory, MEDIA_MODEL)
    runner = next(gen)
    yield runner.client()
    gen.close()


@pytest.fixture
def png_file(tmp_path) -> Path:
    path = tmp_path / "cat.png"
    path.write_bytes(PNG)
    return path


# ---------------------------------------------------------------- through a runner


def test_image_by_url_path_and_bytes(client, server, png_file):
    want = [5, 4, 200]
    assert client.predict(f"{server}/cat.png") == want
    assert client.predict(png_file) == want
    assert client.predict(str(png_file)) == want
    assert client.predict(PNG) == want
    assert client.predict(Image.open(io.BytesIO(PNG))) == want
    assert client.predict(PNG, scale=2) == [10, 8, 200]


def test_by_url_bytes_filepath_helpers(client, server, png_file):
    assert client.predict_by_url(f"{server}/cat.png") == [5, 4, 200]
    assert client.predict_by_url(f"{server}/cat.png", scale=3) == [15, 12, 200]
    assert client.predict_by_bytes(PNG) == [5, 4, 200]
    assert client.predict_by_filepath(str(png_file)) == [5, 4, 200]
    assert client.predict_by_filepath(png_file, scale=2) == [10, 8, 200]
    assert client.predict_by_url(f"{server}/redirect-to-png") == [5, 4, 200]


def test_bytes_param_by_reference(client, server, png_file):
    want = hashlib.sha256(PNG).hexdigest()
    assert client.digest(PNG) == want
    assert client.digest(f"{server}/cat.png") == want
    assert client.digest(png_file) == want
    assert client.digest_by_url(f"{server}/cat.png") == want
    assert client.digest_by_bytes(bytearray(PNG)) == want
    assert client.digest_by_filepath(str(png_file)) == want


def test_by_helpers_check_what_they_are_given(client, png_file):
    with pytest.raises(InputError, match="http"):
        client.predict_by_url(str(png_file))
    with pytest.raises(InputError, match="http"):
        client.predict_by_url("file:///etc/passwd")
    with pytest.raises(InputError, match="bytes"):
        client.predict_by_bytes(str(png_file))
    with pytest.raises(InputError, match="file path"):
        client.predict_by_filepath(PNG)


def test_bad_references_are_input_errors(client, server, tmp_path):
    with pytest.raises(InputError, match="404"):
        client.predict_by_url(f"{server}/missing.png")
    with pytest.raises(InputError, match="no such file"):
        client.predict_by_filepath(tmp_path / "absent.png")
    with pytest.raises(InputError, match="no such file"):
        client.predict("file:///etc/passwd")  # not a URL it will fetch, and not a file
    with pytest.raises(InputError, match="refused a redirect|not allowed"):
        client.digest(f"{server}/redirect-to-file")
    with pytest.raises(InputError, match="cannot decode the image"):
        client.predict_by_bytes(b"not a png")
    assert client.predict(PNG) == [5, 4, 200]


def test_fetch_cap_from_the_environment(client, server, monkeypatch):
    monkeypatch.setenv("JUPYTER_DEPLOY_MAX_FETCH_BYTES", "1000")
    with pytest.raises(InputError, match="limit"):
        client.digest_by_url(f"{server}/big")
    assert client.digest_by_url(f"{server}/cat.png") == hashlib.sha256(PNG).hexdigest()


# ---------------------------------------------------------------- fetch_url itself


def test_fetch_url_reads_http(server):
    assert fetch_url(f"{server}/cat.png") == PNG
    assert read_media(f"{server}/cat.png") == PNG


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:,hello",
                                 "/etc/passwd", "gopher://127.0.0.1/"])
def test_fetch_url_refuses_other_schemes(url):
    with pytest.raises(ValueError, match="only http and https"):
        fetch_url(url)


@pytest.mark.parametrize("path", ["/redirect-to-file", "/redirect-to-ftp"])
def test_fetch_url_refuses_redirects_to_other_schemes(server, path):
    with pytest.raises(ValueError, match="refused a redirect|not allowed") as e:
        fetch_url(f"{server}{path}")
    assert "root:" not in str(e.value)


@pytest.mark.parametrize("path", ["/big", "/big-undeclared"])
def test_fetch_url_size_cap(server, path, monkeypatch):
    with pytest.raises(ValueError, match="over the 1000-byte limit"):
        fetch_url(f"{server}{path}", max_bytes=1000)
    assert fetch_url(f"{server}{path}", max_bytes=len(BIG)) == BIG
    monkeypatch.setenv("JUPYTER_DEPLOY_MAX_FETCH_BYTES", "999")
    with pytest.raises(ValueError, match="999-byte limit"):
        fetch_url(f"{server}{path}")


def test_fetch_url_timeout(silent_server):
    start = time.monotonic()
    with pytest.raises(ValueError, match="cannot fetch .*timed out"):
        fetch_url(silent_server, timeout=0.5)
    assert time.monotonic() - start < 10


def test_fetch_url_timeout_bounds_the_whole_download(server):
    started = time.monotonic()
    with pytest.raises(ValueError, match="timed out"):
        fetch_url(f"{server}/trickle", timeout=1.0)
    assert time.monotonic() - started < 5  # not the 10 s the trickle would take


def test_fetch_url_http_error(server):
    with pytest.raises(ValueError, match="HTTP 404"):
        fetch_url(f"{server}/missing")


def test_fetch_url_connection_refused():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(ValueError, match="cannot fetch"):
        fetch_url(f"http://127.0.0.1:{port}/x", timeout=5)


def test_fetch_url_from_a_server_that_does_not_speak_http():
    """A URL pointing at another protocol's port (here: one that greets in SMTP) is a clear error."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def greet() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(b"220 mail.example ESMTP ready\r\n")

    thread = threading.Thread(target=greet, daemon=True)
    thread.start()
    try:
        with pytest.raises(ValueError, match="did not answer in HTTP"):
            fetch_url(f"http://127.0.0.1:{sock.getsockname()[1]}/x", timeout=5)
    finally:
        thread.join(5)
        sock.close()
