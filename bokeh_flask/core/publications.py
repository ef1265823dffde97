"""Published documents served live: one shared session per document in each process.

A published document (``Session.use_doc(name)`` + ``push``) lives in a store
(:mod:`.store`); every process that serves it keeps one live copy, a
:class:`PublishedSession` that all its viewers share, the way clients that share a
session id share a document under ``bokeh serve``. A write comes from an owner's
connection (a PUSH-DOC or a PATCH-DOC, from ``bokeh_flask.client`` or the owner's
own page): a PUSH-DOC is stored whole; a PATCH-DOC is tried on a private copy of the
stored document (the shadow) and stored as one change after the snapshot (see
:mod:`.changes`); only once stored is it applied to the live document, which sends
it to this process's viewers. The writer folds its changes into a new snapshot now
and then. Other processes hear of it
through a :class:`~.ports.ChangeFeed` and apply the same change to their copy, or
reload the document when they missed one. Viewers who do not own the document are
read-only: their edits are answered OK and dropped, so they stay in their page.
"""
from __future__ import annotations

import json
import logging
import os
import typing as t
import uuid
import weakref

from bokeh.core.serialization import Serialized
from bokeh.document import Document

from .changes import apply_changes, decode_change, document_json, encode_change, materialize
from .errors import StoreConflict, StoreError
from .messages import PreparedReply, pull_reply
from .ratelimit import LoginLimiter, failure_log_of
from .scheduling import Scheduler
from .sessions import ServerSession, Subscriber
from .store import DocumentChange, DocumentStore, StoredDocument, publish_change, published_flag

log = logging.getLogger(__name__)

#: a token payload key: ``"public"`` makes the connection read-only whoever opens it
ACCESS_KEY = "bokeh_flask_access"
#: times a write retries after another process stored a newer version first
WRITE_RETRIES = 3
#: the close code for viewers of a document that is no longer published (RFC 6455 policy violation)
POLICY_VIOLATION = 1008
#: the writer folds its changes into a new snapshot after this many ...
SNAPSHOT_EVERY_CHANGES = 100
#: ... or once no change came for this long (seconds)
SNAPSHOT_IDLE_SECONDS = 2.0


class ReadOnly(Exception):
    """A viewer who does not own a document tried to replace it."""


