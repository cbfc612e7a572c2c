"""The procedure catalogue: strict loading from JSON and TOML, one-line refusals, upsert into the database."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.catalogue import (
    CatalogueError,
    ProcedureSpec,
    get_procedure,
    import_procedures,
    list_procedures,
    load_catalogue,
    parse_catalogue,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "procedures.json"

ENTRY = {
    "code": "1.009794",
    "name": "Cấp giấy phép xây dựng nhà ở riêng lẻ",
    "agencies": ["000.00.23.H38"],
    "processing_days": 15,
    "components": [{"code": "TP1", "name": "Đơn đề nghị", "required": True, "must_be_signed": False}],
    "fees": [{"code": "LP1", "name": "Lệ phí cấp phép", "amount": 150000}],
}

TOML = """
[[procedures]]
code = "1.009794"
name = "Cấp giấy phép xây dựng nhà ở riêng lẻ"
agencies = ["000.00.23.H38"]
processing_days = 15
components = [{ code = "TP1", name = "Đơn đề nghị", required = true, must_be_signed = false }]
fees = [{ code = "LP1", name = "Lệ phí cấp phép", amount = 150000 }]
"""


def entry(**changes) -> dict:
    data = json.loads(json.dumps(ENTRY))
    data.update(changes)
    return data


def write(tmp_path: Path, entries, name: str = "procedures.json") -> Path:
    path = tmp_path / name
    path.write_text(entries if isinstance(entries, str) else json.dumps(entries, ensure_ascii=False), "utf-8")
    return path


# --- loading ---------------------------------------------------------------------------------------------------------


def test_json_and_toml_give_the_same_entries(tmp_path):
    from_json = load_catalogue(write(tmp_path, [ENTRY]))
    from_toml = load_catalogue(write(tmp_path, TOML, "procedures.toml"))
    assert from_json == from_toml
    spec = from_json[0]
    assert spec.code == "1.009794" and spec.processing_days == 15
    assert spec.components[0].required is True and spec.components[0].must_be_signed is False
    assert spec.fees[0].amount == 150000 and spec.total_fee == 150000
    assert spec.transfer_shares == {}


@pytest.mark.parametrize(("name", "text"), [("catalogue.txt", json.dumps([ENTRY])), ("catalogue", TOML)])
def test_format_is_sniffed_without_a_known_suffix(tmp_path, name, text):
    assert load_catalogue(write(tmp_path, text, name))[0].code == "1.009794"


def test_defaults_for_optional_fields():
    spec = parse_catalogue(
        json.dumps(
            [
                {
                    "code": "X1",
                    "name": "Thủ tục",
                    "agencies": ["H38.12"],
                    "processing_days": 0,
                    "components": [{"code": "TP1", "name": "Tờ khai"}],
                }
            ]
        )
    )[0]
    assert spec.fees == [] and spec.transfer_shares == {}
    assert spec.components[0].required is True and spec.components[0].must_be_signed is False


def test_the_example_catalogue_loads():
    specs = load_catalogue(EXAMPLE)
    assert [s.code for s in specs] == ["1.009794", "2.001610", "1.001193"]
    building, business, birth = specs
    assert (building.processing_days, building.total_fee) == (15, 150000)
    assert business.fees and business.total_fee > 0
    assert (birth.processing_days, birth.total_fee) == (1, 0)


def test_the_documented_examples_load():
    doc = (ROOT / "docs" / "catalogue.md").read_text("utf-8")
    json_block = re.search(r"```json\n(.*?)```", doc, re.S).group(1)
    toml_block = re.search(r"```toml\n(.*?)```", doc, re.S).group(1)
    assert parse_catalogue(json_block, fmt="json") == load_catalogue(EXAMPLE)
    toml_specs = parse_catalogue(toml_block, fmt="toml")
    assert toml_specs[1].transfer_shares == {"000.00.24.H38": 7, "000.00.35.H38": 3}
    assert toml_specs[1].components[0].must_be_signed is True


def test_transfer_shares_accepted():
    spec = ProcedureSpec.model_validate(
        entry(agencies=["000.00.24.H38", "000.00.35.H38"], transfer_shares={"000.00.24.H38": 2, "000.00.35.H38": 1.5})
    )
    assert spec.transfer_shares["000.00.35.H38"] == 1.5


# --- refusals: one line naming the file, the entry and the field -----------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (entry(fees=[{"code": "LP1", "name": "Lệ phí", "amount": 1.5}]), r"fees\[0\]\.amount: must be an integer"),
        (entry(fees=[{"code": "LP1", "name": "Lệ phí", "amount": 150000.0}]), r"fees\[0\]\.amount: must be an integ"),
        (entry(fees=[{"code": "LP1", "name": "Lệ phí", "amount": True}]), r"fees\[0\]\.amount: must be an integer"),
        (entry(fees=[{"code": "LP1", "name": "Lệ phí", "amount": "150000"}]), r"fees\[0\]\.amount: must be an integ"),
        (entry(fees=[{"code": "LP1", "name": "Lệ phí", "amount": -1}]), r"fees\[0\]\.amount: input should be great"),
        (entry(processing_days=-1), r"processing_days: input should be greater than or equal to 0"),
        (entry(processing_days=1.5), r"processing_days: must be an integer"),
        (entry(processing_days=True), r"processing_days: must be an integer"),
        (entry(processing_day=15), r"processing_day: unknown field"),
        (entry(components=[{"code": "TP1", "name": "Đơn", "required": "yes"}]), r"components\[0\]\.required: must be"),
        (entry(components=[{"code": "TP1", "name": "Đơn", "signed": True}]), r"components\[0\]\.signed: unknown field"),
        (entry(components=[{"code": "TP1", "name": "A"}, {"code": "TP1", "name": "B"}]), "duplicate component code"),
        (
            entry(fees=[{"code": "LP1", "name": "A", "amount": 1}, {"code": "LP1", "name": "B", "amount": 2}]),
            "duplicate fee code",
        ),
        (entry(agencies=[]), "agencies: must not be empty"),
        (entry(agencies=["not an agency"]), r"agencies\[0\]: 'not an agency' is not an agency code"),
        (entry(name="  "), "name: must not be empty"),
        (entry(code="1 009794"), "code: must be letters, digits"),
        (entry(transfer_shares={"000.00.99.H38": 1}), "transfer_shares names agencies not in agencies: 000.00.99.H38"),
        (entry(transfer_shares={"000.00.23.H38": 0}), r"transfer_shares\.000\.00\.23\.H38: input should be greater"),
    ],
)
def test_bad_entries_are_refused_with_file_entry_and_field(tmp_path, bad, message):
    path = write(tmp_path, [ENTRY | {"code": "0.000001"}, bad])
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(path)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: entry 1")
    assert re.search(message, text), text


def test_missing_field_and_more_problems_counted(tmp_path):
    bad = entry()
    del bad["processing_days"]
    bad["extra"] = 1
    with pytest.raises(
        CatalogueError,
        match=r"entry 0 \(1\.009794\): processing_days: required field is missing "
        r"\(and 1 more problem\)",
    ):
        load_catalogue(write(tmp_path, [bad]))


def test_duplicate_procedure_codes_are_refused(tmp_path):
    with pytest.raises(
        CatalogueError, match=r"entry 1 \(1\.009794\): code: duplicate procedure code \(already entry 0\)"
    ):
        load_catalogue(write(tmp_path, [ENTRY, ENTRY]))


def test_duplicate_keys_in_json_are_refused(tmp_path):
    text = '[{"code": "1.009794", "code": "1.000001", "name": "x", "agencies": ["H38.12"], "processing_days": 1}]'
    with pytest.raises(CatalogueError, match="not valid JSON: duplicate key 'code'"):
        load_catalogue(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"code": "1.009794", "processing_days": 1e999}]', "the number 1e999 is out of range"),
        ('[{"code": "1.009794", "name": "Th\\u1ee7 t\\u1ee5c\\u0000"}]', r"\[0\]\.name: holds the character U\+0000"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
)
def test_json_no_database_can_store_is_refused(tmp_path, text, message):
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(write(tmp_path, text))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("c.json", "[{", "c.json: not valid JSON"),
        ("c.json", json.dumps({"procedures": [ENTRY]}), "expected a JSON list of procedures, got a dict"),
        ("c.json", json.dumps(["1.009794"]), r"entry 0: expected an object/table, got a str"),
        ("c.toml", "[[procedures]\n", "c.toml: not valid TOML"),
        ("c.toml", 'title = "x"\n', "unknown top-level key 'title'"),
        ("c.toml", "", r"expected \[\[procedures\]\] tables"),
    ],
)
def test_unreadable_files_are_refused(tmp_path, name, text, message):
    with pytest.raises(CatalogueError, match=message):
        load_catalogue(write(tmp_path, text, name))


def test_missing_file(tmp_path):
    with pytest.raises(CatalogueError, match=r"nope\.json: no such file"):
        load_catalogue(tmp_path / "nope.json")


def test_an_empty_json_list_is_an_empty_catalogue():
    assert parse_catalogue("[]") == []


# --- storage ----------------------------------------------------------------------------------------------------------


def test_import_creates_updates_and_leaves_identical_entries(db):
    specs = load_catalogue(EXAMPLE)
    with db.unit_of_work() as session:
        assert import_procedures(session, specs) == (3, 0)
    with db.unit_of_work() as session:
        assert import_procedures(session, specs) == (0, 0)
    changed = specs[0].model_copy(update={"processing_days": 20})
    with db.unit_of_work() as session:
        assert import_procedures(session, [changed]) == (0, 1)
    with db.unit_of_work() as session:
        assert get_procedure(session, "1.009794").processing_days == 20
        assert get_procedure(session, "2.001610") == specs[1]
        assert get_procedure(session, "9.999999") is None
        assert [s.code for s in list_procedures(session)] == ["1.001193", "1.009794", "2.001610"]


def test_an_entry_changed_in_the_same_session_is_seen_at_once(db):
    specs = load_catalogue(EXAMPLE)
    with db.unit_of_work() as session:
        import_procedures(session, specs)
        assert get_procedure(session, "1.009794").processing_days == specs[0].processing_days
        import_procedures(session, [specs[0].model_copy(update={"processing_days": 20})])
        assert get_procedure(session, "1.009794").processing_days == 20
        session.expire_all()  # loaded again from the database
        assert get_procedure(session, "1.009794").processing_days == 20


def test_an_entry_changed_behind_the_gateway_is_seen_by_the_next_session(db):
    # Entries are built once per process and reused while their row is unchanged: a change made by another process
    # (here a plain UPDATE) is seen by the next unit of work, never by one that already read the entry.
    specs = load_catalogue(EXAMPLE)
    with db.unit_of_work() as session:
        import_procedures(session, specs)
    with db.unit_of_work() as session:
        first = get_procedure(session, "1.009794")
        assert get_procedure(session, "1.009794") is first
    with db.unit_of_work() as session:
        assert get_procedure(session, "1.009794") is first  # unchanged: not built again
    with db.engine.begin() as connection:
        connection.execute(text("UPDATE procedures SET processing_days = 21 WHERE code = '1.009794'"))
    with db.unit_of_work() as session:
        assert get_procedure(session, "1.009794").processing_days == 21
    with db.engine.begin() as connection:
        connection.execute(text("DELETE FROM procedures WHERE code = '1.009794'"))
    with db.unit_of_work() as session:
        assert get_procedure(session, "1.009794") is None


def test_round_trip_keeps_every_field(db):
    spec = ProcedureSpec.model_validate(
        entry(agencies=["000.00.24.H38", "000.00.35.H38"], transfer_shares={"000.00.24.H38": 7, "000.00.35.H38": 3})
    )
    with db.unit_of_work() as session:
        import_procedures(session, [spec])
    with db.unit_of_work() as session:
        assert get_procedure(session, spec.code) == spec


def test_import_refuses_duplicates_given_directly(db):
    spec = ProcedureSpec.model_validate(ENTRY)
    with db.unit_of_work() as session, pytest.raises(CatalogueError, match=r"duplicate procedure code '1\.009794'"):
        import_procedures(session, [spec, spec])
