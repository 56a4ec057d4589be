"""The README's ``.venv/bin/jupyter lab notebooks/`` works: the server starts, a chapter's
kernel runs code, and the chapter-8 widget demo answers a control changed from the browser.

The server runs headless on a free port with a token; the test speaks the Jupyter REST and
websocket protocols as JupyterLab's page does (websocket-client, installed with
jupyter_server).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
JUPYTER = Path(sys.executable).parent / "jupyter"
CHAPTER = "08_attention_maps.ipynb"  # the chapter with the widget demo

# Tiny untrained captioners on two coloured squares: enough for the demo's controls.
DEMO_SETUP = """
import torch
from PIL import Image
from ptlib.data.vocab import Vocabulary
from ptlib.models import Captioner
from ptlib.viz.demo import build_demo

torch.set_num_threads(1)
vocab = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>", "a", "red", "circle"])

def tiny(encoder):
    torch.manual_seed(0)
    return Captioner.from_config(dict(
        encoder=encoder, img_size=64, d_model=16, n_encoder_layers=0, n_decoder_layers=1,
        n_heads=2, ff_dim=32, max_len=4, vocab_size=len(vocab), prune_ratio=0.0,
        prune_method="none")).eval()

class Images:
    records = [type("Record", (), {"image_id": i})() for i in range(2)]
    def __len__(self):
        return 2
    def load_image(self, index):
        return Image.new("RGB", (64, 64), (200, 30, 30) if index == 0 else (30, 30, 200))

models = {"vit": (tiny("vit_tiny_patch16_224"), vocab)}
demo = build_demo(models, Images(), None, index=0, ratio=0.0)
ratio_slider = demo.children[0].children[1].children[2]
display(demo)
print("RATIO_SLIDER", ratio_slider.model_id, list(ratio_slider.options).index(0.5))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """A running ``jupyter lab`` and helpers to call its REST API."""

    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base}{path}", data=data, method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            text = response.read().decode()
            return response.status, (json.loads(text) if "json" in response.headers.get(
                "Content-Type", "") else text)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not JUPYTER.exists() or not (JUPYTER.parent / "jupyter-lab").exists():
        pytest.fail(f"JupyterLab is not installed next to {sys.executable}: "
                    "pip install -e '.[book]' installs it")
    home = tmp_path_factory.mktemp("jupyter")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(home),
           "HF_HUB_OFFLINE": "1", "PTLIB_PROFILE": "ci"}
    env.pop("MPLBACKEND", None)
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed below
    # The README's command, headless: no browser, a fixed port and token; --allow-root
    # because CI runs as root (a learner's account does not need it).
    process = subprocess.Popen(
        [str(JUPYTER), "lab", "notebooks/", "--no-browser", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.token={token}", "--allow-root",
         "--ServerApp.port_retries=0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    running = _Server(port, token)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                running.request("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"jupyter lab did not start:\n{(home / 'server.log').read_text()}")
                time.sleep(0.3)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


class _Kernel:
    """A kernel's websocket channels: send shell messages, collect their iopub replies."""

    def __init__(self, server: _Server, kernel_id: str) -> None:
        import websocket

        url = server.base.replace("http", "ws") + f"/api/kernels/{kernel_id}/channels"
        self.ws = websocket.create_connection(
            url, header=[f"Authorization: token {server.token}"], timeout=60
        )
        self.session = uuid.uuid4().hex

    def send(self, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "test",
                       "session": self.session, "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "content": content, "channel": "shell",
            "buffers": [],
        }))
        return msg_id

    def replies(self, msg_id: str, timeout: float = 60) -> list[dict]:
        """iopub messages answering ``msg_id``, until the kernel is idle again."""
        found, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["channel"] == "iopub":
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return found
                found.append(msg)
        raise AssertionError(f"no idle status for {msg_id} within {timeout} s; got {found}")

    def run(self, code: str) -> str:
        """Executes code; returns its stdout; fails on an error."""
        messages = self.replies(self.send("execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True}))
        for msg in messages:
            if msg["msg_type"] == "error":
                raise AssertionError("\n".join(msg["content"]["traceback"]))
        return _stdout(messages)


def _stdout(messages: list[dict]) -> str:
    return "".join(m["content"]["text"] for m in messages
                   if m["msg_type"] == "stream" and m["content"]["name"] == "stdout")


def test_lab_page_and_chapter_kernel_and_widget_demo(server):
    status, page = server.request("GET", "/lab")
    assert status == 200 and "JupyterLab" in page, "the JupyterLab page is not served"

    notebook = json.loads((ROOT / "notebooks" / CHAPTER).read_text())
    kernel_name = notebook["metadata"]["kernelspec"]["name"]
    _, specs = server.request("GET", "/api/kernelspecs")
    assert kernel_name in specs["kernelspecs"], (
        f"{CHAPTER} asks for kernel {kernel_name!r}; the server has {list(specs['kernelspecs'])}")

    # Open the chapter as JupyterLab does: a session for the notebook, with its kernel.
    _, session = server.request("POST", "/api/sessions", {
        "path": CHAPTER, "type": "notebook", "name": CHAPTER, "kernel": {"name": kernel_name}})
    kernel = _Kernel(server, session["kernel"]["id"])
    try:
        out = kernel.run("import ptlib, sys\nprint(ptlib.__file__)\nprint(6 * 7)")
        assert out.split() == [str(ROOT / "ptlib" / "__init__.py"), "42"], out

        out = kernel.run(DEMO_SETUP)
        assert "ratio 0.0: 16/16 tokens kept" in out, f"the demo did not draw its first state: {out}"
        model_id, index = out.split("RATIO_SLIDER")[1].split()

        # Move the ratio slider as the browser does: a comm message updating its state.
        messages = kernel.replies(kernel.send("comm_msg", {
            "comm_id": model_id,
            "data": {"method": "update", "state": {"index": int(index)}, "buffer_paths": []}}))
        shown = _stdout(messages)
        assert "ratio 0.5: 8/16 tokens kept" in shown, (
            f"the demo did not answer the slider (stdout after the change: {shown!r})")
    finally:
        kernel.ws.close()
        server.request("DELETE", f"/api/sessions/{session['id']}")
