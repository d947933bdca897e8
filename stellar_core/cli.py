"""The ``stellar`` command: Stellar Memory from the shell.

    stellar --db notes.db store "The backup window is 02:00-03:00 UTC" --importance 0.7 --tag ops
    echo "Ines owns the rota" | stellar --db notes.db store - --thread standup-12
    stellar --db notes.db recall "when do backups run?" -k 3 --json
    stellar --db notes.db get 3f2a9c...          # one memory; forget removes it
    stellar --db notes.db stats
    stellar --db notes.db reorbit --context "release week"
    stellar --db notes.db export notes.json && stellar --db copy.db import notes.json
    stellar --db notes.db ingest docs/ --watch   # ingest, then every change until Ctrl-C
    stellar --db notes.db grant alice team reader   # and revoke, grants; api-key create alice
    stellar --db notes.db key rotate                # and key new / usage / retire ID
    stellar --db notes.db audit verify              # the first edited or deleted record, if any
    stellar --db notes.db sync run                  # with other replicas (STELLAR_SYNC_URL), until Ctrl-C
    stellar --db notes.db sync status               # and conflicts, resolve ID --keep loser, held, trim
    stellar --db notes.db mcp                       # an MCP server on stdio (for Claude, Cursor, ...)
    stellar --db notes.db mcp --transport http --port 8765   # at /mcp, every request with an API key
    stellar --db notes.db serve --port 8080         # the HTTP API (docs at /docs), until Ctrl-C
    stellar --db notes.db graph centrality --limit 5  # and communities, path A B, export [FILE]

Global options (``--db``, ``--namespace``, ``--agent``, ``--json``) go before or after the
subcommand. Output is for people unless ``--json`` is given. Errors print ``error: ...`` on
stderr, nothing on stdout, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from stellar_core import validation as check
from stellar_core.errors import StellarError, ValidationError
from stellar_core.memory import StellarMemory
from stellar_core.models import IngestResult, Zone, to_datetime
from stellar_core.server import shapes
from stellar_core.server.shapes import plain
from stellar_core.settings import Settings

Command = Callable[[StellarMemory, argparse.Namespace], Any]


# --- subcommands: each returns what to print (a JSON-ready value) ----------------------------
def store(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    memory = mem.store(
        args.text,
        importance=args.importance,
        pinned=args.pin,
        tags=args.tag,
        metadata=dict(args.meta),
        thread=args.thread,
        encrypted=args.encrypt,
    )
    return shapes.memory(memory)


def recall(mem: StellarMemory, args: argparse.Namespace) -> list[dict[str, Any]]:
    hits = mem.recall(args.query, k=args.k, zones=args.zone, tags=args.tag, expand=args.expand)
    return [shapes.hit(h, args.query) for h in hits]


def get(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    return shapes.memory(mem.get(args.id))


def forget(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    return shapes.memory(mem.forget(args.id))


def update(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    meta = dict(args.meta) if args.meta else None
    memory = mem.update(args.id, content=args.content, importance=args.importance, pinned=args.pin,
                        tags=args.tag, metadata=meta)  # fmt: skip
    return shapes.memory(memory)


def link(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    return shapes.report(mem.link(args.source, args.target, kind=args.kind, weight=args.weight))


def links(mem: StellarMemory, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [shapes.report(e) for e in mem.links(args.id, direction=args.direction, kind=args.kind)]


def thread(mem: StellarMemory, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [shapes.memory(x) for x in mem.thread(args.thread)]


def memories(mem: StellarMemory, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [shapes.memory(x) for x in mem.memories(zones=args.zone, limit=args.limit, offset=args.offset)]


def events(mem: StellarMemory, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [shapes.event(e) for e in mem.events(after=args.after, limit=args.limit)]


def namespaces(mem: StellarMemory, args: argparse.Namespace) -> list[str]:
    return mem.namespaces()


def zones(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    if args.threshold or args.capacity:
        mem.configure_zones(thresholds=dict(args.threshold) or None, capacities=dict(args.capacity) or None)
    policy = mem.zone_policy()
    return {"namespace": args.namespace or mem.namespace, **shapes.report(policy)}


def stats(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    return shapes.report(mem.stats())


def reorbit(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    return shapes.report(mem.reorbit(context=args.context))


def export(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    document = mem.export()
    if args.file in (None, "-"):
        return document
    with open(args.file, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return {
        "file": args.file,
        "namespace": document["namespace"],
        "memories": len(document["memories"]),
        "links": len(document["links"]),
    }


def ingest(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    from stellar_core.connectors.files import DEFAULT_EXTENSIONS, ingest_path, watch_path

    wanted = args.ext or DEFAULT_EXTENSIONS
    if not args.watch:
        return ingest_path(mem, args.path, extensions=wanted, importance=args.importance).to_dict()
    stop = threading.Event()

    def report(result: IngestResult) -> None:
        print(_human("ingest", result.to_dict()), file=sys.stderr, flush=True)

    # Ctrl-C ends the watch between batches: an interrupt raised in the middle of a write
    # could leave the process unable to shut down.
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        watch_path(mem, args.path, stop, extensions=wanted, importance=args.importance, on_change=report)
    finally:
        signal.signal(signal.SIGINT, previous)
    return {"watch": "stopped"}


def import_(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    # --namespace overrides the document's own namespace; without it the document's is used.
    return shapes.report(mem.import_(args.document, namespace=args.namespace))


# --- security (decision 0028) ------------------------------------------------------------------
def grant(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    return shapes.report(mem.security.grant(args.principal, args.pattern, args.role))


def revoke(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:
    mem.security.revoke(args.principal, args.pattern)
    return {"revoked": args.principal, "namespace": args.pattern}


def grants(mem: StellarMemory, args: argparse.Namespace) -> list[dict[str, Any]]:
    return [plain(g) for g in mem.security.grants(args.of)]


def api_key(mem: StellarMemory, args: argparse.Namespace) -> Any:
    if args.action == "create":
        if not args.arg:
            raise ValidationError("api-key create needs the agent the key acts as")
        made = mem.security.create_api_key(args.arg, label=args.label, expires_days=args.expires_days)
        return {"key": made, "agent": args.arg, "note": "shown once: it is kept only as a hash"}
    if args.action == "revoke":
        if not args.arg:
            raise ValidationError("api-key revoke needs a key id (see api-key list)")
        mem.security.revoke_api_key(args.arg)
        return {"revoked": args.arg}
    return [plain(k) for k in mem.security.api_keys(args.arg)]


def key(mem: StellarMemory, args: argparse.Namespace) -> dict[str, Any]:

    if args.action == "rotate":
        return shapes.report(mem.security.rotate_keys(batch=args.batch))
    if args.action == "retire":
        if not args.key_id:
            raise ValidationError("key retire needs a key id (see key usage)")
        mem.security.retire_key(args.key_id)
        return {"retired": args.key_id}
    return {"usage": mem.security.key_usage()}


def new_key(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """``key new``: a key added to the key file and made primary (no database needed)."""
    from stellar_core.security import crypto

    file = args.key_file or settings.encryption_key_file
    if file is None:
        return {"key": crypto.new_key(), "note": "give it an id in STELLAR_ENCRYPTION_KEYS"}
    return {"primary": crypto.add_to_key_file(file), "file": str(file)}


def audit(mem: StellarMemory, args: argparse.Namespace) -> Any:
    if args.action == "verify":
        found = mem.security.verify_audit()
        return {**plain(found), "intact": found.intact}
    if args.action == "prune":
        return {"pruned": mem.security.prune_audit()}
    return mem.security.audit(limit=args.limit)


# --- graph analytics (decision 0031) ------------------------------------------------------------
def graph(mem: StellarMemory, args: argparse.Namespace) -> Any:
    given = list(args.args)
    wanted = {"export": (0, 1), "centrality": (0, 0), "communities": (0, 0), "path": (2, 2)}[args.action]
    if not wanted[0] <= len(given) <= wanted[1]:
        usage = {"export": "at most one FILE", "path": "two memory ids", "centrality": "no arguments",
                 "communities": "no arguments"}  # fmt: skip
        raise ValidationError(f"graph {args.action} takes {usage[args.action]}")
    if args.action == "export":
        if not given or given[0] == "-":
            return {"graphml": mem.graph.graphml()}
        g = mem.graph.export_graphml(given[0])
        return {"file": given[0], "namespace": g.graph["namespace"], "memories": g.number_of_nodes(),
                "links": g.number_of_edges()}  # fmt: skip
    if args.action == "centrality":
        ranked = mem.graph.centrality(args.kind, limit=args.limit)
        return [{"id": i, "score": v, "content": _preview(mem, i)} for i, v in ranked]
    if args.action == "communities":
        return [
            {"community": n, "size": len(c), "ids": c}
            for n, c in enumerate(mem.graph.communities(seed=args.seed))
        ]
    return [{"id": i, "content": _preview(mem, i)} for i in mem.graph.path(*given)]


def _preview(mem: StellarMemory, memory_id: str) -> str:
    """The start of a memory's content, for people ("" if it cannot be read here)."""
    try:
        return " ".join(mem.get(memory_id).content.split())[:80]
    except StellarError:
        return ""


