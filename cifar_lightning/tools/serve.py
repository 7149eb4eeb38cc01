"""``python -m cifar_lightning serve``: a checkpoint or an exported ONNX model behind HTTP, with LitServe.

``POST /predict`` with an image as multipart form data (field ``file``; any format and size ``predict``
reads) answers ``{"class", "probability", "probabilities"}``. Requests are batched on the server.
An unreadable, oversized or malformed upload gets a 4xx with a message and the server keeps serving.
``GET /`` is a page where a person picks or drops an image and sees the top three classes.
"""

import _thread
import contextlib
import functools
import io
import json
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any

import numpy as np
from jsonargparse.typing import NonNegativeFloat, PositiveInt, restricted_number_type
from PIL import UnidentifiedImageError

from cifar_lightning.errors import CifarError, not_a_file
from cifar_lightning.runs.config_checks import Seed
from cifar_lightning.training.data import CLASSES

INSTALL = "pip install -e '.[serve]'"
Port = restricted_number_type("Port", int, [(">=", 1), ("<=", 65535)])
MAX_UPLOAD_MB = 10

try:
    import litserve as ls
    from fastapi import HTTPException
except ModuleNotFoundError as missing:  # serve() says how to install; the rest of the package works without
    ls, HTTPException, _MISSING = None, Exception, missing.name
else:
    _MISSING = None


class ClassifierAPI(ls.LitAPI if ls else object):
    """One image per request; LitServe gathers concurrent requests into batches for ``predict``."""

    def __init__(self, model: Path, max_batch_size: int = 16, batch_timeout: float = 0.01) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path="/predict")
        self.model = model

    def setup(self, device: str) -> None:
        # This runs in an inference worker: Ctrl-C reaches the whole process group, and the main process, which
        # gets it too, stops the workers (LitServe 0.2.19 spawns them with Python's default KeyboardInterrupt).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if self.model.suffix == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(self.model), providers=["CPUExecutionProvider"])
            self.classify = lambda images: session.run(None, {"images": images})[0]
        else:
            import torch

            from cifar_lightning.tools.export import load_classifier

            network, _ = load_classifier(self.model)

            def classify(images: np.ndarray) -> np.ndarray:
                with torch.no_grad():
                    return network(torch.from_numpy(images)).numpy()

            self.classify = classify

    def decode_request(self, request):  # noqa: ANN001 (LitServe reads the annotation: none means the raw form)
        from cifar_lightning.training.images import read_image

        upload = request.get("file") if hasattr(request, "get") else None
        if upload is None or not hasattr(upload, "read"):
            raise HTTPException(status_code=400, detail="send the image as multipart form data in the field 'file'")
        try:
            return read_image(io.BytesIO(upload.file.read()))
        except UnidentifiedImageError:
            reason = "not an image format this server reads"
        except Exception as err:  # whatever else PIL says about a stranger's bytes: the client's problem
            reason = str(err) or type(err).__name__
        raise HTTPException(status_code=415, detail=f"cannot read {upload.filename!r} as an image: {reason}")

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.classify(images)

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, probabilities: np.ndarray) -> dict[str, Any]:
        best = int(np.argmax(probabilities))
        return {
            "class": CLASSES[best],
            "probability": float(probabilities[best]),
            "probabilities": {name: float(p) for name, p in zip(CLASSES, probabilities, strict=True)},
        }


