"""HTTP targets of ``bench/run.py``: the bench model through the daemon's HTTP gateway (W1h, W2h, W5h).

Each target holds one keep-alive ``http.client`` connection (the lowest client overhead, as
shared/peers does for the HTTP peers) and calls the deployment ``bench`` of a
``PlatformSession``:

- ``rest``: ``POST /v1/deployments/bench/methods/{echo,chunks,image_size}`` with JSON; W2 as
  Server-Sent Events (items counted as events arrive); W5 with the JPEG as ``{"base64": ...}``.
- ``rest-multipart``: W5 with the JPEG as a ``multipart/form-data`` file.
- ``oip``: W1 over the Open Inference Protocol's REST ``infer`` (a BYTES tensor in JSON).
"""

from __future__ import annotations

import base64
import http.client
import json
from collections.abc import Iterator
from urllib.parse import urlsplit

DEPLOYMENT = "bench"
TIMEOUT = 30.0


class HttpTarget:
    name = "rest"

    def __init__(self, url: str, token: str):
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._base = f"/v1/deployments/{DEPLOYMENT}/methods/"

    def _post(self, path: str, body: bytes, headers: dict | None = None) -> http.client.HTTPResponse:
        self._conn.request("POST", path, body, headers or self._headers)
        return self._conn.getresponse()

    def _json(self, path: str, obj: object) -> object:
        resp = self._post(path, json.dumps(obj).encode())
        data = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:200]!r}")
        return json.loads(data)

    def echo(self, text: str) -> str:
        return self._json(self._base + "echo", {"text": text})["output"]

    def chunks(self, n: int) -> Iterator[str]:
        resp = self._post(self._base + "chunks", json.dumps({"n": n}).encode(),
                          {**self._headers, "Accept": "text/event-stream"})
        buf = b""
        while True:
            data = resp.read1(65536)
            if not data:
                return
            buf += data
            *events, buf = buf.split(b"\n\n")
            for event in events:
                if event.startswith(b"data: "):
                    yield json.loads(event[6:])["output"]
                elif event.startswith(b"event: end"):
                    resp.read()
                    return
                elif event.startswith(b"event: error"):
                    raise RuntimeError(event.decode())

    def image_size(self, data: bytes) -> tuple[int, int]:
        out = self._json(self._base + "image_size", {"image": {"base64": base64.b64encode(data).decode()}})["output"]
        return out["width"], out["height"]

    def close(self) -> None:
        self._conn.close()


class MultipartTarget(HttpTarget):
    name = "rest-multipart"

    def image_size(self, data: bytes) -> tuple[int, int]:
        boundary = "jdbenchboundary7d1f"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"w5.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        headers = {**self._headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        resp = self._post(self._base + "image_size", body, headers)
        out = json.loads(resp.read())["output"]
        return out["width"], out["height"]


class OipTarget(HttpTarget):
    name = "oip"

    def echo(self, text: str) -> str:
        out = self._json(f"/v2/models/{DEPLOYMENT}/infer", {
            "inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [text]}],
            "parameters": {"method": "echo"}})
        return out["outputs"][0]["data"][0]