# --- sync between replicas (decision 0030) ----------------------------------------------------
def sync(mem: StellarMemory, args: argparse.Namespace) -> Any:
    names = _namespaces(args)
    each: list[str | None] = list(names) if names else [None]  # None: the default
    if args.action == "run":
        return _sync_once(mem, names, args.batches) if args.once else _sync_until_stopped(mem)
    if args.action == "status":
        return [plain(s) for ns in each for s in mem.sync.status(ns)]
    if args.action == "conflicts":
        return [plain(x) for ns in each for x in mem.sync.conflicts(ns)]
    if args.action == "held":
        return [row for ns in each for row in mem.sync.held(ns)]
    if args.action == "resolve":
        if args.conflict_id is None or (args.keep is None) == (args.content is None):
            raise ValidationError("sync resolve needs a conflict id (sync conflicts) and --keep or --content")
        keep = args.keep or {"content": args.content}
        memory = mem.sync.resolve(args.conflict_id, keep, namespace=args.namespace)
        return {"resolved": args.conflict_id, "kept": args.keep or "content", "memory": shapes.memory(memory)}
    if args.action == "bootstrap":
        if not args.source:
            raise ValidationError("sync bootstrap needs --from: the database to copy the namespace from")
        namespace = names[-1] if names else mem.namespace
        source = args.source
        return {"namespace": namespace, "memories": mem.sync.bootstrap(namespace, source)}
    return {"trimmed": mem.sync.trim(names)}


