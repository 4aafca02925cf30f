"""The websocket application: handshake, message dispatch, one outgoing queue per connection, the job worker."""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from typing import Callable, List, Optional

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from protocol import errors
from protocol.codec import decode, encode
from protocol.errors import ProtocolError
from protocol.images import BGRA8, ImagePayload
from protocol.messages import PROTOCOL_VERSION, ResultLayer, check_compatible, parse_client_message

from . import __version__
from .config import ServerConfig
from .core import Control, Job, Layer, Params
from .router import Router
from .jobs import JobQueue, QueuedJob

log = logging.getLogger("paintbridge.server")


def payload_to_array(payload: ImagePayload) -> np.ndarray:
    """An image payload as H x W x 4 RGBA (or H x W for gray8) uint8, a fresh writable array."""
    arr = np.frombuffer(payload.data, np.uint8)
    if payload.format == "gray8":
        return arr.reshape(payload.height, payload.width).copy()
    arr = arr.reshape(payload.height, payload.width, 4)
    return arr[..., [2, 1, 0, 3]].copy() if payload.format == BGRA8 else arr.copy()


def control_pixels(payload: ImagePayload, preprocess: bool) -> np.ndarray:
    """A control layer's pixels: RGBA kept when the server preprocesses it (the preprocessor flattens a sketch on a
    transparent layer onto white paper); otherwise RGB over black, the "no signal" colour of control images."""
    arr = payload_to_array(payload)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    if preprocess:
        return arr
    alpha = arr[..., 3:4].astype(np.uint16)
    return ((arr[..., :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)


def job_from_message(msg: dict) -> Job:
    """Decode a validated ``job`` message's pixels into a Job."""
    controls = [
        Control(type=c["type"], image=control_pixels(c["image"], c["preprocess"]), strength=c["strength"],
                start=c["start"], end=c["end"], preprocess=c["preprocess"], model=c["model"])
        for c in msg["controls"]
    ]
    image = payload_to_array(msg["image"]) if msg["image"] is not None else None
    for i, ctl in enumerate(controls):
        if image is not None and ctl.image.shape[:2] != image.shape[:2]:
            raise ProtocolError(
                errors.BAD_REQUEST,
                f"field 'controls[{i}].image' is {ctl.image.shape[1]}x{ctl.image.shape[0]} but the image is "
                f"{image.shape[1]}x{image.shape[0]}", field=f"controls[{i}].image", job_id=msg["id"])
    return Job(
        id=msg["id"], mode=msg["mode"], model=msg["model"], prompt=msg["prompt"],
        negative_prompt=msg["negative_prompt"], image=image,
        mask=payload_to_array(msg["mask"]) if msg["mask"] is not None else None,
        params=Params.from_wire(msg["params"]), controls=controls, x=msg["x"], y=msg["y"], previews=msg["previews"],
    )


def encode_layers(layers: List[Layer], fmt: str) -> List[dict]:
    """Result layers as wire maps in the client's pixel format."""
    out = []
    for layer in layers:
        rgba = np.ascontiguousarray(layer.rgba, dtype=np.uint8)
        pixels = rgba[..., [2, 1, 0, 3]] if fmt == BGRA8 else rgba
        out.append(ResultLayer(
            name=layer.name, x=int(layer.x), y=int(layer.y), width=rgba.shape[1], height=rgba.shape[0], format=fmt,
            data=np.ascontiguousarray(pixels).tobytes(), seed=int(layer.seed), info=layer.info,
        ).to_wire())
    return out


class Session:
    """One client connection: its outgoing queue (so events keep their order) and identity."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.client = ""

    async def send(self, msg: dict) -> None:
        await self.outbox.put(msg)

    async def pump(self) -> None:
        """Send queued messages in order until the connection closes."""
        while True:
            msg = await self.outbox.get()
            try:
                await self.ws.send(encode(msg))
            except ConnectionClosed:
                return


class PaintbridgeServer:
    """The server: accepts connections, checks the handshake, validates and queues jobs."""

    def __init__(self, config: ServerConfig, router: Optional[Router] = None) -> None:
        config.validate()
        self.config = config
        self.router = router or Router(config)
        self.queue: Optional[JobQueue] = None
        self.device = ""

    def welcome(self) -> dict:
        return {
            "type": "welcome", "protocol": PROTOCOL_VERSION, "server_version": __version__, "device": self.device,
            "models": self.router.models(), "capabilities": self.router.capabilities(),
            "limits": self.config.limits.to_wire(),
        }

    def _encode_result(self, item: QueuedJob, layers: List[Layer], elapsed: float) -> dict:
        return {"type": "result", "id": item.job.id, "layers": encode_layers(layers, item.result_format),
                "elapsed": round(elapsed, 4), "params": item.job.params.to_wire()}

    async def _handshake(self, ws: ServerConnection, session: Session) -> bool:
        try:
            frame = await asyncio.wait_for(ws.recv(), timeout=self.config.handshake_timeout)
        except asyncio.TimeoutError:
            await ws.send(encode(errors.ProtocolError(
                errors.BAD_REQUEST, f"no 'hello' within {self.config.handshake_timeout:g} s").to_message()))
            return False
        try:
            msg = parse_client_message(decode(frame), self.config.limits)
            if msg["type"] != "hello":
                raise ProtocolError(errors.BAD_REQUEST, f"the first message must be 'hello', got '{msg['type']}'",
                                    field="type")
            check_compatible(msg["protocol"])
            if self.config.token is not None and not hmac.compare_digest(
                (msg["token"] or "").encode(), self.config.token.encode()
            ):
                raise ProtocolError(errors.UNAUTHORIZED,
                                    "wrong or missing token: this server requires the token it was started with")
        except ProtocolError as err:
            await ws.send(encode(err.to_message()))
            return False
        session.client = f"{msg['client']} {msg['client_version']}".strip()
        await ws.send(encode(await asyncio.to_thread(self.welcome)))
        return True

    async def handler(self, ws: ServerConnection) -> None:
        session = Session(ws)
        if not await self._handshake(ws, session):
            await ws.close(1008, "handshake refused")
            return
        pump = asyncio.create_task(session.pump())
        try:
            async for frame in ws:
                await self._dispatch(session, frame)
        except ConnectionClosed:
            pass
        finally:
            dropped = self.queue.drop_owner(session) if self.queue else 0
            if dropped:
                log.info("client %s left; %d job(s) cancelled", session.client, dropped)
            pump.cancel()

    async def _dispatch(self, session: Session, frame) -> None:
        try:
            msg = parse_client_message(decode(frame, self.config.limits.max_frame_bytes), self.config.limits)
            kind = msg["type"]
            if kind == "job":
                if self.queue.has(session, msg["id"]):
                    raise ProtocolError(errors.BAD_REQUEST, f"job id {msg['id']!r} is already queued or running",
                                        field="id", job_id=msg["id"])
                job = job_from_message(msg)
                await self.queue.submit(QueuedJob(job, session, session.send, msg["result_format"]))
            elif kind == "cancel":
                if not await self.queue.cancel(session, msg["id"]):
                    raise ProtocolError(errors.BAD_REQUEST, f"no queued or running job with id {msg['id']!r}",
                                        field="id", job_id=msg["id"])
            elif kind == "list_models":
                await asyncio.to_thread(self.router.rescan)
                await session.send({"type": "models", "models": self.router.models()})
            elif kind == "hello":
                raise ProtocolError(errors.BAD_REQUEST, "'hello' was already received on this connection",
                                    field="type")
        except ProtocolError as err:
            await session.send(err.to_message())

    async def run(self, on_ready: Optional[Callable[[int], None]] = None,
                  stop: Optional[asyncio.Event] = None) -> None:
        """Serve until ``stop`` is set (forever without one); ``on_ready(port)`` is called once listening."""
        self.device = await asyncio.to_thread(self.router.device_description)
        self.queue = JobQueue(self.router.run, self._encode_result, self.config.limits.max_queue)
        worker = asyncio.create_task(self.queue.worker())
        if self.config.preload:
            threading.Thread(target=self.router.preload, name="paintbridge-preload", daemon=True).start()
        async with serve(self.handler, self.config.host, self.config.port,
                         max_size=self.config.limits.max_frame_bytes, compression=None) as server:
            if on_ready is not None:
                on_ready(next(iter(server.sockets)).getsockname()[1])
            await (stop.wait() if stop is not None else asyncio.Future())
        worker.cancel()
        if self.queue.current is not None:
            self.queue.current.ctx.cancel()


class ServerThread:
    """Run a server in a background thread (tests, the CLI's self-started server). Use as a context manager."""

    def __init__(self, config: ServerConfig, router: Optional[Router] = None) -> None:
        self.server = PaintbridgeServer(config, router)
        self.port = 0
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._error: Optional[BaseException] = None

    @property
    def url(self) -> str:
        return f"ws://{self.server.config.host}:{self.port}"

    def start(self, timeout: float = 120.0) -> "ServerThread":
        ready, bound = threading.Event(), []

        def on_ready(port: int) -> None:
            bound.append(port)
            ready.set()

        def main() -> None:
            self._loop = asyncio.new_event_loop()
            self._stop = asyncio.Event()
            try:
                self._loop.run_until_complete(self.server.run(on_ready, self._stop))
            except BaseException as err:  # noqa: BLE001 - reported by start()
                self._error = err
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=main, name="paintbridge-server", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError("the server did not start in time")
        if self._error is not None:
            raise self._error
        self.port = bound[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
