"""The routing directory (who handles what, where) and the place resolver (where a complaint happened).

Dispatch follows two principles: 属地, the place where the problem is, and 职责, the department whose function
covers that kind of problem.  The directory is data the deployer owns, three tables:

- ``places.csv`` (city, county, town, kind[, aliases]): the gazetteer.  A row with only a city is a city, with a
  county a county-level division, with a town a town / township / sub-district office.  ``aliases`` (optional,
  separated by ``|`` or spaces) adds other names; the short forms without 镇 / 乡 / 街道 / 区 / 县 / 市
  (李旺 for 李旺镇, 大武口 for 大武口区) are added automatically.
- ``agencies.csv`` (agency, city, county, town, function): each agency with its jurisdiction and function.
- ``functions.csv`` (function, name_template[, handles]): the functions; a template naming ``{town}`` marks a
  town-level function (town government, street office) that needs a resolved town to route.

``RoutingDirectory.from_dir(path)`` loads and validates them (``DirectoryError`` names the file, the row and
what to fix); ``PlaceResolver`` finds the places a complaint mentions and decides the one it is about.
"""

from __future__ import annotations

import csv
import hashlib
import json
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DirectoryError

__all__ = [
    "Agency",
    "Place",
    "PlaceMatch",
    "PlaceResolver",
    "RoutingDirectory",
]

# suffixes whose removal gives the short name people use ("李旺" for 李旺镇); longest first
_SUFFIXES = {"town": ("街道", "镇", "乡"), "county": ("区", "县", "市"), "city": ("市",)}
_MIN_ALIAS = 2  # a one-character short name would match everywhere
# a short form is weaker evidence than a full name: "六盘山" may be the mountain or a road, "六盘山镇" is a town
SHORT_WEIGHT = 0.5
# short forms that are everyday words or famous elsewhere ("胜利", "西安"): only their full names count
_COMMON_WORDS = frozenset(
    "胜利 丰登 良田 望远 金贵 大河 青山 河西 兴隆 大坝 小坝 好水 山河 香水 兴盛 黄花 滨河 常乐 白马 西安 "
    "文昌 新民 永康 上桥 板桥 东园 中河 宁安 大湾 红河 三河 城关 新营 海城 长城 朝阳 人民 前进 育才".split()
)
_STREET_CHARS = frozenset("路街道巷桥")
_STREET_WORDS = frozenset(("大街", "小区", "公园", "广场", "中路", "南路", "北路", "东路", "西路", "大道"))


@dataclass(frozen=True)
class Place:
    """One gazetteer entry.  ``level`` is "city", "county" or "town" (towns, townships and street offices)."""

    name: str
    level: str
    city: str
    county: str | None = None
    town: str | None = None
    kind: str = ""


@dataclass(frozen=True)
class Agency:
    name: str
    city: str
    county: str
    town: str | None
    function: str


