"""What the HTTP routes call: recommend, similar, search, explain, ingest, erase, reload.

The routes only translate HTTP to these calls and back. Every call takes one snapshot of the
current :class:`LoadedModel` and uses only it, so a hot reload swaps the reference between
requests and never mid-request; the old model is freed when its last request ends.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

from shopfusion.data.interactions import FloatArray, Histories, IntArray
from shopfusion.data.schema import Event, EventType
from shopfusion.data.store import SQLiteStore
from shopfusion.errors import ShopfusionError, UnknownIdError
from shopfusion.ranking.pipeline import RankedCandidates
from shopfusion.retrieval.topk import top_k_indices
from shopfusion.search.api import SearchFilters, SearchRequest, SearchResult
from shopfusion.serving.cache import LRUCache
from shopfusion.serving.explain import Explanation, explain_item
from shopfusion.serving.model import LoadedModel, SearcherLoader, load_model, load_searcher
from shopfusion.serving.rules import ListFilters
from shopfusion.serving.security import Pseudonymizer
from shopfusion.serving.settings import ServiceSettings

log = logging.getLogger(__name__)

#: A request's candidate items for the business rules and their scores, best first.
Shortlist = tuple[IntArray, FloatArray]

#: Online history kept per shopper between retrains (most recent items).
ONLINE_HISTORY = 50
_BEHAVIOUR = {EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE}


def settle_heap() -> None:
    """Collect garbage once, then exempt every object alive now from later collections.

    A loaded model is millions of long-lived objects (id maps, product cards, the search index's
    vocabularies), and every full collection traversed them all: pauses of 40-230 ms on Beauty,
    during which the event loop answered nothing (RESULTS.md, session 5). Frozen, a full
    collection sees only what requests allocated since. Called after each (re)load and after the
    precomputation; each call first unfreezes, so the garbage of the previous model and of
    evicted lists is still collected here."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class SearchUnavailableError(ShopfusionError):
    """The loaded artifact carries no search index."""


class NotReadyError(ShopfusionError):
    """No model is loaded yet."""


@dataclass(frozen=True)
class Ranked:
    """A final list: item indices into the model's catalog, best first, with their scores."""

    model: LoadedModel
    items: IntArray
    scores: FloatArray
    facets: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    signals: list[dict[str, float]] = field(default_factory=list)
    corrected_query: str | None = None
    # The response body, rendered once per (route, cached flag): a hot list is then served
    # without building and validating its models again.
    rendered: dict[tuple[str, bool], bytes] = field(default_factory=dict, compare=False)


Key = tuple[object, ...]


@dataclass(frozen=True)
class FeedRequest:
    """One list to compute in a batch (:meth:`Service.rank_batch`): a shopper's feed
    (``kind="recommend"``, ``subject`` the user or session id, or ``None`` for a new visitor) or
    the items similar to one (``kind="similar"``, ``subject`` the item id)."""

    model: LoadedModel
    kind: Literal["recommend", "similar"]
    subject: str | None
    k: int
    filters: ListFilters | None = None


@dataclass(frozen=True)
class SearchCall:
    """One search to run in a batch (:meth:`Service.search_batch`), as the route received it."""

    model: LoadedModel
    query: str
    user_id: str | None
    k: int
    filters: SearchFilters
    #: Each returned item's signal parts as well (``Ranked.signals``); ``False``: none computed.
    explain: bool = False


class _ForModel(Protocol):
    @property
    def model(self) -> LoadedModel: ...


Asked = TypeVar("Asked", bound=_ForModel)
Prepared = TypeVar("Prepared")


def _by_model(
    requests: Sequence[Asked], prepare: Callable[[Asked], Prepared], results: list[Ranked | Exception | None]
) -> list[list[tuple[int, Prepared]]]:
    """Each request's slot and prepared input, grouped by the model it asks for (one model call per
    group: a reload may land between two requests of a batch). A request whose preparation fails
    gets the exception in its slot of ``results``; it belongs to that request alone."""
    groups: dict[int, list[tuple[int, Prepared]]] = {}
    for slot, request in enumerate(requests):
        try:
            prepared = prepare(request)
        except Exception as exc:
            results[slot] = exc
            continue
        groups.setdefault(id(request.model), []).append((slot, prepared))
    return list(groups.values())


@dataclass(frozen=True)
class Ingested:
    """What :meth:`Service.ingest` did: the sequence number of the last stored event, and the
    shoppers' feeds that were cached and are now stale, to be computed again."""

    sequence: int
    stale_feeds: list[FeedRequest]


