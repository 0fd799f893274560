"""The lean transport's connection pool: keep-alive connections per key under one global
limit, with O(1) acquire and release (PERF-NOTES: httpcore's pool collapsed at a few hundred
live streams, encode/httpcore#1035), and the body stream that gives a connection back."""

from __future__ import annotations

import asyncio
import collections
from collections import OrderedDict

import httpx

from gateway.kiro.connection import LOW_WATER, Connection, PoolKey, PoolStats


class ResponseStream(httpx.AsyncByteStream):
    """Body bytes of one response, a chunk per socket read, as they arrive."""

    __slots__ = ("_conn", "_pool")

    def __init__(self, conn: Connection, pool: ConnectionPool) -> None:
        self._conn: Connection | None = conn
        self._pool = pool

    def __aiter__(self) -> ResponseStream:
        # A plain iterator, not an async generator: one frame fewer per chunk.
        return self

    async def __anext__(self) -> bytes:
        """Return the next chunk, waiting for the socket if none is buffered."""
        conn = self._conn
        if conn is None:
            raise StopAsyncIteration
        chunks = conn._chunks
        while not chunks:
            if conn._error is not None:
                error = conn._error
                self._release(reuse=False)
                raise error
            if conn._complete:
                self._release(reuse=True)
                raise StopAsyncIteration
            try:
                await conn.wait()
            except BaseException:
                # ReadTimeout, or the client went away (CancelledError): the connection
                # is mid-response, so it can never be reused.
                self._release(reuse=False)
                raise
        chunk = chunks.popleft()
        conn._buffered -= len(chunk)
        if conn._reading_paused and conn._buffered < LOW_WATER:
            conn._reading_paused = False
            conn.transport.resume_reading()  # type: ignore[union-attr]
        return chunk

    async def aclose(self) -> None:
        """Return a fully received keep-alive connection to the pool, else close it."""
        self._release(reuse=True)

    def _release(self, *, reuse: bool) -> None:
        """Hand the connection back exactly once."""
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        if reuse and conn.finish_response():
            self._pool.release(conn)
        else:
            conn.finish_response()
            self._pool.discard(conn)


