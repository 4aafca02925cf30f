"""Tiny stand-ins of the SD1.5 starter set's files, pulled under their real names from the local stand-in hub
(tests/hubstandin.py), and a replay of a recorded job with one thing changed: shared by the engine-level good-defaults
test (tests/test_good_defaults.py) and the real-host ones (Krita, GIMP).

The tiny single-file checkpoints and ControlNet need their weightless ``.config/`` folders (their sizes are not the
real architectures'; the real files need none): those are put in the models folder before the pull."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Mapping, Tuple

import numpy as np

import factory
from protocol.client import Client
from protocol.images import BGRA8
from server.downloads import Catalogue
from tests.hubstandin import Hub

ROOT = Path(__file__).resolve().parent.parent
STARTER = ("dreamshaper-8", "sd15-controlnet-inpaint", "sd15-lcm-lora")  # the sd15 starter set less its inpainting


def _ldm_controlnet(tmp: Path) -> Path:
    """The tiny SD1.5 inpaint ControlNet as lllyasviel's single files are (original key names), config beside it."""
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    net = ControlNetModel.from_pretrained(factory.controlnet_path("cn-sd15-inpaint"))
    state = factory._ldm_layout().controlnet_to_ldm(net.state_dict(), net.config.layers_per_block)
    path = tmp / "cn.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    net.save_config(tmp / "cn.config")
    return path


def build(tmp: Path) -> Dict[str, Path]:
    """Catalogue file id → the tiny stand-in served under its name, with its ``.config`` folder when it has one."""
    return {
        "dreamshaper-8": factory.checkpoint_file("sd15"),
        "dreamshaper-8-inpainting": factory.checkpoint_file("sd15-inpaint"),
        "sd15-controlnet-inpaint": _ldm_controlnet(tmp),
        "sd15-lcm-lora": factory.lora_path("sd15"),
    }


def pull(models: Path, standins: Mapping[str, Path], ids: Iterable[str]) -> None:
    """``paintbridge models pull ID...`` against the stand-in hub serving the tiny files under the catalogue's names
    (each single file's weightless config folder laid beside its target first)."""
    ids = list(ids)
    files = Catalogue.load().files
    with Hub() as hub:
        for item in ids:
            entry, src = files[item], standins[item]
            hub.files[(entry.repo, entry.file)] = src.read_bytes()
            config = src.with_name(src.name[: -len(".safetensors")] + ".config")
            target = models / entry.target
            if config.is_dir():
                shutil.copytree(config, target.with_name(target.name[: -len(".safetensors")] + ".config"))
        out = subprocess.run(
            [sys.executable, "-m", "server", "models", "pull", *ids, "--models", str(models)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
            env={**os.environ, **hub.env},
        )
    assert out.returncode == 0, out.stdout + out.stderr
    for item in ids:
        assert (models / files[item].target).read_bytes() == standins[item].read_bytes()


@contextmanager
def pulled_server(work: Path, ids: Iterable[str]) -> Iterator[Tuple[Any, Any]]:
    """A ``paintbridge serve`` process (its own styles folder) over ``work/models`` that got the stand-ins ``ids`` by
    a pull, behind a proxy recording every job (tests/recordproxy.py): yields (server, proxy)."""
    from conftest import ServerProcess
    from recordproxy import RecordingProxy

    models = work / "models"
    pull(models, build(work), ids)
    server = ServerProcess(["--models", str(models), "--styles", str(work / "styles")], work / "server.log").start()
    proxy = RecordingProxy(server.url)
    try:
        yield server, proxy
    finally:
        proxy.close()
        server.stop()


def automatic_inpaint(info: dict) -> bool:
    """``info["inpaint"]`` says the automatic method ran: the inpaint ControlNet on a pre-filled hole, or the
    matching inpainting checkpoint."""
    method = info.get("method")
    return (method == "controlnet" and info.get("prefill") == "patch" and bool(info.get("control"))) or (
        method == "checkpoint" and bool(info.get("model"))
    )


def fewstep_live(info: dict) -> bool:
    """A live frame's ``info`` says it ran with the LCM LoRA at the few-step preset's steps."""
    live = (info.get("style") or {}).get("live") or {}
    lcm = [{"name": "lcm-lora-sdv1-5", "weight": 1.0}]
    return (
        live.get("fewstep") == "lcm-lora-sdv1-5"
        and live.get("steps") == info.get("steps") == 4
        and (info.get("loras") == lcm)
    )


def replay(url: str, job: Mapping[str, Any], job_id: str, params: Mapping[str, Any] = (), **fields) -> Tuple[dict, Any]:
    """Send ``job`` (a job as the server received it, e.g. from tests/recordproxy.py) again as ``job_id`` with
    ``params`` and ``fields`` changed: the result's first layer's ``info`` and its pixels (RGBA, height x width x 4)."""
    raw = {k: v for k, v in job.items() if k != "type"}
    raw.update(fields, id=job_id, params={**dict(job.get("params") or {}), **dict(params)})
    with Client(url, client_name="paintbridge-test-replay") as client:
        result = client.run(raw, timeout=300)
    layer = result.layers[0]
    pixels = np.frombuffer(layer.data, np.uint8).reshape(layer.height, layer.width, 4)
    return {**dict(result.info), **dict(layer.info or {})}, pixels[
        ..., [2, 1, 0, 3]
    ] if layer.format == BGRA8 else pixels
