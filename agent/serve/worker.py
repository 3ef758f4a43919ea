"""``ModelWorker``: runs every assistant call on one thread, in arrival order, off the event loop.

llama.cpp is blocking and there is one local model, so calls run one at a time; the event loop only waits on them.
A streamed call runs its iterator on the worker thread and hands each item to the loop through a queue:

    request -> admit (503 when ``max_waiting`` calls are queued already) -> worker thread: iterate, put each item
    -> event loop: yield items as they come; the client went away -> the iterator is closed at its next item
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from slmkit.agent.serve.convert import RequestError

__all__ = ["ModelWorker"]

T = TypeVar("T")
_END = object()


class ModelWorker:
    """One thread for the model; ``run`` for a whole result, ``stream`` for items as they are produced."""

    def __init__(self, max_waiting: int = 32) -> None:
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="slmkit-model")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        """Calls running or waiting."""
        return self._pending

    def _admit(self) -> None:
        with self._lock:
            if self._pending > self.max_waiting:
                raise RequestError(
                    f"The server is busy: {self._pending} requests are already running or waiting for the one "
                    "local model. Retry shortly.",
                    code="server_busy",
                    status=503,
                )
            self._pending += 1

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` on the worker thread, after the calls before it."""
        self._admit()

        def job() -> T:
            try:
                return fn()
            finally:
                self._release()

        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def stream(self, produce: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Items of ``produce()`` as the worker thread makes them; an exception inside is raised here."""
        self._admit()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[object, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: object, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def job() -> None:
            try:
                if stop.is_set():  # the client left while the request was waiting
                    return
                items = produce()
                try:
                    for item in items:
                        put("item", item)
                        if stop.is_set():
                            break
                finally:
                    close = getattr(items, "close", None)
                    if callable(close):
                        close()
            except BaseException as exc:
                put("error", exc)
            finally:
                self._release()
                put(_END, None)

        loop.run_in_executor(self._executor, job)
        try:
            while True:
                kind, value = await queue.get()
                if kind is _END:
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()

    def shutdown(self) -> None:
        """Drop waiting calls; the running one finishes on its own."""
        self._executor.shutdown(wait=False, cancel_futures=True)
