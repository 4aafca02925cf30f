"""The server's rooms and their floors: a module may import only from its own floor or below, and engines (floor 2)
are peers. tests/test_architecture.py checks every import against this table; README's Layout shows it."""

from __future__ import annotations

from typing import Dict, FrozenSet, Tuple

LAYERS: Dict[str, int] = {
    # 0: core types and errors, the device and its dtype (measured once per machine), configuration, job defaults,
    #    process settings for speed
    "__init__": 0,
    "core": 0,
    "device": 0,
    "calibration": 0,
    "config": 0,
    "defaults": 0,
    "tuning": 0,
    "layers": 0,
    # 1: what engines share: image operations, wire pixels <-> numpy, batch counts, the fills, face detection,
    #    the model registry and loaders, the model downloader, seamless textures (wrap padding, the seam check), the
    #    styles folders, the diffusers core every checkpoint engine specialises (load, warm-up, memory fallbacks,
    #    progress, result layers)
    "imageops": 1,
    "payloads": 1,
    "batches": 1,
    "patchfill": 1,
    "lama": 1,
    "detect": 1,
    "models": 1,
    "downloads": 1,
    "seamless": 1,
    "styles": 1,
    "checkpoint": 1,
    # 2: the engines, peers (caption: describing a picture in words)
    "classical": 2,
    "diffusion": 2,
    "families": 2,
    "upscale": 2,
    "preprocess": 2,
    "caption": 2,
    # 3: picks the engine for a job, after applying its style and choosing its inpaint method (job planners); what
    #    each checkpoint family can run (announced in welcome)
    "router": 3,
    "stylejob": 3,
    "inpaintplan": 3,
    "offers": 3,
    # 4: the job queue and its events, client sessions, downloads asked for by clients, who may connect, the network
    #    log, outboxes, the server-wide budget for incoming frame bytes
    "jobs": 4,
    "events": 4,
    "sessions": 4,
    "pulls": 4,
    "access": 4,
    "netlog": 4,
    "outbox": 4,
    "inflight": 4,
    # 5: the websocket application, and the same application over a pool of engine replicas on Ray Serve
    "app": 5,
    "cluster": 5,
    # 6: the command line (parser and dispatch), its subcommands, and its job read from files; 7: python -m server
    "cli": 6,
    "commands": 6,
    "runjob": 6,
    "__main__": 7,
}

ENGINE_USES: FrozenSet[Tuple[str, str]] = frozenset(
    {
        ("diffusion", "preprocess"),  # a control layer run through the preprocessors when the job asks for it
        ("families", "diffusion"),  # the Flux/SD3 engine shares the SD engine's prompt syntax, LoRAs and control images
    }
)
"""The only imports allowed between engines."""