class Service:
    def __init__(self, settings: ServiceSettings, searcher_loader: SearcherLoader = load_searcher) -> None:
        self.settings = settings
        self.searcher_loader = searcher_loader
        self.pseudonymize = Pseudonymizer(settings.pseudonym_secret)
        self.cache: LRUCache[Ranked] = LRUCache(settings.cache_size)
        self.store: SQLiteStore | None = None
        self.last_event_lag_s = 0.0
        self.events_received = 0
        self.reload_failures = 0
        self.reload_history: list[dict[str, str]] = []
        self._model: LoadedModel | None = None
        self._generation = 0
        self._reload_lock = threading.Lock()
        self._online: dict[str, deque[str]] = {}
        # How often each shopper's history changed (events, erasure): a list computed from an
        # older history must not land in the cache after the change dropped the shopper's entries.
        self._changes: Counter[str] = Counter()
        self._online_lock = threading.Lock()
        self.precomputed = 0  # lists cached by :meth:`warm` so far (stats and metrics read it)
        self.warming_since: float | None = None  # time.monotonic() while :meth:`warm` runs
        # Tailing the shared event log (:meth:`sync_events`): read up to here; our own writes.
        self._synced = 0
        self._own: set[int] = set()
        self._log_lock = threading.Lock()  # our write and its record in _own are one step for sync
        self._erased_mtime = 0.0
        self._erased: set[str] = set()
        self.stopping = False  # set at shutdown: background work ends early

    @property
    def _erased_file(self) -> Path:
        # Pseudonyms only: the file itself holds no personal data.
        return self.settings.store_path.with_name(self.settings.store_path.name + ".erased")

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.reload(self.settings.artifact)
        self.store = SQLiteStore(self.settings.store_path)
        self._synced = self.store.max_sequence()
        if self._erased_file.exists():
            self._erased = set(self._erased_file.read_text().split())
            self._erased_mtime = self._erased_file.stat().st_mtime

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    @property
    def model(self) -> LoadedModel:
        model = self._model
        if model is None:
            raise NotReadyError("no model is loaded yet; retry in a moment")
        return model

    @property
    def ready(self) -> bool:
        return self._model is not None and self.store is not None

    def reload(self, path: Path | None = None) -> LoadedModel:
        """Load ``path`` (default: the current artifact's) and swap it in; on any error the model
        that was serving keeps serving and the error is raised."""
        with self._reload_lock:
            target = path or (self._model.path if self._model else self.settings.artifact)
            try:
                model = load_model(target, self.settings.rules, self._generation + 1, self.searcher_loader)
            except ShopfusionError as exc:
                self.reload_failures += 1
                self._record(target, "refused", str(exc))
                raise
            self._generation = model.generation
            self._model = model
            # Entries of the old generation can no longer be hit; free their memory now.
            self.cache.clear()
            settle_heap()
            self._record(target, "serving", model.version)
            log.info("serving artifact %s (%s)", target, model.version)
            return model

    def _record(self, path: Path, status: str, detail: str) -> None:
        self.reload_history.append(
            {
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "artifact": str(path),
                "status": status,
                "detail": detail,
            }
        )
        del self.reload_history[:-20]

    # --- histories -----------------------------------------------------------------------------
    def history(self, model: LoadedModel, user_id: str | None) -> list[int]:
        """The shopper's items, oldest first: the artifact's history (unless erased) + online events."""
        if not user_id:
            return []
        pseudonym = self.pseudonymize(user_id)
        artifact = model.artifact
        items: list[int] = []
        row = artifact.user_map.get(pseudonym)
        if row < 0:
            row = artifact.user_map.get(user_id)
        if pseudonym in self._erased:
            row = -1  # erased shoppers are strangers, even to an artifact trained before erasure
        if 0 <= row < len(artifact.histories):
            items = artifact.histories.row(row).tolist()
        with self._online_lock:
            online = list(self._online.get(pseudonym, ()))
        items += [i for i in artifact.item_map.to_indices(online, missing=-1).tolist() if i >= 0]
        return items

    # --- recommendations -----------------------------------------------------------------------
    def recommend_key(
        self, model: LoadedModel, user_id: str | None, k: int, filters: ListFilters | None
    ) -> Key:
        return (model.generation, "recommend", self.pseudonymize(user_id) if user_id else None, k, filters)

    def recommend(
        self,
        user_id: str | None,
        k: int,
        filters: ListFilters | None = None,
        model: LoadedModel | None = None,
    ) -> Ranked:
        """The shopper's feed (computed; callers look in :attr:`cache` first under :meth:`recommend_key`)."""
        return self._one(FeedRequest(model or self.model, "recommend", user_id, k, filters))

    def similar_key(self, model: LoadedModel, item_id: str, k: int, filters: ListFilters | None) -> Key:
        return (model.generation, "similar", model.artifact.item_map.to_index(item_id), k, filters)

    def similar(
        self, item_id: str, k: int, filters: ListFilters | None = None, model: LoadedModel | None = None
    ) -> Ranked:
        return self._one(FeedRequest(model or self.model, "similar", item_id, k, filters))

    def _one(self, request: FeedRequest) -> Ranked:
        result = self.rank_batch([request])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def rank_batch(self, requests: Sequence[FeedRequest]) -> list[Ranked | Exception]:
        """Many lists with one ``score`` call per model (far cheaper per list than one call each);
        each computed list is cached like :meth:`recommend` and :meth:`similar` cache theirs.

        Results come in request order; a request that fails (unknown item, ...) gets its exception
        in its slot and the others are unaffected. Scores equal those of single requests: the
        model scores each history on its own, the batch only vectorises the work."""
        results: list[Ranked | Exception | None] = [None] * len(requests)
        changes = [self._change_count(request) for request in requests]  # before the histories
        for members in _by_model(requests, self._history_of, results):
            model = requests[members[0][0]].model
            histories = [history for _, history in members]
            shortlists: list[Shortlist] | None
            try:
                candidates = model.artifact.model.rank(Histories.from_lists(histories, model.n_items))
                shortlists = self._shortlists(model, candidates, histories, [requests[s] for s, _ in members])
            except Exception:  # find the culprit: each scores alone and fails by itself
                shortlists = None
            for row, (slot, history) in enumerate(members):
                shortlist = None if shortlists is None else shortlists[row]
                try:
                    results[slot] = self._finish_request(requests[slot], history, shortlist, changes[slot])
                except Exception as exc:
                    results[slot] = exc
        return [r if r is not None else RuntimeError("request was not handled") for r in results]

    def _history_of(self, request: FeedRequest) -> list[int]:
        if request.kind == "similar":
            if request.subject is None:
                raise UnknownIdError("similar items need an item id")
            return [request.model.artifact.item_map.to_index(request.subject)]
        return self.history(request.model, request.subject)

    def _change_count(self, request: FeedRequest) -> int:
        if request.kind != "recommend" or not request.subject:
            return 0
        with self._online_lock:
            return self._changes[self.pseudonymize(request.subject)]

    def _finish_request(
        self, request: FeedRequest, history: list[int], shortlist: Shortlist | None, changes: int = 0
    ) -> Ranked:
        """The final list, cached unless the shopper's history changed since it was read."""
        model, k, filters = request.model, request.k, request.filters
        if shortlist is None:
            candidates = model.artifact.model.rank(Histories.from_lists([history], model.n_items))
            shortlist = self._shortlists(model, candidates, [history], [request])[0]
        items, kept = model.rules.apply(*shortlist, k)
        ranked = Ranked(model, items, kept)
        if request.kind == "similar":
            self.cache.put(self.similar_key(model, str(request.subject), k, filters), ranked)
            return ranked
        user = request.subject
        key = self.recommend_key(model, user, k, filters)
        self.cache.put(key, ranked, user=self.pseudonymize(user) if user else None)
        # An event that came meanwhile counted its change before dropping the shopper's entries,
        # so either that drop removed this entry or this check sees the change and removes it.
        if self._change_count(request) != changes:
            self.cache.discard(key)
        return ranked

    @staticmethod
    def _shortlists(
        model: LoadedModel,
        ranked: RankedCandidates,
        histories: Sequence[Sequence[int]],
        requests: Sequence[FeedRequest],
    ) -> list[Shortlist]:
        """Each request's best items and their scores, best first, for the business rules: its
        history and the items its filters exclude removed, and enough spares (5k + the bury list
        + 50) that stock, de-duplication and brand caps still leave k.

        Every candidate outranks every other item, so when a request's candidates that pass its
        filters are enough, they are its shortlist: sorting a few hundred candidates replaced
        building and searching a catalog-wide score row (RESULTS.md, session 7). Only a request
        whose filters leave too few ranks the whole catalog, in one top-k pass for all such."""
        wanted = Service._wanted(model, requests)
        shortlists: list[Shortlist | None] = []
        for row, (request, n) in enumerate(zip(requests, wanted, strict=True)):
            items, scores = ranked.of_request(row)
            keep = np.isfinite(scores)
            filters = request.filters
            if filters is not None and (filters.category or filters.brands):
                keep &= filters.mask(model.view, items)
            items, scores = items[keep], scores[keep]
            if len(items) < n:
                shortlists.append(None)
                continue
            order = np.lexsort((items, -scores))[:n]  # score descending, then item index
            shortlists.append((items[order], scores[order]))
        short = [row for row, shortlist in enumerate(shortlists) if shortlist is None]
        if short:
            whole = model.artifact.model.spread(ranked)[short]
            rows = Service._catalog_shortlists(
                model, whole, [histories[r] for r in short], [requests[r] for r in short]
            )
            for row, shortlist in zip(short, rows, strict=True):
                shortlists[row] = shortlist
        return [shortlist for shortlist in shortlists if shortlist is not None]

    @staticmethod
    def _wanted(model: LoadedModel, requests: Sequence[FeedRequest]) -> list[int]:
        """How many items each request's shortlist keeps: 5k + the bury list + 50."""
        spare = len(model.rules.bury) + 50
        return [min(model.n_items, 5 * request.k + spare) for request in requests]

    @staticmethod
    def _catalog_shortlists(
        model: LoadedModel,
        scores: FloatArray,
        histories: Sequence[Sequence[int]],
        requests: Sequence[FeedRequest],
    ) -> list[Shortlist]:
        """:meth:`_shortlists` from every item's score: one top-k pass serves the whole batch."""
        masked = np.array(scores, dtype=np.float32, copy=True)
        everything = np.arange(model.n_items)
        for row, (history, request) in enumerate(zip(histories, requests, strict=True)):
            masked[row, list(history)] = -np.inf
            filters = request.filters
            if filters is not None and (filters.category or filters.brands):
                masked[row, ~filters.mask(model.view, everything)] = -np.inf
        wanted = Service._wanted(model, requests)
        # Rows are ordered by (score, item), so a row's first n are its own top n.
        top = top_k_indices(masked, max(wanted))
        shortlists: list[Shortlist] = []
        for row, n in enumerate(wanted):
            order = top[row, :n]
            values = masked[row, order]
            finite = np.isfinite(values)
            shortlists.append((order[finite], values[finite]))
        return shortlists

    def warming(self, budget_s: float) -> bool:
        """Whether :meth:`warm` has been running for less than ``budget_s`` seconds."""
        since = self.warming_since
        return since is not None and time.monotonic() - since < budget_s

    def warm(
        self,
        model: LoadedModel,
        n_users: int,
        n_items: int = 0,
        k: int = 10,
        batch: int = 32,
        busy: Callable[[], bool] | None = None,
        yield_s: float = 0.05,
    ) -> int:
        """Precompute into the cache the default feed (``k`` items, no filters) of the ``n_users``
        most active known shoppers, then the similar items of the ``n_items`` most popular products,
        in batches (scoring a batch costs far less per list than one at a time). Before each batch
        it waits up to ``yield_s`` while ``busy()`` (live requests wait for the model: they go
        first). Stops early when a newer model is swapped in or the service stops. Returns how
        many lists were cached."""
        self.warming_since = time.monotonic()
        try:
            return self._warm(model, n_users, n_items, k, batch, busy, yield_s)
        finally:
            self.warming_since = None

    def _warm(
        self,
        model: LoadedModel,
        n_users: int,
        n_items: int,
        k: int,
        batch: int,
        busy: Callable[[], bool] | None,
        yield_s: float,
    ) -> int:
        artifact = model.artifact
        lengths = artifact.histories.lengths()
        rows = np.argsort(-lengths, kind="stable")[: min(n_users, len(lengths))]
        users = [artifact.user_map.to_external(int(artifact.histories.users[r])) for r in rows]
        popularity = np.bincount(artifact.histories.items, minlength=model.n_items)
        top = np.argsort(-popularity, kind="stable")[: min(n_items, model.n_items)]
        requests = [FeedRequest(model, "recommend", user, k) for user in users]
        requests += [FeedRequest(model, "similar", artifact.item_map.ids[i], k) for i in top.tolist()]
        if len(requests) > self.cache.capacity:
            log.warning(
                "asked to precompute %d lists but CACHE_SIZE is %d: only the last ones stay cached; "
                "raise SHOPFUSION_CACHE_SIZE",
                len(requests),
                self.cache.capacity,
            )
        done = 0
        for start in range(0, len(requests), batch):
            if self._model is not model or self.stopping:
                break
            deadline = time.monotonic() + yield_s
            while busy is not None and busy() and time.monotonic() < deadline:
                time.sleep(0.002)
            results = self.rank_batch(requests[start : start + batch])
            done += sum(isinstance(result, Ranked) for result in results)
            self.precomputed = done
        log.info("precomputed %d lists (%d feeds, %d similar-item lists asked)", done, len(users), len(top))
        settle_heap()
        return done

    # --- search --------------------------------------------------------------------------------
    def search_key(
        self,
        model: LoadedModel,
        query: str,
        user_id: str | None,
        k: int,
        filters: SearchFilters,
        explain: bool = False,
    ) -> Key:
        """The cache key of a search: a list cached without its signal parts never answers a
        search that asks for them."""
        if model.searcher is None:
            raise SearchUnavailableError("this artifact has no search index; retrain with shopfusion train")
        return (
            model.generation,
            "search",
            query,
            self.pseudonymize(user_id) if user_id else None,
            k,
            filters,
            explain,
        )

    def search(
        self,
        query: str,
        user_id: str | None,
        k: int,
        filters: SearchFilters,
        model: LoadedModel | None = None,
        explain: bool = False,
    ) -> Ranked:
        (result,) = self.search_batch([SearchCall(model or self.model, query, user_id, k, filters, explain)])
        if isinstance(result, Exception):
            raise result
        return result

    def search_batch(self, calls: Sequence[SearchCall]) -> list[Ranked | Exception]:
        """Many searches with one engine call per model (:meth:`Searcher.search_many`: the
        queries are encoded together and the item vectors read once); each result is cached like
        :meth:`search` caches its own. Results come in order; a search that fails gets its
        exception in its slot and the others are unaffected."""
        results: list[Ranked | Exception | None] = [None] * len(calls)
        for members in _by_model(calls, self._search_request, results):
            searcher = calls[members[0][0]].model.searcher
            assert searcher is not None  # _search_request refused the calls without one
            found: list[SearchResult] | None
            try:
                found = searcher.search_many([request for _, request in members])
            except Exception:  # find the culprit: each searches alone and fails by itself
                found = None
            for row, (slot, request) in enumerate(members):
                try:
                    result = found[row] if found is not None else searcher.search_many([request])[0]
                    results[slot] = self._searched(calls[slot], result)
                except Exception as exc:
                    results[slot] = exc
        return [r if r is not None else RuntimeError("search was not handled") for r in results]

    def _search_request(self, call: SearchCall) -> SearchRequest:
        if call.model.searcher is None:
            raise SearchUnavailableError("this artifact has no search index; retrain with shopfusion train")
        history = np.asarray(self.history(call.model, call.user_id), dtype=np.int64)
        filters = call.filters
        in_stock = filters.in_stock_only or call.model.rules.settings.in_stock_only
        filters = SearchFilters(
            filters.categories, filters.brands, filters.min_price, filters.max_price, in_stock
        )
        # Ask for spares: dedupe and brand caps may drop some. Only the items kept are explained.
        return SearchRequest(
            call.query, 3 * call.k, history if len(history) else None, filters, explain=False
        )

    def _searched(self, call: SearchCall, result: SearchResult) -> Ranked:
        model = call.model
        items, scores = model.rules.apply(
            result.items.astype(np.int64), result.scores.astype(np.float32), call.k
        )
        ranked = Ranked(
            model,
            items,
            scores,
            facets={name: [(v.value, v.count) for v in values] for name, values in result.facets.items()},
            # Explaining the k items costs ~0.7 ms of a ~8.5 ms search (RESULTS.md, session 14), and
            # the storefront asks /v1/explain for the one item a shopper wonders about instead.
            signals=result.explain(items) if call.explain else [],
            corrected_query=result.corrected_query,
        )
        key = self.search_key(model, call.query, call.user_id, call.k, call.filters, call.explain)
        self.cache.put(key, ranked, user=self.pseudonymize(call.user_id) if call.user_id else None)
        return ranked

    # --- explanations --------------------------------------------------------------------------
    def explain(self, user_id: str | None, item_id: str, lang: str = "en") -> Explanation:
        model = self.model
        item = model.artifact.item_map.to_index(item_id)
        return explain_item(model, self.history(model, user_id), item, lang)

    # --- events and erasure --------------------------------------------------------------------
    def ingest(self, events: Sequence[Event]) -> Ingested:
        """Store the events under pseudonymous ids, add them to the shoppers' online histories and
        drop the shoppers' cached lists; returns the last sequence number and the dropped feeds
        (for :meth:`rank_batch` to compute again). Unknown items are refused as a whole batch."""
        model = self.model
        known = model.artifact.item_map
        for position, event in enumerate(events):
            if event.item_id is not None and event.item_id not in known:
                raise UnknownIdError(f"events[{position}].item_id {event.item_id!r} is not in the catalog")
        stored = [
            e.model_copy(
                update={
                    "user_id": self.pseudonymize(e.user_id),
                    "session_id": self.pseudonymize(e.session_id) if e.session_id else "",
                }
            )
            for e in events
        ]
        if self.store is None:
            raise NotReadyError("the event store is not open yet; retry in a moment")
        with self._log_lock:
            seq = self.store.append_events(stored)
            with self._online_lock:
                self._own.update(range(seq - len(stored) + 1, seq + 1))  # one transaction: consecutive
                self._apply(stored)
        now = time.time()
        stale: list[FeedRequest] = []
        for user_id in {e.user_id for e in events}:
            for key in self.cache.drop_user(self.pseudonymize(user_id)):
                # recommend keys: (generation, "recommend", pseudonym, k, filters)
                if key[0] == model.generation and key[1] == "recommend":  # type: ignore[index]
                    stale.append(FeedRequest(model, "recommend", user_id, key[3], key[4]))  # type: ignore[index]
        if stored:
            self.last_event_lag_s = max(0.0, now - max(e.timestamp.timestamp() for e in stored))
        self.events_received += len(stored)
        return Ingested(seq, stale)

    def _apply(self, stored: Sequence[Event]) -> None:
        """Add stored (pseudonymous) events to the online histories; the caller holds the lock."""
        for event in stored:
            if event.item_id is not None and event.type in _BEHAVIOUR:
                self._online.setdefault(event.user_id, deque(maxlen=ONLINE_HISTORY)).append(event.item_id)
            self._changes[event.user_id] += 1

    def sync_events(self, limit: int = 1000) -> int:
        """Apply the events other processes wrote to the shared store since the last call (another
        ``serve --workers`` worker, another server on the same file), and the erasures they made:
        online histories grow and the shoppers' cached lists are dropped, as if posted here.
        Returns how many events were applied. Called every ``EVENT_SYNC_S`` by the app."""
        if self.store is None:
            return 0
        applied = 0
        while True:
            with self._log_lock:
                rows = self.store.events_after(self._synced, limit)
                if not rows:
                    break
                with self._online_lock:
                    foreign = [event for seq, event in rows if seq not in self._own]
                    self._own.difference_update(seq for seq, _ in rows)
                    self._apply(foreign)
                self._synced = rows[-1][0]
            for pseudonym in {event.user_id for event in foreign}:
                self.cache.drop_user(pseudonym)
            applied += len(foreign)
        self._sync_erasures()
        return applied

    def _sync_erasures(self) -> None:
        erased = self._erased_file
        if not erased.exists() or erased.stat().st_mtime == self._erased_mtime:
            return
        self._erased_mtime = erased.stat().st_mtime
        with self._online_lock:
            new = set(erased.read_text().split()) - self._erased
            self._erased |= new
            for pseudonym in new:
                self._online.pop(pseudonym, None)
                self._changes[pseudonym] += 1
        for pseudonym in new:
            self.cache.drop_user(pseudonym)

    def erase_user(self, user_id: str) -> int:
        """Remove the shopper's stored events and online state; returns how many events went."""
        pseudonym = self.pseudonymize(user_id)
        if self.store is None:
            raise NotReadyError("the event store is not open yet; retry in a moment")
        deleted = self.store.erase_user(pseudonym)
        with self._online_lock:
            if pseudonym not in self._erased:
                self._erased.add(pseudonym)
                with self._erased_file.open("a") as f:
                    f.write(pseudonym + "\n")
        with self._online_lock:
            self._online.pop(pseudonym, None)
            self._changes[pseudonym] += 1
        self.cache.drop_user(pseudonym)
        return deleted

    def online_history_length(self, user_id: str) -> int:
        with self._online_lock:
            return len(self._online.get(self.pseudonymize(user_id), ()))
