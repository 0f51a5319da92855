"""The routing directory (loading, validation, hash) and the place resolver (mentions -> one place)."""

from __future__ import annotations

import csv
import pickle
import shutil
from pathlib import Path

import pytest

from classifier.errors import DirectoryError
from classifier.jurisdiction import PlaceResolver, RoutingDirectory
from training.demo import DEMO_DIR, demo_directory


@pytest.fixture(scope="module")
def directory() -> RoutingDirectory:
    return demo_directory()


@pytest.fixture(scope="module")
def resolver(directory: RoutingDirectory) -> PlaceResolver:
    return directory.resolver()


# text -> (level, place name, county) the resolver must decide
PLACE_TABLE = [
    # a county, with and without its suffix
    ("大武口区永乐南路路面塌陷，无人处理。", "county", "大武口区", "大武口区"),
    ("大武口这边的路灯一直不亮", "county", "大武口区", "大武口区"),
    ("同心县出租车司机存在不文明驾驶行为。", "county", "同心县", "同心县"),
    # a town with its county; a town without its county; the short form of a town
    ("海原县李旺镇杨堡村6队空气能故障", "town", "李旺镇", "海原县"),
    ("李旺镇杨堡村的空气能坏了", "town", "李旺镇", "海原县"),
    ("我们李旺这边暖气不热", "town", "李旺镇", "海原县"),
    # a sub-district office alone
    ("凤凰北街街道的老旧小区没人管", "town", "凤凰北街街道", "兴庆区"),
    # 古城镇 is in 利通区 and in 彭阳县: decided by the county, or by a neighbouring town
    ("彭阳县古城镇的路灯坏了", "town", "古城镇", "彭阳县"),
    ("利通区古城镇的垃圾没人清", "town", "古城镇", "利通区"),
    ("古城镇到红河镇的路全是坑", "county", "彭阳县", "彭阳县"),
    # 李俊镇 (永宁县) vs 李俊乡 (海原县): full names decide, the short form needs another mention
    ("李俊镇的自来水停了三天", "town", "李俊镇", "永宁县"),
    ("李俊乡的自来水停了三天", "town", "李俊乡", "海原县"),
    ("永宁县李俊这边自来水停了", "town", "李俊镇", "永宁县"),
    ("海原县李俊这边自来水停了", "town", "李俊乡", "海原县"),
    # two counties: the one mentioned more (its towns count) wins
    ("我是永宁县的，在兴庆区掌政镇打工，掌政镇的工地拖欠工资", "town", "掌政镇", "兴庆区"),
    # only a city
    ("银川市的公交车太挤了", "city", "银川市", None),
]

UNKNOWN_TABLE = [
    ("古城镇的路灯坏了好几天", ["古城镇"]),  # in two counties, nothing else decides
    ("李俊那边的路坏了", ["李俊"]),  # 李俊镇 or 李俊乡
    ("从永宁县到兴庆区的班车太少", []),  # two counties, mentioned equally
    ("小区门口的路灯不亮了", []),  # no place at all
]


@pytest.mark.parametrize(("text", "level", "name", "county"), PLACE_TABLE)
def test_resolver_decides_the_place(resolver, text, level, name, county):
    place = resolver.resolve(text)
    assert (place.level, place.name, place.county) == (level, name, county)


@pytest.mark.parametrize(("text", "ambiguous"), UNKNOWN_TABLE)
def test_resolver_says_unknown_rather_than_guessing(resolver, text, ambiguous):
    place = resolver.resolve(text)
    assert place.level == "unknown"
    assert place.name is None and place.county is None and place.score == 0.0
    assert place.ambiguous == ambiguous


def test_town_resolves_to_its_county_and_city(resolver):
    place = resolver.resolve("李旺镇杨堡村")
    assert (place.town, place.county, place.city, place.score) == ("李旺镇", "海原县", "中卫市", 1.0)


def test_score_is_the_share_of_evidence_for_the_county(resolver):
    place = resolver.resolve("我是永宁县的，在兴庆区掌政镇打工")
    assert place.county == "兴庆区"
    assert place.score == pytest.approx(2 / 3, abs=1e-4)
    assert place.mentions == ["永宁县", "兴庆区", "掌政镇"]


def test_longest_match_wins_and_full_width_text_is_normalized(resolver):
    assert [s for s, _, _ in resolver.mentions("中卫市海原县李旺镇")] == ["中卫市", "海原县", "李旺镇"]
    assert resolver.resolve("海原县　李旺镇 ５队").town == "李旺镇"


def test_a_short_form_followed_by_a_street_word_is_a_street(resolver):
    # 六盘山中路 is a road in 兴庆区, not 六盘山镇 of 泾源县
    place = resolver.resolve("兴庆区六盘山中路与凤凰南街交叉口施工")
    assert place.mentions == ["兴庆区"]
    assert place.county == "兴庆区"


def test_everyday_words_are_not_places(resolver):
    # 胜利 (胜利乡 / 胜利镇) and 西安 (西安镇) only count by their full names
    assert resolver.resolve("胜利了，我去西安玩").level == "unknown"
    assert resolver.resolve("海原县西安镇的路灯").town == "西安镇"


def test_resolver_pickles(resolver):
    clone = pickle.loads(pickle.dumps(resolver))
    assert clone.resolve("李旺的暖气").town == "李旺镇"