# --- MCP (decision 0033) -----------------------------------------------------------------------
def mcp(mem: StellarMemory, args: argparse.Namespace) -> None:
    """Serve until the client hangs up (stdio) or until interrupted (HTTP); nothing to print."""
    from stellar_core.server.mcp import serve_http, serve_stdio

    if args.transport == "http":
        serve_http(mem, args.host, args.port)
    else:
        serve_stdio(mem)


def _sync_once(mem: StellarMemory, names: list[str] | None, batches: int) -> dict[str, Any]:
    """One round, as the sync flow runs it: publish the outbox, apply up to ``batches``
    batches, trim the streams."""
    published = mem.sync.publish_all()
    n, applied = mem.sync.drain(names, batches)
    trimmed = mem.sync.trim(names)
    return {"publish": {"published": published}, "apply": {"batches": n, **plain(applied)},
            "trim": {"trimmed": trimmed}}  # fmt: skip


def _sync_until_stopped(mem: StellarMemory) -> dict[str, Any]:
    """Publish and apply in the background until Ctrl-C or SIGTERM, then publish what is left."""
    stop = threading.Event()
    # A signal only ends the wait: an interrupt raised in the middle of a write could leave
    # the process unable to shut down.
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        mem.sync.start()
        print("syncing; Ctrl-C stops", file=sys.stderr, flush=True)
        while not stop.wait(1.0):
            if mem.sync.failure is not None:  # behind the trim point, say: it cannot go on
                raise mem.sync.failure
    finally:
        mem.sync.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return {"sync": "stopped"}