@dataclass
class PlaceMatch:
    """The place a complaint is about, or ``level == "unknown"`` when nothing in the text decides.

    ``score`` is the share of the place evidence (mentions of a county or of its towns) that agrees with the
    chosen county: 1.0 when every mention points to it.  ``mentions`` lists the names found, ``ambiguous`` the
    ones that exist in several places and that nothing else in the text disambiguated.
    """

    name: str | None
    level: str
    city: str | None = None
    county: str | None = None
    town: str | None = None
    score: float = 0.0
    mentions: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    # when unknown: the (county, town) pairs the text left open (an ambiguous town's counties, tied counties)
    candidates: tuple[tuple[str, str | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        # by hand, not dataclasses.asdict (a recursive deep copy): this runs for every routed complaint
        return {"name": self.name, "level": self.level, "city": self.city, "county": self.county,
                "town": self.town, "score": self.score, "mentions": list(self.mentions),
                "ambiguous": list(self.ambiguous)}


UNKNOWN = "unknown"


class RoutingDirectory:
    """Validated agencies, places and functions, with lookups by (place, function).

    Build it with ``from_dir`` / ``from_csv`` (files) or ``from_rows`` (lists of dicts).  Every problem found
    while loading raises ``DirectoryError`` naming the table and row.
    """

    def __init__(
        self,
        places: Sequence[Mapping[str, Any]],
        agencies: Sequence[Mapping[str, Any]],
        functions: Sequence[Mapping[str, Any]],
        source: str = "rows",
    ) -> None:
        self.source = source
        self.functions = _load_functions(functions)
        self.town_functions = frozenset(f for f, t in self.functions.items() if "{town}" in t)
        self.places, self.aliases = _load_places(places)
        self.agencies = _load_agencies(agencies, self.functions, self.town_functions, self.places)
        self._county_city = {p.county: p.city for p in self.places if p.level == "county" and p.county}
        self._by_key = {(a.county, a.town, a.function): a.name for a in self.agencies.values()}
        self._towns_by_function: dict[tuple[str, str], tuple[str, ...]] = {}
        for a in self.agencies.values():
            if a.town is not None:
                key = (a.county, a.function)
                self._towns_by_function[key] = (*self._towns_by_function.get(key, ()), a.name)
        self.sha256 = hashlib.sha256(self._canonical().encode("utf-8")).hexdigest()

    # -- loading --------------------------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, places: Sequence[Mapping[str, Any]], agencies: Sequence[Mapping[str, Any]],
                  functions: Sequence[Mapping[str, Any]]) -> RoutingDirectory:
        return cls(places, agencies, functions)

    @classmethod
    def from_csv(cls, places: str | Path, agencies: str | Path, functions: str | Path) -> RoutingDirectory:
        tables = {name: _read_csv(Path(p), name) for name, p in
                  (("places", places), ("agencies", agencies), ("functions", functions))}
        return cls(tables["places"], tables["agencies"], tables["functions"], source=str(Path(places).parent))

    @classmethod
    def from_dir(cls, path: str | Path) -> RoutingDirectory:
        """Load ``places.csv``, ``agencies.csv`` and ``functions.csv`` from one folder."""
        path = Path(path)
        if not path.is_dir():
            raise DirectoryError(f"routing directory folder {path} does not exist; expected a folder with "
                                 "places.csv, agencies.csv and functions.csv")
        return cls.from_csv(path / "places.csv", path / "agencies.csv", path / "functions.csv")

    # -- lookups --------------------------------------------------------------------------------------------
    def function_of(self, agency: str) -> str | None:
        a = self.agencies.get(agency)
        return a.function if a is not None else None

    def agency_for(self, function: str, county: str | None, town: str | None = None) -> str | None:
        """The agency with ``function`` for this place; town-level functions need the town."""
        if county is None:
            return None
        if function in self.town_functions:
            return self._by_key.get((county, town, function)) if town is not None else None
        return self._by_key.get((county, None, function))

    def town_agencies(self, function: str, county: str) -> tuple[str, ...]:
        """Every town's agency with a town-level ``function`` in ``county`` (for when the town is unknown)."""
        return self._towns_by_function.get((county, function), ())

    def county_city(self, county: str) -> str | None:
        return self._county_city.get(county)

    def counties(self) -> list[str]:
        return sorted({p.county for p in self.places if p.level == "county" and p.county})

    def resolver(self) -> PlaceResolver:
        return PlaceResolver(self.places, self.aliases)

    def summary(self) -> dict[str, Any]:
        """What the manifest records about the directory a model routes with."""
        return {
            "sha256": self.sha256,
            "source": self.source,
            "places": len(self.places),
            "agencies": len(self.agencies),
            "functions": len(self.functions),
            "town_functions": sorted(self.town_functions),
        }

    def _canonical(self) -> str:
        """A formatting-independent serialization, hashed so a manifest names the exact directory."""
        return json.dumps({
            "functions": sorted(self.functions.items()),
            "places": sorted([p.city, p.county or "", p.town or "", p.kind] for p in self.places),
            "aliases": sorted([k, v] for k, v in self.aliases),
            "agencies": sorted([a.name, a.city, a.county, a.town or "", a.function] for a in self.agencies.values()),
        }, ensure_ascii=False, sort_keys=True)

    def __repr__(self) -> str:
        return (f"RoutingDirectory({len(self.places)} places, {len(self.agencies)} agencies, "
                f"{len(self.functions)} functions, sha256={self.sha256[:12]})")


def _read_csv(path: Path, name: str) -> list[dict[str, str]]:
    if not path.is_file():
        raise DirectoryError(f"{name} table {path} does not exist")
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            return list(csv.DictReader(f))
    except UnicodeDecodeError as exc:
        raise DirectoryError(f"{name} table {path} is not UTF-8 ({exc.reason}); save it as UTF-8") from None


def _cell(row: Mapping[str, Any], key: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and v != v):
        return ""
    return unicodedata.normalize("NFKC", str(v)).strip()


def _require_columns(rows: Sequence[Mapping[str, Any]], table: str, columns: Iterable[str]) -> None:
    if not rows:
        raise DirectoryError(f"{table} table is empty; it needs a header and at least one row")
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise DirectoryError(f"{table} table lacks column(s) {missing}; it has {list(rows[0])}")


def _load_functions(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    _require_columns(rows, "functions", ("function", "name_template"))
    out: dict[str, str] = {}
    for i, row in enumerate(rows, start=2):
        fn = _cell(row, "function")
        if not fn:
            raise DirectoryError(f"functions row {i}: empty function name")
        if fn in out:
            raise DirectoryError(f"functions row {i}: duplicate function {fn!r}; each function is listed once")
        out[fn] = _cell(row, "name_template")
    return out


def _load_places(rows: Sequence[Mapping[str, Any]]) -> tuple[tuple[Place, ...], tuple[tuple[str, str], ...]]:
    _require_columns(rows, "places", ("city", "county", "town"))
    places: dict[tuple[str, str, str], Place] = {}
    county_city: dict[str, str] = {}
    aliases: list[tuple[str, str]] = []  # (alias, place name)
    for i, row in enumerate(rows, start=2):
        city, county, town, kind = (_cell(row, k) for k in ("city", "county", "town", "kind"))
        if not city:
            raise DirectoryError(f"places row {i}: no city; every place needs its city (e.g. 中卫市)")
        if town and not county:
            raise DirectoryError(f"places row {i}: town {town!r} has no county; give the county it belongs to")
        key = (city, county, town)
        if key in places:
            raise DirectoryError(f"places row {i}: duplicate place {'/'.join(k for k in key if k)}")
        if county and not town:
            if county in county_city:
                raise DirectoryError(f"places row {i}: duplicate county name {county!r} (already in "
                                     f"{county_city[county]}); county names must be unique")
            county_city[county] = city
        level = "town" if town else "county" if county else "city"
        name = town or county or city
        places[key] = Place(name=name, level=level, city=city, county=county or None, town=town or None,
                            kind=kind or level)
        for alias in _cell(row, "aliases").replace("|", " ").split():
            aliases.append((alias, name))
    for city in dict.fromkeys(k[0] for k in places):  # cities are named by their counties' rows
        places.setdefault((city, "", ""), Place(name=city, level="city", city=city, kind="city"))
    for city, county, town in places:
        if town and county not in county_city:
            raise DirectoryError(f"places: town {town!r} names county {county!r}, which has no row of its own; "
                                 "add a row for the county (city, county, empty town)")
        if town and county_city[county] != city:
            raise DirectoryError(f"places: town {town!r} says {county!r} is in {city}, but the county's row "
                                 f"says {county_city[county]}")
    return tuple(places.values()), tuple(aliases)


def _load_agencies(
    rows: Sequence[Mapping[str, Any]], functions: Mapping[str, str], town_functions: frozenset[str],
    places: Sequence[Place],
) -> dict[str, Agency]:
    _require_columns(rows, "agencies", ("agency", "county", "function"))
    counties = {p.county: p.city for p in places if p.level == "county" and p.county}
    towns = {(p.county, p.town) for p in places if p.level == "town"}
    out: dict[str, Agency] = {}
    seen: dict[tuple[str, str | None, str], str] = {}
    for i, row in enumerate(rows, start=2):
        name, city, county, town, fn = (_cell(row, k) for k in ("agency", "city", "county", "town", "function"))
        if not name:
            raise DirectoryError(f"agencies row {i}: empty agency name")
        if name in out:
            raise DirectoryError(f"agencies row {i}: duplicate agency name {name!r}; agency names must be unique")
        if fn not in functions:
            raise DirectoryError(f"agencies row {i}: agency {name!r} has unknown function {fn!r}; "
                                 f"expected one of functions.csv: {sorted(functions)}")
        if not county:
            raise DirectoryError(f"agencies row {i}: agency {name!r} has no jurisdiction (empty county); "
                                 "give the county (and the town for a town-level agency)")
        if county not in counties:
            raise DirectoryError(f"agencies row {i}: agency {name!r} names county {county!r}, which is not in "
                                 "places.csv")
        if city and city != counties[county]:
            raise DirectoryError(f"agencies row {i}: agency {name!r} says {county!r} is in {city}, but "
                                 f"places.csv says {counties[county]}")
        if fn in town_functions and not town:
            raise DirectoryError(f"agencies row {i}: agency {name!r} has town-level function {fn!r} but no town")
        if town and (county, town) not in towns:
            raise DirectoryError(f"agencies row {i}: agency {name!r} names town {town!r}, which places.csv does "
                                 f"not list in {county}")
        key = (county, (town or None) if fn in town_functions else None, fn)
        if key in seen:
            where = "/".join(k for k in key[:2] if k)
            raise DirectoryError(f"agencies row {i}: {name!r} and {seen[key]!r} both have function {fn!r} in "
                                 f"{where}; routing needs exactly one")
        seen[key] = name
        out[name] = Agency(name=name, city=counties[county], county=county, town=key[1], function=fn)
    return out


class PlaceResolver:
    """Find the places a complaint mentions and decide the one it is about.

    Matching is greedy longest-match over every name and alias (a dictionary probe per position and name
    length, built once here, not per call).  Then:

    1. a name with one place (or whose places share a county) is an anchor;
    2. a name found in several counties (古城镇, 城关镇, the short 李俊) keeps the candidates in an anchored county
       (then city); one left: resolved; otherwise it is reported as ambiguous and not used;
    3. the county with most mentions (its own or its towns') wins; a tie means nothing decides: "unknown";
    4. a town of the winning county mentioned in the text makes the place that town.
    """

    def __init__(self, places: Sequence[Place], aliases: Sequence[tuple[str, str]] = ()) -> None:
        full: dict[str, list[Place]] = {}
        for p in places:
            full.setdefault(p.name, []).append(p)
        short: dict[str, list[Place]] = {}
        for p in places:
            base = _short_name(p)
            if base is not None:
                short.setdefault(base, []).append(p)
        for alias, target in aliases:  # the deployer's own aliases are as good as full names
            full.setdefault(alias, []).extend(full.get(target, []))
        index: dict[str, tuple[tuple[Place, ...], float]] = {}
        for name, ps in short.items():
            index[name] = (tuple(dict.fromkeys(ps)), SHORT_WEIGHT)
        for name, ps in full.items():  # a full name always wins over someone's short form
            index[name] = (tuple(dict.fromkeys(ps)), 1.0)
        self._index = index
        self._lengths = tuple(sorted({len(k) for k in index}, reverse=True))
        # the first two characters of every name (or the name, if shorter): most positions of a complaint start
        # no name, and one set lookup rules them out before the lookups per name length
        self._heads = frozenset(k[:2] for k in index)

    def mentions(self, text: str) -> list[tuple[str, tuple[Place, ...], float]]:
        """Every place name in ``text`` with its candidate places and evidence weight: longest match first,
        left to right, without overlaps.  A short form followed by 路 / 街 / 小区... is a street, not a place."""
        text = unicodedata.normalize("NFKC", text)
        out = []
        i, n = 0, len(text)
        index, lengths = self._index, self._lengths
        heads = self.__dict__.get("_heads")
        if heads is None:  # a resolver pickled before the prefilter existed
            heads = self._heads = frozenset(k[:2] for k in index)
        while i < n:
            if text[i : i + 2] not in heads and text[i] not in heads:
                i += 1
                continue
            for L in lengths:
                if i + L <= n:
                    hit = index.get(text[i : i + L])
                    if hit is not None:
                        if hit[1] < 1.0 and _names_a_street(text, i + L):
                            continue
                        out.append((text[i : i + L], hit[0], hit[1]))
                        i += L
                        break
            else:
                i += 1
        return out

    def resolve(self, text: str) -> PlaceMatch:
        found = self.mentions(text)
        if not found:
            return PlaceMatch(name=None, level=UNKNOWN)
        resolved: list[tuple[Place, float]] = []
        pending: list[tuple[str, tuple[Place, ...], float]] = []
        for surface, cands, weight in found:
            if len(cands) == 1 or len({c.county for c in cands}) == 1 and cands[0].county is not None:
                resolved.append((cands[0] if len(cands) == 1 else _county_of(cands[0]), weight))
            else:
                pending.append((surface, cands, weight))
        ambiguous = []
        open_pairs: list[tuple[str, str | None]] = []
        anchor_counties = {p.county for p, _ in resolved if p.county}
        anchor_cities = {p.city for p, _ in resolved}
        for surface, cands, weight in pending:
            keep = [c for c in cands if c.county in anchor_counties] or [c for c in cands if c.city in anchor_cities]
            if len(keep) == 1:
                resolved.append((keep[0], weight))
            else:
                ambiguous.append(surface)
                open_pairs.extend((str(c.county), c.town) for c in (keep or cands) if c.county)
        surfaces = [s for s, _, _ in found]
        votes: dict[str, float] = {}
        for p, w in resolved:
            if p.county:
                votes[p.county] = votes.get(p.county, 0.0) + w
        if not votes:
            cities = {p.city for p, _ in resolved}
            if len(cities) == 1:
                city = cities.pop()
                return PlaceMatch(name=city, level="city", city=city, score=1.0, mentions=surfaces,
                                  ambiguous=ambiguous, candidates=tuple(dict.fromkeys(open_pairs)))
            return PlaceMatch(name=None, level=UNKNOWN, mentions=surfaces, ambiguous=ambiguous,
                              candidates=tuple(dict.fromkeys(open_pairs)))
        ranked = _most_common(votes)
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            tied = [(c, None) for c, v in ranked if v == ranked[0][1]]
            return PlaceMatch(name=None, level=UNKNOWN, mentions=surfaces, ambiguous=ambiguous,
                              candidates=tuple(tied))
        county, count = ranked[0]
        score = round(count / sum(votes.values()), 4)
        city = next(p.city for p, _ in resolved if p.county == county)
        towns: dict[str, float] = {}
        for p, w in resolved:
            if p.county == county and p.town:
                towns[p.town] = towns.get(p.town, 0.0) + w
        town_ranked = _most_common(towns)
        if town_ranked and (len(town_ranked) == 1 or town_ranked[0][1] > town_ranked[1][1]):
            town = town_ranked[0][0]
            return PlaceMatch(name=town, level="town", city=city, county=county, town=town, score=score,
                              mentions=surfaces, ambiguous=ambiguous)
        return PlaceMatch(name=county, level="county", city=city, county=county, score=score, mentions=surfaces,
                          ambiguous=ambiguous)


def _most_common(votes: dict[str, float]) -> list[tuple[str, float]]:
    """Highest first; ties keep the order of first mention (dicts keep insertion order, sort is stable)."""
    return sorted(votes.items(), key=lambda kv: -kv[1])


def _short_name(p: Place) -> str | None:
    """The name without its administrative suffix, when that is still a name and not an everyday word."""
    for suffix in _SUFFIXES[p.level]:
        if p.name.endswith(suffix):
            base = p.name[: -len(suffix)]
            # street offices are named after streets: "南街" alone is in every town
            shortest = 3 if suffix == "街道" else _MIN_ALIAS
            if len(base) >= shortest and base not in _COMMON_WORDS:
                return base
            return None
    return None


def _names_a_street(text: str, end: int) -> bool:
    return text[end : end + 1] in _STREET_CHARS or text[end : end + 2] in _STREET_WORDS


def _county_of(p: Place) -> Place:
    return Place(name=p.county or p.city, level="county", city=p.city, county=p.county)
