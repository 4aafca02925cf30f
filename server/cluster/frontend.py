"""The cluster front end: the same websocket server (handshake, token and origin rules, sessions, outboxes) whose jobs
run on the pool's replicas (``dispatch.PoolQueue``) instead of in this process; ``welcome`` reports the pool, and
final messages are also kept outside this process (``results``) until delivered, so a restart loses none."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import List, Optional

from protocol.messages import Welcome

from ..app import PaintbridgeServer
from ..config import ServerConfig
from ..defaults import with_family
from ..router import Router
from .dispatch import PoolQueue
from .pool import Pool
from .results import RayKeeper

log = logging.getLogger("paintbridge.cluster")

REFRESH_SECONDS = 3.0  # how often the pool is asked who is in it (workers join, replicas restart)


class ClusterServer(PaintbridgeServer):
    """``PaintbridgeServer`` over a pool of replicas on an attached Ray cluster (``ray.init`` done by the caller)."""

    def __init__(self, config: ServerConfig, pool: Optional[Pool] = None, router: Optional[Router] = None) -> None:
        super().__init__(config, router)
        self.pool = pool or Pool()
        self._refresher: Optional[asyncio.Task] = None

    def models(self) -> List[dict]:
        """The models some replica of the pool has (replicas never send paths)."""
        return with_family(self.pool.listing())

    def welcome(self, session: Optional[str] = None, resumed: tuple = ()) -> Welcome:
        base = super().welcome(session, resumed)
        return dataclasses.replace(base, capabilities=dict(base.capabilities, pool=self.pool.capabilities()))

    async def prepare(self) -> None:
        self.keeper = RayKeeper()
        self.kept = await asyncio.to_thread(self.keeper.restore, self.config.grace)
        await self.pool.refresh(rescan=True)
        self.device = self.pool.device_description()
        self.queue = PoolQueue(self.pool, self.config.limits.max_queue)
        self._refresher = asyncio.ensure_future(self._refresh_forever())
        log.info("cluster front end: %s", self.device)

    async def run(self, on_ready=None, stop: Optional[asyncio.Event] = None) -> None:
        try:
            await super().run(on_ready, stop)
        finally:
            if isinstance(self.keeper, RayKeeper):  # (before the running jobs' ``cancelled``: those jobs are lost)
                self.keeper.close()
            if self._refresher is not None:
                self._refresher.cancel()

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.pool.refresh()
            except Exception as err:  # noqa: BLE001 - the next round tries again
                log.warning("could not refresh the pool: %s: %s", type(err).__name__, err)
                continue
            self.device = self.pool.device_description()
            self.queue._wakeup.set()
