"""``hotline models``: list, show, promote, roll back, tag and annotate the versions of a model store.

    hotline models list                      # each version: when, from what data, how good, tags, note
    hotline models show current              # a readable summary (--json: the manifest)
    hotline models promote 2026              # a unique prefix, a tag, current / previous / latest
    hotline models tag 20261128-2045 2024-winter
    hotline models note 2024-winter "trained on the winter export, agencies merged"
    hotline models sign VERSION              # with $HOTLINE_STORE_SIGNING_KEY: a version you trust
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from classifier.store import ModelStore

from .cli import _print_json, _store, _store_arg
from .train_summary import shows_top3

__all__ = ["add_command", "cmd_models", "format_listing", "format_manifest", "reload_hint"]

VERSION_HELP = "a version id, a unique prefix of it, a tag, current, previous or latest"


def add_command(sub: Any) -> None:
    p = sub.add_parser("models", help="list, show, promote, roll back, tag, annotate and sign model versions",
                       description=f"Manage the versions of a model store. A VERSION is {VERSION_HELP}.")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    commands = {
        "list": "every version: when, from what data, hold-out metrics, tags, note",
        "show": "one version: a readable summary (--json: its manifest)",
        "promote": "make a version current (a running service switches when it reloads)",
        "rollback": "make the previous current version current again",
        "tag": "give a version a name (e.g. 2024-winter) usable wherever a version is asked for",
        "untag": "remove a tag",
        "note": "store a note about a version (an empty note removes it)",
        "sign": "sign a version you trust with $HOTLINE_STORE_SIGNING_KEY",
    }
    for name, helptext in commands.items():
        mp = msub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".")
        if name in ("show", "promote", "tag", "note", "sign"):
            mp.add_argument("version", metavar="VERSION", help=VERSION_HELP)
        if name in ("tag", "untag"):
            mp.add_argument("name", metavar="NAME", help="the tag: letters, digits, '.', '_' or '-' (e.g. 2024-winter)")
        if name == "tag":
            mp.add_argument("--force", action="store_true", help="move the tag if it already names another version")
        if name == "note":
            mp.add_argument("note", metavar="TEXT", help="the note (quote it); '' removes the note")
        mp.add_argument("--json", action="store_true", help="print the result as JSON")
        _store_arg(mp)
    p.set_defaults(func=cmd_models)


def reload_hint(serving: str | None, new: str) -> str:
    """What a person must know after changing the current version: the service does not switch by itself."""
    was = f"version {serving}" if serving and serving != new else "the version it loaded"
    return (f"A running service keeps serving {was} until it reloads: POST /admin/reload with the header "
            "X-API-Key: $HOTLINE_ADMIN_API_KEY, or `kill -HUP <pid of hotline serve>`, or restart it.")


def cmd_models(args: argparse.Namespace) -> int:
    store = _store(args)
    action = args.models_command
    if action == "list":
        rows = store.summary()
        if args.json:
            _print_json({"store": str(store.path), "current": store.current(), "tags": store.tags(),
                         "versions": rows})
        else:
            print(format_listing(rows, store))
    elif action == "show":
        version = store.resolve(args.version)
        manifest = store.verify(version)
        if args.json:
            _print_json(manifest)
        else:
            print(format_manifest(manifest, store))
    elif action in ("promote", "rollback"):
        before = store.current()
        version = store.promote(args.version) if action == "promote" else store.rollback()
        if args.json:
            _print_json({"current": version, "previous_current": before})
        else:
            verb = "current version is now" if action == "promote" else "rolled back: current version is now"
            print(f"{verb} {version}" + (f" (was {before})" if before and before != version else ""))
            print(reload_hint(before, version))
    elif action == "sign":
        version = store.sign(store.resolve(args.version))
        _print_json({"signed": version}) if args.json else print(f"signed {version}")
    elif action == "tag":
        version = store.tag(args.version, args.name, force=args.force)
        _print_json({"tag": args.name, "version": version}) if args.json else \
            print(f"tagged {version} as {args.name}")
    elif action == "untag":
        version = store.untag(args.name)
        _print_json({"untagged": args.name, "version": version}) if args.json else \
            print(f"removed tag {args.name} (it named {version})")
    elif action == "note":
        version = store.set_note(args.version, args.note)
        note = store.notes().get(version)
        _print_json({"version": version, "note": note}) if args.json else \
            print(f"note of {version}: {note}" if note else f"removed the note of {version}")
    return 0


def _metrics_cell(row: dict[str, Any]) -> str:
    parts = []
    for target, m in (row.get("metrics") or {}).items():
        if m and "accuracy" in m:
            parts.append(f"{target} {m['accuracy']:.3f} / {m.get('macro_f1', float('nan')):.3f}")
        else:
            parts.append(f"{target} not measured")
    return "; ".join(parts)


def _data_cell(row: dict[str, Any]) -> str:
    rows = row.get("rows")
    parts = [row.get("source") or "?", f"{rows:,} rows" if isinstance(rows, int) else "? rows"]
    if row.get("data_sha256"):
        parts.append(f"sha256 {str(row['data_sha256'])[:8]}")
    return ", ".join(parts)


def format_listing(rows: list[dict[str, Any]], store: ModelStore) -> str:
    """The versions as an aligned table, oldest first, with a legend."""
    if not rows:
        return f"no model versions in {store.path}"
    table = [["", "version", "created", "data (file, rows, content fingerprint)",
              "hold-out accuracy / macro-F1", "tags", "note"]]
    for row in rows:
        flag = "*" if row["current"] else "^" if row.get("previous") else ""
        if "error" in row:
            table.append([flag, row["version"], "BROKEN", str(row["error"]), "", "", ""])
            continue
        created = str(row.get("created") or "")[:16].replace("T", " ")
        table.append([flag, row["version"], created, _data_cell(row), _metrics_cell(row),
                      ", ".join(row.get("tags") or []), row.get("note") or ""])
    widths = [max(len(r[j]) for r in table) for j in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    lines.append(f"(* current, ^ previous; store {store.path})")
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return f"{v:.1%}" if isinstance(v, (int, float)) else "?"


def format_manifest(m: dict[str, Any], store: ModelStore) -> str:
    """One version's manifest as a person reads it: what, from what, how good, how it was made."""
    version = m.get("version", "?")
    states = []
    if store.current() == version:
        states.append("current")
    tags = store.tags_of(version)
    if tags:
        states.append("tags: " + ", ".join(tags))
    lines = [f"version {version}" + (f" ({'; '.join(states)})" if states else ""),
             f"created {m.get('created', '?')}"]
    note = store.notes().get(version)
    if note:
        lines.append(f"note: {note}")
    data = m.get("data") or {}
    if data:
        source = Path(str(data.get("source") or "?")).name
        enc = f" ({data['encoding']})" if data.get("encoding") else ""
        columns = ", ".join(f"{k} {v}" for k, v in (data.get("columns") or {}).items())
        lines.append(f"data: {source}{enc}, {data.get('rows', '?')} rows read, {data.get('rows_used', '?')} used; "
                     f"content fingerprint {str(data.get('sha256', '?'))[:16]}")
        if columns:
            lines.append(f"columns: {columns}")
        rows = data.get("row_fingerprint") or {}
        if rows:
            lines.append(f"training rows fingerprinted for overlap checks: {rows.get('rows', '?')}")
    lines.append("targets:")
    for target, labels in (m.get("labels") or {}).items():
        n = len(labels or {})
        tm = (m.get("metrics") or {}).get(target) or {}
        if "accuracy" in tm:
            how = (f"hold-out ({tm.get('n', '?')} cases): accuracy {_pct(tm['accuracy'])}, macro-F1 "
                   f"{tm.get('macro_f1', float('nan')):.3f}")
            if shows_top3(n) and "top3_accuracy" in tm:
                how += f", top-3 {_pct(tm['top3_accuracy'])}"
        else:
            how = "not measured (no hold-out)"
        cv = tm.get("cv")
        if cv and "accuracy" in cv:
            how += f"; {len(cv['accuracy'].get('folds', []))}-fold CV accuracy {_pct(cv['accuracy']['mean'])}"
        lines.append(f"  {target}: {n} classes; {how}")
    cfg = m.get("config") or {}
    model_cfg, feat = cfg.get("model") or {}, cfg.get("features") or {}
    if cfg:
        lines.append(f"settings: C {model_cfg.get('C')}, class weights {model_cfg.get('class_weight') or 'none'}, "
                     f"min_df {feat.get('min_df')}, min_class_count {cfg.get('min_class_count')}, rare classes "
                     f"-> {cfg.get('rare_policy')}, test_size {cfg.get('test_size')}, seed {cfg.get('seed')}")
        dicts = [f"{k} {Path(str(cfg[k])).name}" for k in ("user_dict", "stop_words") if cfg.get(k)]
        lines.append("dictionaries: " + (", ".join(dicts) if dicts else "none (jieba's own)"))
    directory = data.get("directory") if isinstance(data, dict) else None
    if isinstance(directory, dict):
        lines.append(f"routing: {directory.get('agencies')} agencies in the directory "
                     f"(sha256 {str(directory.get('sha256', '?'))[:12]})")
    versions = m.get("versions") or {}
    if versions:
        lines.append("libraries: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    files = m.get("files") or {}
    folder = store.path / str(version)
    sizes = []
    for name in files:
        path = folder / name
        size = path.stat().st_size if path.exists() else None
        sizes.append(f"{name} {size / 1e6:.1f} MB" if size and size >= 1e5 else f"{name}")
    lines.append(f"files ({folder}): " + ", ".join(sizes))
    lines.append("(hotline models show VERSION --json prints the whole manifest)")
    return "\n".join(lines)
