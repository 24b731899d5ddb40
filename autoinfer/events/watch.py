"""The `watch` source: a local store's folder watched with inotify, plus periodic rescans.

Every sub-folder of the store's root is a bucket. A file is reported (`ObjectCreated:Put`,
ETag = MD5 of its content, as S3's for a single-part upload) once it is completely written
and its name is not a temp or partial file's. Completely written means, on a local Linux
filesystem: no process holds it open for writing any more (the kernel's answer, see
`events.inotify.open_for_writing`), learnt the moment its writer closes it (`IN_CLOSE_WRITE`)
or renames it into place (`IN_MOVED_TO`), or at once when a scan finds it. A writer that keeps
the file open and writes in pauses is never reported before it closes the file. Where the
kernel cannot tell (network filesystems, files owned by another user, no inotify), the settle
timer decides as a backstop: size and modification time unchanged for `settle_s` (and, with
inotify, no write seen since its last close). A rescan at start and every `rescan_s` finds what
the watcher missed, files added while the service was down included; the source's cursor (in
the database) remembers what was reported, so a rescan reports only new or changed files.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import watchfiles

from autoinfer.errors import EventError, StorageError
from autoinfer.events.inotify import (
    InotifyUnavailable,
    TreeWatch,
    is_network_fs,
    open_for_writing,
)
from autoinfer.events.model import S3Event, object_created
from autoinfer.events.settling import Settling, is_partial, stamp_text
from autoinfer.events.source import Ingest, Source
from autoinfer.inbox import SeenObject, SourceCursor
from autoinfer.storage.local import LocalStore
from autoinfer.storage.local_files import OWN_WRITES

log = logging.getLogger("autoinfer.events.watch")

__all__ = ["BATCH", "WATCHER_READY_S", "WatchSource", "is_partial"]

#: Events per `ingest` call: small enough that the first jobs of a large drop are created (and
#: start) while the rest are still being recorded.
BATCH = 25
#: How long `start` waits for the watcher to be live before its first rescan.
WATCHER_READY_S = 10.0


class WatchSource(Source):
    """Reports complete new or changed files below a local store's root."""

    def __init__(
        self,
        name: str,
        store: LocalStore,
        ingest: Ingest,
        cursor: SourceCursor,
        *,
        rescan_s: float = 30.0,
        settle_s: float = 1.0,
        wanted: Callable[[S3Event], bool] | None = None,
    ) -> None:
        self.name = name
        # Whether a trigger matches an event: a result this service wrote itself (OWN_WRITES)
        # is not reported when none does (its event could only be `ignored`), saving a hash,
        # an inbox row and a cursor row per job; None: every object is reported.
        self.wanted = wanted
        self.store = store
        self.root = store.root
        self.ingest = ingest
        self.cursor = cursor
        self.rescan_s = rescan_s
        self.settle_s = settle_s
        self._settling: dict[Path, Settling] = {}
        self._reported: dict[tuple[str, str], SeenObject] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._rescan_now = threading.Event()
        self._watching = threading.Event()
        self._due = threading.Event()  # a file was closed or moved in: report it now
        self._threads: list[threading.Thread] = []
        # Whether the kernel can say when a file is complete here (inotify + leases).
        self._kernel_knows = False

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start watching, then rescan the whole root before returning: every file already
        there is reported or settling once this returns (so nothing written while the service
        was down is missed)."""
        if self._threads:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        self._stop.clear()
        self._watching.clear()
        self._kernel_knows = not is_network_fs(self.root)
        self._reported = dict(self.cursor.seen())
        watcher = threading.Thread(target=self._watch, name=f"{self.name}-watch", daemon=True)
        watcher.start()
        # Rescan only once the watcher is live, so no file falls between the two.
        if not self._watching.wait(WATCHER_READY_S):
            log.warning(
                "%s: the watcher is slow to start; the periodic rescan covers it", self.name
            )
        self._rescan()
        settler = threading.Thread(
            target=self._settle_loop, name=f"{self.name}-settle", daemon=True
        )
        settler.start()
        self._threads = [watcher, settler]

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._due.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        with self._lock:
            self._settling.clear()

    def rescan(self) -> None:
        """Ask for a full rescan at the next tick (as at start)."""
        self._rescan_now.set()

    @property
    def settling(self) -> int:
        """How many files are waiting to be complete before they are reported."""
        with self._lock:
            return len(self._settling)

    # --- threads ------------------------------------------------------------------------

    def _watch(self) -> None:
        """Feed changed paths to the settling set until stopped: from inotify where it works,
        else from watchfiles (which cannot tell a closed file from one paused mid-write)."""
        while not self._stop.is_set():
            try:
                self._watch_inotify()
            except InotifyUnavailable as error:
                if self._stop.is_set():
                    return
                if self.root.is_dir():
                    log.info(
                        "%s: inotify unavailable (%s); watching with watchfiles and the "
                        "settle timer",
                        self.name,
                        error,
                    )
                    self._kernel_knows = False
                    self._watch_watchfiles()
                    return
                self._stop.wait(1.0)  # the root went away: watch it again once it is back
            except Exception:
                if self._stop.is_set():
                    return
                # The periodic rescan covers the gap; try watching again shortly.
                log.exception(
                    "%s: watching %s failed; restarting the watcher", self.name, self.root
                )
                self._rescan_now.set()
                self._stop.wait(1.0)

    def _watch_inotify(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with TreeWatch(self.root) as tree:
            self._watching.set()
            while not self._stop.is_set():
                due = False
                for change in tree.read(0.25):
                    if change.kind == "overflow":
                        self._rescan_now.set()
                        due = True
                    elif change.kind == "folder":
                        for file in self._files(change.path):
                            self._offer(file)
                        due = True
                    elif change.kind in ("written", "moved_in"):
                        self._offer(change.path, closed=True)
                        due = True
                    elif change.kind == "changing":
                        self._offer(change.path, writing=True)
                if due:
                    self._due.set()

    def _watch_watchfiles(self) -> None:
        while not self._stop.is_set():
            try:
                for changes in watchfiles.watch(
                    self.root,
                    watch_filter=None,
                    debounce=100,
                    step=10,  # hand changes over 10 ms after the last one: jobs start sooner
                    stop_event=self._stop,
                    rust_timeout=250,
                    yield_on_timeout=True,  # the first (empty) yield says the watch is set up
                    raise_interrupt=False,
                    ignore_permission_denied=True,
                ):
                    self._watching.set()
                    for change, path in changes:
                        if change != watchfiles.Change.deleted:
                            self._offer(Path(path))
            except Exception:
                if self._stop.is_set():
                    return
                # The periodic rescan covers the gap; try watching again shortly.
                log.exception(
                    "%s: watching %s failed; restarting the watcher", self.name, self.root
                )
                self._stop.wait(1.0)

    def _settle_loop(self) -> None:
        tick = max(0.02, min(0.25, self.settle_s / 4))
        self._due.set()  # what the first rescan found
        next_rescan = time.monotonic() + self.rescan_s
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if self._rescan_now.is_set() or now >= next_rescan:
                    self._rescan_now.clear()
                    self._rescan()
                    next_rescan = now + self.rescan_s
                self._report(self._settled())
            except Exception:
                # Nothing is lost: unreported files stay unreported and the next rescan
                # offers them again.
                log.exception("%s: reporting files below %s failed; retrying", self.name, self.root)
                self._stop.wait(1.0)
            if self._due.wait(tick):
                self._due.clear()
                # Let the rest of a burst of closes arrive, so they are reported together.
                self._stop.wait(0.005)

    # --- finding files ------------------------------------------------------------------

    def _offer(self, path: Path, *, closed: bool = False, writing: bool = False) -> None:
        """Start watching `path` settle (a folder: every file below it). `closed`: inotify saw
        it closed after writing or renamed into place; `writing`: saw it created or modified."""
        place = self._place(path)
        if place is None:
            return
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            for file in self._files(path):
                self._offer(file)
            return
        if not stat.S_ISREG(st.st_mode):  # links, devices, sockets are not objects
            return
        stamp = (st.st_size, st.st_mtime_ns)
        if self._reported_as(place, stamp):
            return
        with self._lock:
            state = self._settling.get(path)
            if state is None:
                state = self._settling[path] = Settling(stamp=stamp, since=time.monotonic())
            if closed:
                state.closed, state.writing = True, False
            elif writing:
                state.closed, state.writing = False, True

    def _rescan(self) -> None:
        """Offer every file not reported as it is now; forget files that are gone."""
        present: set[tuple[str, str]] = set()
        for path in self._files(self.root):
            place = self._place(path)
            if place is None:
                continue
            present.add(place)
            self._offer(path)
        gone = [place for place in self._reported if place not in present]
        if gone:
            self.cursor.forget(gone)
            for place in gone:
                self._reported.pop(place, None)
        self.cursor.mark_scanned()

    def _files(self, folder: Path) -> Iterator[Path]:
        for current, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                yield Path(current) / name

    def _place(self, path: Path) -> tuple[str, str] | None:
        """(bucket, key) of a file path below the root, or None if it is not an object."""
        try:
            relative = path.relative_to(self.root).as_posix()
        except ValueError:
            return None
        if "/" not in relative or is_partial(relative):
            return None
        bucket, key = relative.split("/", 1)
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            log.warning("%s: skipping %r: its name is not valid UTF-8", self.name, str(path))
            return None
        return bucket, key

    def _reported_as(self, place: tuple[str, str], stamp: tuple[int, int]) -> bool:
        seen = self._reported.get(place)
        return seen is not None and seen.stamp == stamp_text(stamp)

    # --- reporting ----------------------------------------------------------------------

    def _settled(self) -> list[tuple[Path, tuple[int, int]]]:
        """Files that are completely written (see the module's docstring); removed from the
        set."""
        now = time.monotonic()
        ready = []
        with self._lock:
            for path, state in list(self._settling.items()):
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    del self._settling[path]
                    continue
                stamp = (st.st_size, st.st_mtime_ns)
                if stamp != state.stamp:
                    state.stamp, state.since = stamp, now
                if self._complete(path, state, now):
                    ready.append((path, stamp))
                    del self._settling[path]
        return ready

    def _complete(self, path: Path, state: Settling, now: float) -> bool:
        writing = open_for_writing(path) if self._kernel_knows else None
        return state.complete(now, self.settle_s, writing)

    def _report(self, ready: list[tuple[Path, tuple[int, int]]]) -> None:
        events: list[S3Event] = []
        states: list[tuple[str, str, SeenObject]] = []
        for path, stamp in ready:
            place = self._place(path)
            if place is None or self._reported_as(place, stamp) or self._own(path, place, stamp):
                continue
            event = self._event(path, place, stamp)
            if event is None:
                continue
            events.append(event)
            states.append(
                (place[0], place[1], SeenObject(event.etag, event.size, stamp_text(stamp)))
            )
        for start in range(0, len(events), BATCH):
            batch, batch_states = events[start : start + BATCH], states[start : start + BATCH]
            try:
                self.ingest(batch, self.name)
            except Exception:
                # Not stored: offer the files again so that they are reported later.
                for bucket, key, _ in batch_states:
                    self._offer(self.store.path_for(bucket, key))
                raise
            self.cursor.remember(batch_states)
            for bucket, key, state in batch_states:
                self._reported[(bucket, key)] = state

    def _own(self, path: Path, place: tuple[str, str], stamp: tuple[int, int]) -> bool:
        """A result this service wrote, wanted by no trigger: remembered (for this run) unreported."""
        try:
            if self.wanted is None or not OWN_WRITES.take(path.lstat()):
                return False
            unwanted = not self.wanted(
                object_created(*place, size=stamp[0], etag=None, modified=None)
            )
        except (OSError, EventError):
            return False
        if unwanted:
            self._reported[place] = SeenObject(None, stamp[0], stamp_text(stamp))
        return unwanted

    def _event(self, path: Path, place: tuple[str, str], stamp: tuple[int, int]) -> S3Event | None:
        bucket, key = place
        try:
            info = self.store.object_info(bucket, key)
            st = path.lstat()
        except (StorageError, FileNotFoundError) as error:
            log.info(
                "%s: %s/%s vanished before it could be reported: %s", self.name, bucket, key, error
            )
            return None
        if (st.st_size, st.st_mtime_ns) != stamp:
            self._offer(path)  # changed while it was hashed: let it settle again
            return None
        try:
            return object_created(
                bucket, key, size=info.size, etag=info.etag, modified=info.modified
            )
        except EventError as error:
            log.warning("%s: skipping %s/%s: %s", self.name, bucket, key, error)
            # Remembered for this run only, so the warning is not repeated on every rescan.
            self._reported[place] = SeenObject(None, info.size, stamp_text(stamp))
            return None