class PublishedSession(ServerSession):
    """The live copy of one published document in this process, shared by all its viewers."""

    def __init__(self, docid: str, document: Document, scheduler: Scheduler, publications: Publications,
                 stored: StoredDocument | None) -> None:
        super().__init__(f"published-{docid}", document, scheduler)
        self.docid = docid
        #: the stored version the live document shows (0: not stored yet)
        self.version = stored.version if stored is not None else 0
        self.public = stored.public if stored is not None else False
        #: what the store held at ``version``, when known (None: read it again when needed)
        self._stored = stored
        self._publications = publications
        #: changes this process stored since the last snapshot, and the timer of the next one
        self._unsnapshotted = 0
        self._snapshot_timer: t.Any = None
        #: connections that may write, and the user each writes as
        self._writers: weakref.WeakKeyDictionary[Subscriber, str] = weakref.WeakKeyDictionary()
        #: the stored document at ``version``, changed first by each write (rebuilt when in doubt)
        self._shadow: Document | None = None
        #: the connection whose PUSH-DOC is being applied (it is not sent its own replacement)
        self._pusher: Subscriber | None = None
        #: changes seen so far, and the PULL-DOC-REPLY of the document as it was at a count of them
        self._changes_seen = 0
        self._pull_cache: tuple[int, PreparedReply] | None = None

    def _send_patches(self, events: list[t.Any], origin: Subscriber | None) -> None:
        pusher, self._pusher = self._pusher, None
        if pusher is None or pusher not in self._subscribers:
            super()._send_patches(events, origin)
            return
        self._subscribers.discard(pusher)
        try:
            super()._send_patches(events, origin)
        finally:
            self._subscribers.add(pusher)

    def _document_patched(self, event: t.Any) -> None:
        self._changes_seen += 1
        super()._document_patched(event)

    def pull(self, message: t.Any, connection: Subscriber) -> t.Any:
        """PULL-DOC-REPLY, serialised once per version of the document and shared by every viewer that pulls it
        (a crowd of viewers arriving would otherwise serialise it once each, holding the lock). One never
        stored (a new name) has nothing to pull."""
        if self.version == 0:
            raise StoreError(f"No document {self.docid!r}: push one first")

        def reply() -> PreparedReply:
            cached = self._pull_cache
            if cached is None or cached[0] != self._changes_seen:
                made = pull_reply("", self.document)
                cached = self._pull_cache = (self._changes_seen, PreparedReply.of(made))
            return cached[1].answering(message.header["msgid"])

        return self.with_document_locked(reply)

    def destroy(self) -> None:
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
        super().destroy()

    def allow_writes(self, connection: Subscriber, user: str) -> None:
        self._writers[connection] = user

    # -- protocol requests ---------------------------------------------------

    def push(self, message: t.Any, connection: Subscriber) -> t.Any:
        """PUSH-DOC from an owner: store the new document whole, then show it to every viewer."""
        user = self._writers.get(connection)
        if user is None:
            raise ReadOnly(f"document {self.docid!r} is read-only here: only its owner may replace it")

        def replace() -> t.Any:
            candidate = Document.from_json(Serialized(message.content["doc"], message.buffers))
            text = document_json(candidate)
            self._write(lambda: self._publications.store.put(
                StoredDocument(self.docid, user, text, title=candidate.title, public=self.public),
                based_on=self.version), user, None)
            self._pusher = connection  # it has this document already: the replacement goes to the others
            self.document.replace_with_json(json.loads(text))
            self._shadow, self._unsnapshotted = None, 0
            return connection.ok(message)

        return self.with_document_locked(replace)

    def patch(self, message: t.Any, connection: Subscriber) -> t.Any:
        """PATCH-DOC: from an owner, checked on the shadow, stored and sent on; from a viewer, kept in their
        page only."""
        user = self._writers.get(connection)
        if user is None:
            log.debug("Dropping a read-only viewer's change to %s", self.docid)
            return connection.ok(message)
        change = encode_change(message)

        def apply() -> t.Any:
            def append() -> StoredDocument:
                message.apply_to_document(self._shadow_document())  # a change that does not apply is refused here
                return self._publications.store.append(self.docid, user, self.version, change)

            self._write(append, user, change)
            self._patch_origin = connection
            message.apply_to_document(self.document, self)
            self._unsnapshotted += 1
            self._plan_snapshot()
            return connection.ok(message)

        return self.with_document_locked(apply)

    # -- writing ---------------------------------------------------------------

    def _write(self, write: t.Callable[[], StoredDocument], user: str, change: str | None) -> None:
        """Store one write; catch up and retry if another process wrote first. Nothing reaches the live
        document unless the write was stored."""
        store = self._publications.store
        for attempt in range(WRITE_RETRIES + 1):
            try:
                stored = write()
            except StoreConflict:
                self._shadow = None
                latest = store.get(self.docid)
                if attempt == WRITE_RETRIES or latest is None or latest.version == self.version \
                        or latest.owner != user:
                    raise
                log.info("Document %s changed in another process; catching up before writing", self.docid)
                self._reload(latest)
                continue
            except BaseException:
                self._shadow = None  # it may hold half of the refused change
                raise
            self.version, self.public = stored.version, stored.public
            self._stored = stored if stored.doc_json else None
            self._publications.announce(DocumentChange(self.docid, stored.version, change,
                                                       self._publications.origin))
            return

    def _shadow_document(self) -> Document:
        """The document at ``version`` that writes are tried on first (the store's, rebuilt when in doubt)."""
        if self._shadow is None:
            stored = self._stored if self._stored is not None and self._stored.version == self.version else None
            if stored is None and self.version:
                stored = self._publications.store.get(self.docid)
                if stored is not None and stored.version != self.version:
                    self._reload(stored)
            self._shadow = materialize(stored) if stored is not None else Document()
        return self._shadow

    def _plan_snapshot(self) -> None:
        """Fold the changes into a snapshot now and then, so readers apply few of them."""
        if self._unsnapshotted >= SNAPSHOT_EVERY_CHANGES:
            self.take_snapshot()
            return
        if self._snapshot_timer is not None:
            self._snapshot_timer.cancel()
        self._snapshot_timer = self.scheduler.call_later(
            SNAPSHOT_IDLE_SECONDS, lambda: self.with_document_locked(self.take_snapshot))

    def take_snapshot(self) -> None:
        """Store the shadow whole as the snapshot at ``version`` (under the lock; failures only logged)."""
        if self._unsnapshotted == 0 or self._shadow is None:
            return
        try:
            written = self._publications.store.snapshot(self.docid, self.version, document_json(self._shadow),
                                                        self._shadow.title)
        except StoreError as error:
            log.warning("Could not store a snapshot of %s (%s); its changes are kept and it is tried again",
                        self.docid, error)
            return
        self._unsnapshotted = 0
        log.debug("Snapshot of %s at version %d %s", self.docid, self.version,
                  "stored" if written else "skipped: the document has moved on")

    # -- changes made elsewhere --------------------------------------------------

    def apply_remote(self, change: DocumentChange) -> None:
        """A change another process stored: apply it if it is the next one, else reload from the store."""
        flag = published_flag(change.change)
        if flag is not None and change.version == self.version + 1:
            self.version = change.version
            self.set_public(flag)
            return
        if flag is None and change.change is not None and change.version == self.version + 1:
            try:
                patch = decode_change(change.change)
                self.document.apply_json_patch(patch, setter=None)
            except Exception as error:
                log.warning("Could not apply change %d of %s (%s); reloading it", change.version, self.docid, error)
            else:
                self.version = change.version
                self._stored = None  # stale now; the shadow follows the change, or is rebuilt from the store
                if self._shadow is not None:
                    try:
                        self._shadow.apply_json_patch(decode_change(change.change), setter=None)
                    except Exception:
                        self._shadow = None
                return
        if change.change is not None and change.version <= self.version:
            return  # seen already
        self.catch_up(self._publications.store.get(self.docid))

    def catch_up(self, stored: StoredDocument | None) -> None:
        """Bring the live copy to what the store holds (call it under the document lock)."""
        if stored is None:
            log.info("Document %s was deleted; its viewers keep what they have", self.docid)
            self.version = 0
            self.set_public(False)
            return
        if stored.version != self.version:
            self._reload(stored)
        self.set_public(stored.public)

    def set_public(self, public: bool) -> None:
        """Follow the published flag; once it is off, the read-only viewers' connections close."""
        self.public = public
        if public:
            return
        viewers = [c for c in list(self._subscribers) if c not in self._writers]
        for connection in viewers:
            close = getattr(connection, "close", None)
            if close is not None:
                close(POLICY_VIOLATION, "the document is no longer published")
        if viewers:
            log.info("Closed %d public viewer(s) of %s in process %d: it is no longer published", len(viewers),
                     self.docid, os.getpid())

    def _reload(self, stored: StoredDocument) -> None:
        """Show ``stored`` in place of the live document: its viewers get the snapshot's roots, then its
        pending changes as patches."""
        self.document.replace_with_json(json.loads(stored.doc_json))
        apply_changes(self.document, stored.pending)
        self.version, self._stored = stored.version, stored
        self._shadow = None