class MultipartOnly:
    """ASGI middleware: a POST to /predict that is not multipart form data gets 415 and a hint, not a 500
    from LitServe's JSON parser."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/predict":
            content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
            if not content_type.startswith("multipart/form-data"):
                body = json.dumps({"detail": "POST the image as multipart form data: curl -F file=@image.jpg URL"})
                await send(
                    {"type": "http.response.start", "status": 415, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


def build_server(model: Path, max_batch_size: int = 16, batch_timeout: float = 0.01) -> Any:
    """The LitServer, with the page at ``/``."""
    from fastapi.responses import HTMLResponse
    from starlette.formparsers import MultiPartParser

    # Starlette spools uploads over 1 MB to a temporary file, which cannot travel to LitServe's inference
    # worker process (it pickles the request): keep uploads up to the size limit in memory instead.
    MultiPartParser.spool_max_size = MAX_UPLOAD_MB * 2**20
    MultiPartParser.max_part_size = MAX_UPLOAD_MB * 2**20
    api = ClassifierAPI(model, max_batch_size, batch_timeout)
    server = ls.LitServer(
        api, accelerator="cpu", max_payload_size=MAX_UPLOAD_MB * 2**20, middlewares=[MultipartOnly], timeout=60
    )
    # LitServe 0.2.19 answers GET / with "litserve running" and has no option to leave it out: replace it.
    server.app.router.routes = [r for r in server.app.router.routes if getattr(r, "path", None) != "/"]
    page = (Path(__file__).parent / "page.html").read_text()
    server.app.add_api_route("/", lambda: HTMLResponse(page), methods=["GET"])
    return server


def check_model(path: Path) -> None:
    """Refuse, before listening, a model the server could not answer with: an unreadable file, or an ONNX model
    that is not one ``export`` wrote (uint8 pixels [N,32,32,3] named ``images`` in, ten probabilities out, in the
    order of its ``classes`` metadata)."""
    if path.suffix == ".onnx":
        import onnxruntime

        try:
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:
            raise CifarError(f"{path} is not a readable ONNX model ({str(err).splitlines()[0]})") from None
        if problem := _foreign(session):
            raise CifarError(
                f"{path} is not a model exported by this package ({problem}): export one with "
                "python -m cifar_lightning export --config CONFIG --ckpt_path best"
            )
    else:
        from cifar_lightning.tools.export import load_classifier

        load_classifier(path)


def check_address(host: str, port: int) -> None:
    """A port another program holds, or a host this machine is not, fails here in one line; in LitServe it fails
    in a forked HTTP server, with uvicorn's log line, after the workers have loaded the model."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is fine
            probe.bind(address)
    except OSError as err:
        raise CifarError(
            f"cannot listen on {host}:{port}: {err.strerror or err}; pass another --port, or a --host of this machine"
        ) from None


def _foreign(session: Any) -> str | None:
    """How an ONNX session differs from what ``export`` writes, or None."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [(i.name, i.type) for i in inputs] != [("images", "tensor(uint8)")] or list(inputs[0].shape[1:]) != [32, 32, 3]:
        found = ", ".join(f"{i.name} {i.type} {i.shape}" for i in inputs)
        return f"its input is {found}, not images uint8 [N,32,32,3]"
    try:
        classes = json.loads(session.get_modelmeta().custom_metadata_map.get("classes") or "null")
    except ValueError:
        classes = None
    if classes != list(CLASSES):
        return "its metadata has no 'classes' list of the CIFAR-10 classes"
    try:
        probabilities = session.run(None, {"images": np.zeros((2, 32, 32, 3), np.uint8)})[0]
    except Exception as err:
        return f"it fails on two images: {str(err).splitlines()[0]}"
    if len(outputs) != 1 or probabilities.shape != (2, 10) or not np.allclose(probabilities.sum(1), 1, atol=1e-4):
        return f"its output for two images has shape {probabilities.shape}, not ten probabilities each"
    return None


def post_image(url: str, data: bytes, filename: str = "image.png", field: str = "file") -> tuple[int, dict]:
    """POST one image as multipart form data with the standard library; (status, JSON answer)."""
    import urllib.error
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n\r\n'
    body = head.encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def serve(
    model: str = "",
    config: str = "",
    ckpt_path: str = "best",
    seed: Seed = 0,
    host: str = "127.0.0.1",
    port: Port = 8000,
    max_batch_size: PositiveInt = 16,
    batch_timeout: NonNegativeFloat = 0.01,
) -> int:
    """Serve a model over HTTP: POST /predict with an image (multipart field 'file'); GET / is a page.

    Args:
        model: an exported ``.onnx`` file, or a checkpoint file.
        config: instead of ``model``, the config whose run's ``ckpt_path`` (``best``/``last``/a file) to serve.
        ckpt_path: with ``config``: ``best``, ``last`` or a checkpoint file.
        seed: with ``config``: which seed's run ``best``/``last`` mean.
        host: the address to listen on (127.0.0.1: this machine only; 0.0.0.0: every network).
        port: the port to listen on.
        max_batch_size: at most this many concurrent requests are classified together.
        batch_timeout: seconds a request waits for others to fill a batch.
    """
    if _MISSING:
        raise CifarError(f"serve needs {_MISSING}: install the extra with {INSTALL}")
    if bool(model) == bool(config):
        raise CifarError("serve needs either --model FILE (.onnx or .ckpt) or --config FILE [--ckpt_path best]")
    if config:
        from cifar_lightning.tools.export import resolve

        path = resolve(Path(config), ckpt_path, seed)
    else:
        path = Path(model)
    if not path.is_file():
        raise CifarError(f"{path} {not_a_file(path)}: pass an exported .onnx file or a checkpoint")
    check_model(path)  # a bad file fails here, with a one-line error, not in a worker process
    check_address(host, port)
    # SIGTERM (a process manager, kill) takes LitServe's Ctrl-C path, which stops its worker processes too;
    # left alone, SIGTERM ended this process and orphaned the workers (LitServe 0.2.19). The HTTP server
    # processes are forked with these handlers (see _interrupt); the inference workers are spawned, and ignore
    # Ctrl-C in ClassifierAPI.setup.
    stop = functools.partial(_interrupt, os.getpid())
    before = _child_pids()  # a caller's own processes are not serve's to stop
    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, functools.partial(_deliver_again, sys.unraisablehook, stop)
    try:
        print(f"serving {path} on http://{host}:{port}/ (POST /predict, GET / for the page)", file=sys.stderr)
        build_server(path, max_batch_size, batch_timeout).run(host=host, port=int(port), generate_client_file=False)
    except KeyboardInterrupt:
        # LitServe handles a Ctrl-C itself once it serves, and stops its processes; one that reaches here came
        # while they were starting (the workers loading the model, the HTTP servers starting), and whichever
        # of them the signal did not end are still here (LitServe 0.2.19).
        return _stopped_while_starting(before)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
    # LitServe catches a Ctrl-C that lands while it starts an HTTP server process; the process it was starting is
    # not yet among those it stops, and would serve on after this one ended (LitServe 0.2.19)
    if multiprocessing.active_children() or _unrecorded(before):
        return _stopped_while_starting(before)
    print("serve: stopped", file=sys.stderr)
    return 0


def _stopped_while_starting(before: set[int]) -> int:
    """Stop what a cut-short start left running; the status of a start cut short by Ctrl-C."""
    _stop(multiprocessing.active_children())
    _end(_unrecorded(before))
    print("serve: stopped while starting, before it served", file=sys.stderr)
    return 130


def _child_pids() -> set[int]:
    """The living child processes of this one, read from /proc (none where there is no /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while being read
        if int(parent) == os.getpid() and state != "Z":
            found.add(int(stat.parent.name))
    return found


def _unrecorded(before: set[int]) -> set[int]:
    """Processes serve started that multiprocessing does not know of: one forked in the instant a signal cut
    its start short, before multiprocessing recorded it (Python 3.11), serves on unless stopped here.
    multiprocessing's resource tracker is left to end with this process, as it does."""
    from multiprocessing import resource_tracker

    known = {p.pid for p in multiprocessing.active_children()}
    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)  # no public way to ask (Python 3.11)
    return _child_pids() - before - known - {tracker}