# -- the directory ---------------------------------------------------------------------------------------------
def test_demo_directory_loads_with_lookups(directory):
    assert len(directory.agencies) == 575
    assert len(directory.functions) == 18
    assert directory.town_functions == {"town_gov", "street_office"}
    assert directory.function_of("海原县李旺镇政府") == "town_gov"
    assert directory.function_of("没有这个单位") is None
    assert directory.agency_for("housing", "大武口区") == "大武口区住建局"
    assert directory.agency_for("town_gov", "海原县", "李旺镇") == "海原县李旺镇政府"
    assert directory.agency_for("town_gov", "海原县") is None  # a town-level function needs the town
    assert directory.agency_for("housing", None) is None
    assert "海原县李旺镇政府" in directory.town_agencies("town_gov", "海原县")
    assert len(directory.counties()) == 22


def test_directory_hash_is_stable_and_follows_content(tmp_path, directory):
    copy = tmp_path / "d"
    shutil.copytree(DEMO_DIR, copy)
    assert RoutingDirectory.from_dir(copy).sha256 == directory.sha256
    assert len(directory.sha256) == 64
    _edit(copy / "agencies.csv", lambda rows: rows[:-1])
    assert RoutingDirectory.from_dir(copy).sha256 != directory.sha256


def test_aliases_column_adds_names(tmp_path):
    copy = tmp_path / "d"
    shutil.copytree(DEMO_DIR, copy)

    def add_alias(rows):
        for r in rows:
            r["aliases"] = "老李旺|李旺街" if r["town"] == "李旺镇" else ""
        return rows

    _edit(copy / "places.csv", add_alias)
    resolver = RoutingDirectory.from_dir(copy).resolver()
    assert resolver.resolve("老李旺那边暖气不热").town == "李旺镇"


def _edit(path: Path, change) -> None:  # noqa: ANN001
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = change(rows)
    fields = list(rows[0]) if rows else []
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def _rows(name: str) -> list[dict[str, str]]:
    with (DEMO_DIR / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _with(rows: list[dict[str, str]], **row: str) -> list[dict[str, str]]:
    return [*rows, {k: row.get(k, "") for k in rows[0]}]


@pytest.fixture(scope="module")
def tables() -> dict[str, list[dict[str, str]]]:
    return {n: _rows(f"{n}.csv") for n in ("places", "agencies", "functions")}


@pytest.mark.parametrize(
    ("table", "row", "match"),
    [
        ("agencies", {"agency": "海原县气象局", "city": "中卫市", "county": "海原县", "function": "weather"},
         r"row 577: agency '海原县气象局' has unknown function 'weather'; expected one of"),
        ("agencies", {"agency": "某某办公室", "city": "中卫市", "function": "housing"},
         r"agency '某某办公室' has no jurisdiction \(empty county\)"),
        ("agencies", {"agency": "兴庆区住建局", "city": "银川市", "county": "兴庆区", "function": "housing"},
         r"duplicate agency name '兴庆区住建局'"),
        ("agencies", {"agency": "兴庆区第二住建局", "city": "银川市", "county": "兴庆区", "function": "housing"},
         r"'兴庆区第二住建局' and '兴庆区住建局' both have function 'housing' in 兴庆区"),
        ("agencies", {"agency": "火星区住建局", "city": "银川市", "county": "火星区", "function": "housing"},
         r"names county '火星区', which is not in places.csv"),
        ("agencies", {"agency": "海原县某镇政府", "city": "中卫市", "county": "海原县", "function": "town_gov"},
         r"town-level function 'town_gov' but no town"),
        ("agencies", {"agency": "海原县掌政镇政府", "county": "海原县", "town": "掌政镇", "function": "town_gov"},
         r"names town '掌政镇', which places.csv does not list in 海原县"),
        ("places", {"city": "银川市", "county": "兴庆区", "town": "掌政镇", "kind": "town"},
         r"duplicate place 银川市/兴庆区/掌政镇"),
        ("places", {"city": "中卫市", "county": "兴庆区", "kind": "county"},
         r"duplicate county name '兴庆区' \(already in 银川市\)"),
        ("places", {"city": "中卫市", "town": "无县镇", "kind": "town"}, r"town '无县镇' has no county"),
        ("places", {"city": "中卫市", "county": "无名县", "town": "某镇", "kind": "town"},
         r"names county '无名县', which has no row of its own"),
        ("functions", {"function": "housing", "name_template": "{county}住建局"}, r"duplicate function 'housing'"),
    ],
)
def test_directory_errors_name_the_problem(tables, table, row, match):
    data = dict(tables)
    data[table] = _with(tables[table], **row)
    with pytest.raises(DirectoryError, match=match):
        RoutingDirectory(data["places"], data["agencies"], data["functions"])


def test_missing_columns_and_files_are_clear(tables, tmp_path):
    no_fn = [{k: v for k, v in r.items() if k != "function"} for r in tables["agencies"]]
    with pytest.raises(DirectoryError, match=r"agencies table lacks column\(s\) \['function'\]"):
        RoutingDirectory(tables["places"], no_fn, tables["functions"])
    with pytest.raises(DirectoryError, match="places table is empty"):
        RoutingDirectory([], tables["agencies"], tables["functions"])
    with pytest.raises(DirectoryError, match="does not exist; expected a folder with places.csv"):
        RoutingDirectory.from_dir(tmp_path / "nowhere")
    (tmp_path / "d").mkdir()
    with pytest.raises(DirectoryError, match=r"places table .*places.csv does not exist"):
        RoutingDirectory.from_dir(tmp_path / "d")


def test_non_utf8_table_is_refused(tmp_path):
    copy = tmp_path / "d"
    shutil.copytree(DEMO_DIR, copy)
    text = (copy / "agencies.csv").read_text(encoding="utf-8")
    (copy / "agencies.csv").write_bytes(text.encode("gb18030"))
    with pytest.raises(DirectoryError, match="is not UTF-8"):
        RoutingDirectory.from_dir(copy)


def test_directory_error_is_a_value_error():
    assert issubclass(DirectoryError, ValueError)