def serve(mem: StellarMemory, args: argparse.Namespace) -> None:
    """The HTTP API, and the MCP server at ``/mcp``, on uvicorn until Ctrl-C or SIGTERM. With
    sync configured, this memory syncs in the background: the event stream shows every
    replica's changes."""
    import uvicorn

    from stellar_core.server.http import serving_app

    host, port = args.host or mem.settings.server_host, args.port or mem.settings.server_port
    uvicorn.run(serving_app(mem, host), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def _namespaces(args: argparse.Namespace) -> list[str] | None:
    """The namespaces a sync command names (``--namespace``, repeatable), checked; None: all."""
    given = getattr(args, "namespaces", None) or ([args.namespace] if args.namespace else None)
    return None if given is None else [check.namespace(ns) for ns in given]


class _Namespaces(argparse.Action):
    """``--namespace`` of ``sync``: repeatable (``args.namespaces``); the last one is also the
    namespace to work in, as everywhere else."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:  # fmt: skip
        namespace.namespaces = [*(getattr(namespace, "namespaces", None) or []), values]
        namespace.namespace = values


CREATING = {"store", "import", "ingest", "mcp", "serve"}  # the others need a database that exists
SERVING = {"mcp", "serve"}  # long-running: recall statistics are written in the background

COMMANDS: dict[str, Command] = {
    "store": store,
    "recall": recall,
    "get": get,
    "update": update,
    "forget": forget,
    "link": link,
    "links": links,
    "thread": thread,
    "list": memories,
    "events": events,
    "namespaces": namespaces,
    "zones": zones,
    "stats": stats,
    "reorbit": reorbit,
    "export": export,
    "import": import_,
    "ingest": ingest,
    "grant": grant,
    "revoke": revoke,
    "grants": grants,
    "api-key": api_key,
    "key": key,
    "audit": audit,
    "sync": sync,
    "mcp": mcp,
    "serve": serve,
    "graph": graph,
}


# --- human-readable output -------------------------------------------------------------------
def _human(command: str, out: Any) -> str:
    if command == "store":
        return f"stored {out['id']} (zone {out['zone']}, score {out['score']:.2f})"
    if command == "recall":
        lines = [
            f"{i:>2}. {h['relevance']:.3f}  {h['zone']:<5}  {h['origin'] or '(stored)'}  [{h['id']}]\n"
            f"    {h['snippet']}"
            for i, h in enumerate(out, 1)
        ]
        return "\n".join(lines) or "no matching memories"
    if command == "get":
        return _describe(out)
    if command == "forget":
        return f"forgot {out['id']}"
    if command == "update":
        return f"updated {out['id']}\n" + _describe(out)
    if command == "link":
        return f"linked {out['source_id']} -{out['kind']} ({out['weight']:g})-> {out['target_id']}"
    if command == "links":
        lines = [f"{e['source_id']} -{e['kind']} ({e['weight']:g})-> {e['target_id']}" for e in out]
        return "\n".join(lines) or "no links"
    if command in ("thread", "list"):
        lines = [f"{x['zone']:<5} {x['score']:.2f}  [{x['id']}]  {x['content'][:90]}" for x in out]
        return "\n".join(lines) or "no memories"
    if command == "events":
        lines = [f"{e['seq']:>6}  {e['op']:<7} {e['agent']:<12} {e['memory_id']}" for e in out]
        return "\n".join(lines) or "no events"
    if command == "namespaces":
        return "\n".join(out) or "no namespaces"
    if command == "zones":
        rows = [
            f"  {z:<6} from {t:.2f}, at most {out['capacities'][z]}" for z, t in out["thresholds"].items()
        ]
        return f"zones of namespace {out['namespace']}:\n" + "\n".join(rows)
    if command == "stats":
        return (
            f"namespace {out['namespace']}: {out['memories']} memories, "
            f"{out['forgotten']} forgotten, {out['links']} links, {out['threads']} threads, "
            f"mean score {out['mean_score']:.2f}\n{_zones(out['zones'])}"
        )
    if command == "reorbit":
        return (
            f"reorbit {out['namespace']}: scored {out['scored']}, "
            f"{out['moved_inward']} inward, {out['moved_outward']} outward, "
            f"{out['forgotten']} forgotten, {out['purged']} purged in {out['seconds']:.2f} s\n"
            f"{_zones(out['zones'])}"
        )
    if command == "export":
        if "file" not in out:
            return json.dumps(out, indent=2, ensure_ascii=False)  # the document itself
        return (
            f"exported {out['memories']} memories and {out['links']} links "
            f"of namespace {out['namespace']} to {out['file']}"
        )
    if command.startswith("graph "):
        return _human_graph(command.removeprefix("graph "), out)
    if command.startswith("sync "):
        return _human_sync(command.removeprefix("sync "), out)
    if command in ("grants", "api-key", "key", "audit", "grant", "revoke"):
        return json.dumps(out, indent=2, ensure_ascii=False, default=str)  # small records: shown whole
    if command == "ingest":
        if "watch" in out:
            return "watch stopped"
        lines = [
            f"{out['sources']} sources -> {out['chunks']} chunks: {out['new']} new memories, "
            f"{out['unchanged']} unchanged, {out['replaced']} replaced, {out['removed']} removed"
        ]
        return "\n".join(lines + [f"  skipped {x['source']}: {x['reason']}" for x in out["skipped"]])
    return (
        f"imported {out['imported']} memories into namespace {out['namespace']} "
        f"({out['skipped']} skipped, {out['links']} links)"
    )


def _human_graph(action: str, out: Any) -> str:
    if action == "export":
        if "file" not in out:
            return str(out["graphml"])  # the GraphML itself
        return (
            f"exported {out['memories']} memories and {out['links']} links "
            f"of namespace {out['namespace']} to {out['file']}"
        )
    if action == "centrality":
        lines = [f"{n:>2}. {x['score']:.4f}  [{x['id']}]  {x['content']}" for n, x in enumerate(out, 1)]
        return "\n".join(lines) or "no memories"
    if action == "communities":
        return "\n".join(
            f"{c['community'] + 1:>2}. {c['size']} memories: {', '.join(c['ids'])}" for c in out
        ) or ("no memories")
    return "\n".join(f"{'->' if n else '  '} [{x['id']}]  {x['content']}" for n, x in enumerate(out))


def _human_sync(action: str, out: Any) -> str:
    if action == "run":
        if "sync" in out:
            return "sync stopped"
        a = out["apply"]
        return (
            f"published {out['publish']['published']} changes; applied {a['applied']} events in "
            f"{a['batches']} batches ({a['duplicates']} duplicates, {a['waiting']} waiting, "
            f"{a['refused']} refused, {a['conflicts']} conflicts); "
            f"trimmed {out['trim']['trimmed']} stream entries"
        )
    if action == "status":
        return "\n".join(_sync_status(s) for s in out) or "no namespace to sync"
    if action == "conflicts":
        return "\n".join(_conflict(x) for x in out) or "no open conflicts"
    if action == "held":
        why = [f"waits for {h['awaits']}" if h["awaits"] else "refused" for h in out]
        return "\n".join(f"{h['origin']}  {w}: {h['reason']}" for h, w in zip(out, why, strict=True)) or (
            "no held events"
        )
    if action == "resolve":
        kept = "the given content" if out["kept"] == "content" else f"the {out['kept']}"
        return f"resolved conflict {out['resolved']}: kept {kept} of memory {out['memory']['id']}"
    if action == "bootstrap":
        return f"bootstrapped namespace {out['namespace']}: {out['memories']} memories in the snapshot"
    return f"trimmed {out['trimmed']} stream entries"


def _sync_status(s: dict[str, Any]) -> str:
    counts = f"{s['unpublished']} unpublished, {s['held']} held, {s['conflicts']} open conflicts"
    if not s["connected"]:
        return f"{s['namespace']}: not connected (STELLAR_SYNC_URL unset, or Redis down); {counts}"
    lag = "" if s["lag_ms"] is None else f" ({s['lag_ms'] / 1000:.1f} s)"
    when = {k: to_datetime(s[f"last_{k}_at"]) for k in ("published", "applied")}
    last = "; ".join(f"last {k} {t.isoformat(timespec='seconds')}" for k, t in when.items() if t)
    return (
        f"{s['namespace']}: {s['stream_length']} in the stream, {s['lag_events']} to apply{lag}, "
        f"{s['pending']} pending, {s['consumers']} consumers; {counts}"
        + (f"; {last}" if last else "")
        + ("; BEHIND THE TRIM POINT: sync bootstrap --from URL" if s["needs_bootstrap"] else "")
    )


def _conflict(x: dict[str, Any]) -> str:
    def version(v: dict[str, Any]) -> str:
        shown = [f"{k}={json.dumps(val, ensure_ascii=False)[:80]}" for k, val in v["values"].items()]
        return f"{', '.join(shown)}  ({v['stamp']})"

    return (
        f"#{x['id']} memory {x['memory_id']} ({', '.join(x['fields'])})\n"
        f"    winner {version(x['winner'])}\n    loser  {version(x['loser'])}"
    )


def _describe(memory: dict[str, Any]) -> str:
    created = to_datetime(memory["created_at"])
    fields = {
        "id": memory["id"],
        "namespace": memory["namespace"],
        "zone": f"{memory['zone']} (score {memory['score']:.2f})",
        "importance": f"{memory['importance']:g}" + (", pinned" if memory["pinned"] else ""),
        "recalled": f"{memory['recall_count']} times",
        "created": created.isoformat(timespec="seconds") if created else "",
        "tags": ", ".join(memory["tags"]),
        "thread": "" if memory["thread"] is None else f"{memory['thread']} #{memory['position']}",
        "metadata": json.dumps(memory["metadata"], ensure_ascii=False) if memory["metadata"] else "",
    }
    head = [f"{k:<11}{v}" for k, v in fields.items() if v]
    return "\n".join([*head, "", memory["content"]])


def _zones(zones: dict[str, int]) -> str:
    return "  " + "  ".join(f"{z} {n}" for z, n in zones.items())


# --- input -----------------------------------------------------------------------------------
def _read_input(args: argparse.Namespace) -> None:
    """Read stdin or the import file before the database is opened (and perhaps created)."""
    if args.command == "store" and args.text == "-":
        args.text = _read("-").rstrip("\r\n")
    elif args.command == "import":
        text = _read(args.file)
        name = "stdin" if args.file == "-" else args.file
        try:
            args.document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(f"{name} is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ValidationError(f"{name} is nested too deeply to be an export") from exc


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as f:
        return f.read()


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, not {text!r}")
    return key, value


def _key_number(kind: Callable[[str], float]) -> Callable[[str], tuple[str, float]]:
    def parse(text: str) -> tuple[str, float]:
        key, value = _key_value(text)
        try:
            return key, kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: {value!r} is not a number") from None

    return parse


# --- parser ----------------------------------------------------------------------------------
def _global_options(suppress: bool, many: bool = False) -> argparse.ArgumentParser:
    """The options every command takes; subcommands get them with SUPPRESS so that a value given
    before the subcommand is not overwritten by the subcommand's default. ``many``: the
    ``--namespace`` of ``sync``, which some of its actions take several times."""
    p = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    p.add_argument(
        "--db",
        metavar="PATH",
        default=default(None),
        help="SQLite database file (default: the data directory from settings)",
    )
    p.add_argument(
        "--namespace",
        metavar="NS",
        default=default(None),
        help="namespace to work in (default from settings)"
        + ("; repeatable: run, status and trim take several (default: every one synced)" if many else ""),
        action=_Namespaces if many else "store",
    )
    p.add_argument("--agent", metavar="ID", default=default(None), help="acting agent id")
    p.add_argument("--json", action="store_true", default=default(False), help="machine-readable JSON output")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The ``stellar`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="stellar",
        parents=[_global_options(suppress=False)],
        description="Stellar Memory: shared long-term memory for AI agents.",
    )
    common = [_global_options(suppress=True)]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=common, help=help, description=help)

    p = add("store", "store a memory")
    p.add_argument("text", help="the memory's text, or - to read it from stdin")
    p.add_argument("--importance", type=float, default=0.5, help="0..1 (default 0.5)")
    p.add_argument("--pin", action="store_true", help="never forget this memory")
    p.add_argument("--tag", action="append", default=[], help="a tag (repeatable)")
    p.add_argument("--thread", help="conversation, session or document it belongs to")
    p.add_argument("--encrypt", action="store_true", help="keep its content encrypted at rest")
    p.add_argument(
        "--meta",
        action="append",
        default=[],
        type=_key_value,
        metavar="KEY=VALUE",
        help="metadata entry, value kept as text (repeatable)",
    )

    p = add("recall", "the memories most relevant to a query")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="how many (default 5)")
    p.add_argument(
        "--zone",
        action="append",
        choices=[z.value for z in Zone],
        help="only memories in this zone (repeatable)",
    )
    p.add_argument("--tag", action="append", help="only memories with this tag (repeatable)")
    p.add_argument("--expand", action="store_true", help="add linked memories of the hits")

    add("get", "show one memory").add_argument("id")
    p = add("update", "change some fields of a memory (the others stay)")
    p.add_argument("id")
    p.add_argument("--content", metavar="TEXT", help="new text (re-embedded)")
    p.add_argument("--importance", type=float, help="0..1")
    p.add_argument("--pin", action=argparse.BooleanOptionalAction, help="pin (--no-pin: unpin)")
    p.add_argument("--tag", action="append", help="the new tags, replacing the old (repeatable)")
    p.add_argument("--meta", action="append", type=_key_value, metavar="KEY=VALUE",
                   help="the new metadata, replacing the old (repeatable)")  # fmt: skip
    add("forget", "forget one memory").add_argument("id")
    p = add("link", "link two memories (a typed, weighted edge; again: sets the weight)")
    p.add_argument("source")
    p.add_argument("target")
    p.add_argument("--kind", default="related", help="the link's kind (default related)")
    p.add_argument("--weight", type=float, default=1.0, help="0..1 (default 1)")
    p = add("links", "a memory's links")
    p.add_argument("id")
    p.add_argument("--direction", choices=["out", "in", "both"], default="both")
    p.add_argument("--kind", help="only links of this kind")
    add("thread", "a thread's memories (conversation, session, document) in order").add_argument("thread")
    p = add("list", "a page of the namespace's memories, highest score first")
    p.add_argument(
        "--zone", action="append", choices=[z.value for z in Zone], help="only this zone (repeatable)"
    )
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    p.add_argument("--offset", type=int, default=0, help="skip this many first")
    p = add("events", "the namespace's change log, newest first")
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="only changes after this seq")
    p.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    add("namespaces", "the namespaces that hold memories (that you may read)")
    p = add("zones", "the namespace's zone thresholds and capacities; set some with the options")
    p.add_argument("--threshold", action="append", default=[], type=_key_number(float), metavar="ZONE=SCORE",
                   help="lowest score of a zone, e.g. core=0.8 (repeatable)")  # fmt: skip
    p.add_argument("--capacity", action="append", default=[], type=_key_number(int), metavar="ZONE=N",
                   help="most memories a zone holds, e.g. core=50 (repeatable)")  # fmt: skip
    add("stats", "counts and zone sizes of the namespace")
    p = add("reorbit", "rescore and rezone the namespace, forget idle memories")
    p.add_argument("--context", metavar="TEXT", help="score memories also by similarity to this")
    p = add("export", "write the namespace as a JSON document")
    p.add_argument("file", nargs="?", help="output file (default stdout)")
    p = add("import", "load an export document (into its own namespace unless --namespace)")
    p.add_argument("file", help="export file, or - for stdin")
    p = add("ingest", "store a file or directory (markdown, text, JSON); unchanged files are skipped")
    p.add_argument("path")
    p.add_argument(
        "--ext", action="append", help="file extension to take (repeatable; default .md .markdown .txt .json)"
    )
    p.add_argument("--importance", type=float, default=0.5, help="0..1 (default 0.5)")
    p.add_argument("--watch", action="store_true", help="then ingest every change until interrupted")

    p = add("grant", "give an agent a role (reader, writer, admin) in a namespace, NS-prefix* or *")
    p.add_argument("principal")
    p.add_argument("pattern", metavar="namespace")
    p.add_argument("role", choices=["reader", "writer", "admin"])
    p = add("revoke", "take an agent's grant on a namespace (or pattern)")
    p.add_argument("principal")
    p.add_argument("pattern", metavar="namespace")
    add("grants", "the grants on what you administer").add_argument("--of", metavar="AGENT")
    p = add("api-key", "API keys: create AGENT, list [AGENT], revoke KEY_ID")
    p.add_argument("action", choices=["create", "list", "revoke"])
    p.add_argument("arg", nargs="?", metavar="AGENT|KEY_ID")
    p.add_argument("--label")
    p.add_argument("--expires-days", type=float)
    p = add("key", "encryption keys: new (into the key file, made primary), rotate, usage, retire ID")
    p.add_argument("action", choices=["new", "rotate", "usage", "retire"])
    p.add_argument("key_id", nargs="?")
    p.add_argument("--key-file", help="the key file (default STELLAR_ENCRYPTION_KEY_FILE)")
    p.add_argument("--batch", type=int, default=500, help="memories per transaction (rotate)")
    p = add("audit", "the audit log: show (newest first), verify the chain, prune old records")
    p.add_argument("action", nargs="?", choices=["show", "verify", "prune"], default="show")
    p.add_argument("--limit", type=int, default=50)

    p = add("graph", "graph analytics: export [FILE] (GraphML), centrality, communities, path ID ID")
    p.add_argument("action", choices=["export", "centrality", "communities", "path"])
    p.add_argument(
        "args", nargs="*", metavar="FILE|ID", help="export: the file (default stdout); path: two ids"
    )
    p.add_argument("--kind", choices=["pagerank", "degree"], default="pagerank", help="centrality (pagerank)")
    p.add_argument("--limit", type=int, default=20, help="centrality: how many (default 20)")
    p.add_argument("--seed", type=int, default=0, help="communities: random seed (same seed, same answer)")

    about = (
        "sync with other replicas (STELLAR_SYNC_URL): run, status, conflicts, resolve, held, bootstrap, trim"
    )
    several = [_global_options(suppress=True, many=True)]  # --namespace repeatable
    p = sub.add_parser("sync", parents=several, help=about, description=about)
    p.add_argument("action", choices=["run", "status", "conflicts", "resolve", "held", "bootstrap", "trim"])
    p.add_argument("conflict_id", nargs="?", type=int, metavar="ID", help="resolve: the conflict")
    p.add_argument("--once", action="store_true", help="run: one round (publish, apply, trim), then exit")
    p.add_argument("--batches", type=int, default=100, help="run --once: batches to apply at most (100)")
    p.add_argument("--keep", choices=["winner", "loser"], help="resolve: the version to keep")
    p.add_argument("--content", metavar="TEXT", help="resolve: keep this content instead")
    p.add_argument("--from", dest="source", metavar="URL", help="bootstrap: the database to copy (the hub's)")

    p = add("mcp", "serve the memory to MCP clients: on stdio (as --agent), or over HTTP (per API key)")
    p.add_argument("--transport", choices=["stdio", "http"], default="stdio", help="stdio (default) or http")
    p.add_argument("--host", default="127.0.0.1", help="http: the address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="http: the port (8765); the endpoint is /mcp")

    p = add("serve", "the HTTP API with its live event stream (docs at /docs), until Ctrl-C")
    p.add_argument("--host", help="address to listen on (default STELLAR_SERVER_HOST, 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default STELLAR_SERVER_PORT, 8080)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``stellar`` command; returns the exit status (0 ok, 2 error)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already reported
        return exc.code if isinstance(exc.code, int) else 2
    try:
        _read_input(args)
        settings = Settings()
        if args.command == "sync" and args.action == "run" and (names := _namespaces(args)):
            settings = Settings(sync_namespaces=names)  # follow only those
        if args.command == "key" and args.action == "new":
            out = new_key(settings, args)
            print(json.dumps(out, indent=2))
            return 0
        if args.command == "serve" and settings.sync_url:  # its event stream shows every replica's changes
            settings = settings.model_copy(update={"sync_background": True})
        with StellarMemory(
            args.db,
            namespace=args.namespace,
            agent=args.agent or settings.agent({"mcp": "mcp", "serve": "api"}.get(args.command, "cli")),
            settings=settings,
            background=args.command in SERVING,
            create=args.command in CREATING or (args.command == "sync" and args.action == "bootstrap"),
        ) as mem:
            out = COMMANDS[args.command](mem, args)
        if args.command in SERVING:
            return 0  # stdout was the protocol's (stdio), or nothing is left to say
    except (StellarError, UnicodeDecodeError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
    name = f"{args.command} {args.action}" if args.command in ("sync", "graph") else args.command
    print(json.dumps(out, indent=2, ensure_ascii=False, default=str) if args.json else _human(name, out))
    return 0


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