def _end(pids: set[int]) -> None:
    """SIGTERM to each process, SIGKILL to any still there 10 s later; each is reaped."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.05)


def _stop(processes: list[multiprocessing.Process]) -> None:
    """Stop the workers, then the manager process they talk to (stopped first, it leaves them a traceback)."""
    workers = [p for p in processes if not p.name.startswith("SyncManager")]
    for group in (workers, [p for p in processes if p not in workers]):
        for process in group:
            process.terminate()
        for process in group:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()


def _deliver_again(previous_hook: Any, handler: Any, unraisable: Any) -> None:
    """Raise a lost Ctrl-C again, once the code that lost it is done, if serve's ``handler`` still has SIGINT.

    A signal that lands while LitServe forks a process is raised inside one of Python's at-fork hooks (logging's
    lock release), where an exception is only printed, and serve went on starting and served on (Python 3.11).
    One that lands inside multiprocessing's ``Finalize.__init__`` leaves a finalizer it never registered, which
    fails with "'Finalize' object has no attribute '_key'" once the process object it watched is gone: the
    signal itself was delivered, and the pipe that finalizer would close ends with serve's process, so that
    traceback is dropped.
    """
    if isinstance(unraisable.object, Finalize) and not hasattr(unraisable.object, "_key"):
        return
    if not issubclass(unraisable.exc_type, KeyboardInterrupt):
        previous_hook(unraisable)
        return

    def again() -> None:
        if signal.getsignal(signal.SIGINT) is handler:
            _thread.interrupt_main()

    timer = threading.Timer(0.1, again)
    timer.daemon = True
    timer.start()


def _interrupt(main_pid: int, signum: int, frame: Any) -> None:
    if os.getpid() == main_pid:
        raise KeyboardInterrupt
    # a process forked from this one: the main process, which got the same Ctrl-C, stops it, and LitServe stops
    # it with SIGTERM, which must just end it
    if signum == signal.SIGINT:
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)
