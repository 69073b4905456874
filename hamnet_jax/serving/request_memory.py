"""The server-wide bound on memory held by inference requests (issue 39: twenty 60 MiB calls
at once took the server to 6 GiB and stalled health checks for seconds).

Every inference call holds a `Grant` of bytes from before its body is read until it is
answered: `COPIES_PER_BYTE` (below) times the most its body may be (the message limit)
while it is received, then times what its body turned out to be. A call that does not fit
waits, first come first served, with its body still on the client (gRPC's HTTP/2 window is
kept small while it waits: server.py turns BDP probing off), so the memory the server
spends on requests stays under `capacity` however many arrive; a call larger than
`capacity` runs alone.
Waiting ends with the call (the client's deadline or a cancel releases its place).
Health checks and metadata never wait: only inference calls take grants.

Confined to the event loop's thread (no locks): grants are taken and released there.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Callable

# bytes held per byte of request body: the body as received (its tensors are read and
# checked where they lie, infer_message.py) and what runs on it, the masks of the checks and
# the allocator's slack; measured 2.5x in-process with four 60 MiB calls at once. A request
# padded to `data.max_visits` (fewer visits sent) holds its padded copy besides.
COPIES_PER_BYTE = 3
LARGE_BYTES = 16 << 20  # (a grant this large is a large call's: COPIES_PER_BYTE x 4 MiB and more)
# The largest request (gRPC message or REST body). gRPC refuses a larger one from its length
# prefix, before reading it, with RESOURCE_EXHAUSTED. Not more by default: gRPC Python copies
# each received body on the event loop, and measured here twenty 60 MiB bodies held health
# checks up to 158 ms with every limit in place (experiments/bench_large_requests.py).
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
DEFAULT_REQUEST_MEMORY_BYTES = 256 << 20  # (5 calls at the message limit receiving at once)


@dataclasses.dataclass(eq=False)
class Grant:
    """Bytes one call holds; 0 once released."""

    size: int


class RequestMemory:
    """A byte budget with first-come-first-served waiting (see the module docstring)."""

    def __init__(self, capacity: int, after_large_release: Callable[[], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"the request memory bound must be at least 1 byte, got {capacity}")
        self.capacity = int(capacity)
        self.held = 0  # bytes granted now
        self.peak = 0  # the most ever held at once (what tests and benchmarks check)
        self.waits = 0  # calls that had to wait for memory
        self.after_large_release = after_large_release
        self._waiting: collections.deque[tuple[int, asyncio.Future]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _fits(self, size: int) -> bool:
        return self.held + size <= self.capacity or self.held == 0  # (one call alone always runs)

    async def acquire(self, size: int) -> Grant:
        """A grant of `size` bytes, once it fits behind every call already waiting."""
        size = max(int(size), 0)
        if not self._waiting and self._fits(size):
            return self._grant(size)
        self.waits += 1
        future = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiting.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if entry in self._waiting:
                self._waiting.remove(entry)
            elif future.done() and not future.cancelled():  # granted just as the call went away
                self.release(future.result())
            self._wake()
            raise
        return future.result()

    def resize(self, grant: Grant, size: int) -> None:
        """Set what a granted call holds now that its size is known. Growing never waits
        (the call is already in memory): a body that decompresses past its grant is
        counted as it is, and later calls wait for it."""
        if grant.size == 0:  # released already (the call ended): nothing is held
            return
        size = max(int(size), 1)
        self._hold(size - grant.size)
        grant.size = size
        self._wake()

    def release(self, grant: Grant) -> None:
        """Give the grant's bytes back (a second release does nothing); after a large call,
        `after_large_release` (the server hands the freed heap back to the system, so the
        next large calls do not stack on memory the allocator kept)."""
        large = grant.size >= LARGE_BYTES
        self._hold(-grant.size)
        grant.size = 0
        self._wake()
        if large and self.after_large_release is not None:
            self.after_large_release()

    def _grant(self, size: int) -> Grant:
        grant = Grant(max(size, 1))
        self._hold(grant.size)
        return grant

    def _hold(self, change: int) -> None:
        self.held += change
        self.peak = max(self.peak, self.held)

    def _wake(self) -> None:
        while self._waiting and self._fits(self._waiting[0][0]):
            size, future = self._waiting.popleft()
            if not future.done():
                future.set_result(self._grant(size))
