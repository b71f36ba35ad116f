"""Dynamic micro-batching: concurrent requests for one model share a model call.

Requests go into an asyncio queue. A collector takes the first one, then keeps taking until the
batch holds ``max_batch`` samples or ``max_wait_ms`` has passed, and hands the joined batch to a
bounded thread pool (the model runs outside the event loop, under ``torch.inference_mode()``).
It first waits for a free slot in the pool, so requests that arrive while the model is busy
accumulate in the queue and form the next, fuller batch. ``max_batch=1`` is plain one-by-one serving.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import Any, Callable

from .._validation import check_number

log = logging.getLogger(__name__)


class MicroBatcher:
    def __init__(self, run: Callable[[Any], tuple], codec, executor: Executor, *, max_batch: int = 64,
                 max_wait_ms: float = 2.0, concurrency: int = 1, on_batch: Callable[[int], None] | None = None):
        self.run, self.codec, self.executor = run, codec, executor
        self.max_batch = check_number(max_batch, "max_batch", owner="MicroBatcher", low=1, integer=True)
        self.max_wait = check_number(max_wait_ms, "max_wait_ms", owner="MicroBatcher", low=0) / 1000.0
        self.concurrency = check_number(concurrency, "concurrency", owner="MicroBatcher", low=1, integer=True)
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._held = None  # an item that did not fit into the previous batch
        self._running: set[asyncio.Task] = set()
        self._loop = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def ensure_started(self) -> None:
        """Start the collector in the running event loop (again, if a test client changed loops)."""
        loop = asyncio.get_running_loop()
        if not self.running or self._loop is not loop:
            await self.start()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._held = None
        self._queue = asyncio.Queue()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._task = asyncio.create_task(self._collect(), name="robustkit-microbatcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._running, return_exceptions=True)
            self._task = None

    async def submit(self, x) -> tuple:
        """The model's outputs (logits, scores) for the samples of x, computed in some shared batch."""
        await self.ensure_started()
        fut = asyncio.get_running_loop().create_future()
        await self._queue.put((x, self.codec.size(x), fut))
        return await fut

    async def _next(self, timeout: float | None):
        if self._held is not None:
            item, self._held = self._held, None
            return item
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), timeout) if timeout > 0 else self._queue.get_nowait()

    async def _collect(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                first = await self._next(None)
            except BaseException:
                self._slots.release()
                raise
            items, total = [first], first[1]
            deadline = time.monotonic() + self.max_wait
            while total < self.max_batch:
                try:
                    item = await self._next(deadline - time.monotonic())
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if total + item[1] > self.max_batch:
                    self._held = item
                    break
                items.append(item)
                total += item[1]
            task = asyncio.create_task(self._run(items, total))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, items: list, total: int) -> None:
        try:
            live = [it for it in items if not it[2].done()]  # skip requests whose clients went away
            if not live:
                return
            x = self.codec.concat([it[0] for it in live])
            try:
                logits, scores = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, x)
            except Exception as err:  # noqa: BLE001 - every waiting request must hear about it
                for it in live:
                    if not it[2].done():
                        it[2].set_exception(err)
                return
            if self.on_batch is not None:
                self.on_batch(sum(it[1] for it in live))
            start = 0
            for it in live:
                if not it[2].done():
                    it[2].set_result((logits[start:start + it[1]], scores[start:start + it[1]]))
                start += it[1]
        finally:
            self._slots.release()