class ConnectionPool:
    """Keep-alive connections per key under one global limit; O(1) acquire and release."""

    def __init__(self, *, max_connections: int, keepalive_expiry: float | None) -> None:
        self._max = max_connections
        self._expiry = keepalive_expiry
        self._total = 0  # live connections + slots held by connects in progress
        self._live: set[Connection] = set()
        # Per key, LIFO: the most recently used connection is the likeliest to still be open.
        self._idle: dict[PoolKey, OrderedDict[Connection, None]] = {}
        # All idle connections, oldest first: expiry and cross-key eviction take the head.
        self._idle_all: OrderedDict[Connection, None] = OrderedDict()
        self._waiters: collections.deque[tuple[PoolKey, asyncio.Future[Connection | None]]] = (
            collections.deque()
        )
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def stats(self) -> PoolStats:
        """Count connections, idle ones and live waiters."""
        waiting = sum(1 for _, fut in self._waiters if not fut.done())
        return PoolStats(connections=self._total, idle=len(self._idle_all), waiting=waiting)

    async def acquire(self, key: PoolKey, pool_timeout: float | None) -> Connection | None:
        """Return an idle connection for `key`, or None with a slot reserved to connect."""
        if self.closed:
            raise RuntimeError("The transport is closed")
        loop = self._loop = asyncio.get_running_loop()
        conn = self._take_idle(key, loop.time())
        if conn is not None:
            return conn
        waiters = self._waiters
        # Timed-out or cancelled waiters stay queued until someone passes them; drop those
        # at the head so they don't make us queue behind nobody (amortised O(1)).
        while waiters and waiters[0][1].done():
            waiters.popleft()
        if not waiters:
            if self._total < self._max:
                self._total += 1
                return None
            if self._idle_all:
                # At the limit with idle connections to other hosts: recycle the oldest slot.
                victim, _ = self._idle_all.popitem(last=False)
                self._unlist_idle(victim)
                self._drop(victim)
                return None
        fut: asyncio.Future[Connection | None] = loop.create_future()
        waiters.append((key, fut))
        timer = None
        if pool_timeout is not None:
            timer = loop.call_later(pool_timeout, _expire_waiter, fut)
        try:
            return await fut
        except asyncio.CancelledError:
            # Granted in the same loop iteration as the cancellation: give it back.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                granted = fut.result()
                if granted is None:
                    self.free_slot()
                else:
                    self.release(granted)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def add(self, conn: Connection) -> None:
        """Track a newly connected connection (its slot was reserved by `acquire`)."""
        self._live.add(conn)

    def release(self, conn: Connection) -> None:
        """Take back a connection that finished a response and may be reused."""
        if self.closed or not conn.is_alive():
            self.discard(conn)
            return
        conn.reused = True
        waiters = self._waiters
        while waiters:
            key, fut = waiters.popleft()
            if fut.done():
                continue
            if key == conn.key:
                fut.set_result(conn)
            else:
                # FIFO across keys: the first waiter wants another host, so this
                # connection's slot becomes theirs.
                self._drop(conn)
                fut.set_result(None)
            return
        conn.in_pool = True
        conn.idle_since = self._loop.time() if self._loop else 0.0
        self._idle.setdefault(conn.key, OrderedDict())[conn] = None
        self._idle_all[conn] = None
        self._schedule_sweep()

    def discard(self, conn: Connection) -> None:
        """Close a connection that must not be reused and free its slot."""
        self._drop(conn)
        self.free_slot()

    def free_slot(self) -> None:
        """Give a slot to the first live waiter, or return it to the pool."""
        if self.closed:
            return  # close() already zeroed the count
        waiters = self._waiters
        while waiters:
            _, fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._total -= 1

    def lost_idle(self, conn: Connection) -> None:
        """Forget an idle connection the server closed."""
        if conn.in_pool:
            self._idle_all.pop(conn, None)
            self._unlist_idle(conn)
            self._live.discard(conn)
            self.free_slot()

    def close(self) -> None:
        """Close every connection and fail every waiter."""
        self.closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            _, fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("The transport is closed"))
        for conn in list(self._live):
            conn.in_pool = False
            conn.abort()
        self._live.clear()
        self._idle.clear()
        self._idle_all.clear()
        self._total = 0

    def _drop(self, conn: Connection) -> None:
        """Close a connection and stop tracking it, keeping its slot counted."""
        if not conn.closed:
            conn.abort()
        self._live.discard(conn)

    def _take_idle(self, key: PoolKey, now: float) -> Connection | None:
        """Pop the newest usable idle connection for `key`, closing dead ones on the way."""
        idle = self._idle.get(key)
        while idle:
            conn, _ = idle.popitem()
            del self._idle_all[conn]
            conn.in_pool = False
            expired = self._expiry is not None and now - conn.idle_since >= self._expiry
            if not expired and conn.is_alive():
                return conn
            self.discard(conn)
        return None

    def _unlist_idle(self, conn: Connection) -> None:
        """Remove an idle connection from its key's list (`_idle_all` is the caller's)."""
        conn.in_pool = False
        idle = self._idle.get(conn.key)
        if idle is not None:
            idle.pop(conn, None)
            if not idle:
                del self._idle[conn.key]

    def _schedule_sweep(self) -> None:
        """Arm one timer for the oldest idle connection's expiry."""
        if self._sweeper is not None or self._expiry is None or not self._idle_all:
            return
        oldest = next(iter(self._idle_all))
        assert self._loop is not None
        self._sweeper = self._loop.call_at(oldest.idle_since + self._expiry, self._sweep)

    def _sweep(self) -> None:
        """Close idle connections past their expiry, oldest first."""
        self._sweeper = None
        assert self._loop is not None and self._expiry is not None
        now = self._loop.time()
        while self._idle_all:
            conn = next(iter(self._idle_all))
            if now - conn.idle_since < self._expiry - 0.001:
                break
            del self._idle_all[conn]
            self._unlist_idle(conn)
            self.discard(conn)
        self._schedule_sweep()


def _expire_waiter(fut: asyncio.Future[Connection | None]) -> None:
    """Fail a pool waiter whose pool timeout ran out."""
    if not fut.done():
        fut.set_exception(httpx.PoolTimeout("Timed out waiting for a connection from the pool"))