class Publications:
    """The published documents this process serves live, their store and change feed."""

    def __init__(self, store: DocumentStore, scheduler: Scheduler, feed: t.Any = None,
                 origin: str | None = None) -> None:
        self.store = store
        self.feed = feed
        self.origin = origin or uuid.uuid4().hex
        #: failed logins, counted in the store when it can share them between processes and hosts
        self.login_limiter = LoginLimiter(failure_log_of(store))
        self._scheduler = scheduler
        self._live: dict[str, PublishedSession] = {}
        self._lock = scheduler.lock()

    def live(self, docid: str, stored: StoredDocument | None) -> PublishedSession:
        """This process's live copy of ``docid`` (built from ``stored`` if there is none yet)."""
        with self._lock:
            session = self._live.get(docid)
            if session is not None and stored is None and session.version > 0:
                session.destroy()  # deleted from the store: a new document may take the name
            if session is None or session.destroyed:
                document = materialize(stored) if stored is not None else Document()
                document.models.flush_synced()  # every viewer pulls it whole: patches refer to its models by id
                session = PublishedSession(docid, document, self._scheduler, self, stored)
                self._live[docid] = session
                log.debug("Serving published document %s live (version %d)", docid, session.version)
                return session
        if stored is not None and (stored.version > session.version or stored.public != session.public):
            # the store is ahead (a change this process missed): catch up before showing it
            session.with_document_locked(session.catch_up, stored)
        return session

    def published_changed(self, stored: StoredDocument) -> None:
        """``publish`` / ``unpublish`` was stored here (as a version of its own): follow it, tell the others."""
        change = DocumentChange(stored.docid, stored.version, publish_change(stored.public), self.origin)
        session = self._live.get(stored.docid)
        if session is not None and not session.destroyed:
            session.with_document_locked(session.apply_remote, change)
        self.announce(change)

    def announce(self, change: DocumentChange) -> None:
        """Tell the other processes (a failure to do so is logged: they catch up on their next read)."""
        if self.feed is None:
            return
        try:
            self.feed.publish(change)
        except Exception:
            log.exception("Could not announce change %d of %s to the other processes", change.version, change.docid)

    # -- the feed's side ---------------------------------------------------------

    def start(self) -> None:
        if self.feed is not None:
            self.feed.start(self.deliver, self.watched)

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        for session in list(self._live.values()):
            session.with_document_locked(session.take_snapshot)  # changes not folded in yet
            session.destroy()
        self._live.clear()

    def watched(self) -> dict[str, int]:
        """``{docid: version}`` of the documents served live here (called from the feed's task)."""
        return {docid: session.version for docid, session in list(self._live.items())}

    def deliver(self, change: DocumentChange) -> None:
        """From the feed (any task or thread): apply ``change`` on the scheduler, under the document's lock."""
        if change.origin == self.origin:
            return
        self._scheduler.call_later(0, lambda: self._apply(change))

    def _apply(self, change: DocumentChange) -> None:
        session = self._live.get(change.docid)
        if session is None or session.destroyed:
            return
        try:
            session.with_document_locked(session.apply_remote, change)
        except StoreError as error:
            log.warning("Could not catch up with %s: %s", change.docid, error)

    # -- cleanup -------------------------------------------------------------------

    def cleanup_unused(self, lifetime_ms: float) -> int:
        """Forget live copies nobody has viewed for ``lifetime_ms`` (they load again on the next view)."""
        unused = [s for s in list(self._live.values()) if s.is_unused(lifetime_ms)]
        for session in unused:
            with self._lock:
                if self._live.get(session.docid) is session and session.is_unused(lifetime_ms):
                    del self._live[session.docid]
                    session.with_document_locked(session.take_snapshot)
                    session.destroy()
        return len(unused)
