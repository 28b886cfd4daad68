"""One source, its copies checked: ``pipeline/contract.py`` against the
expectations, the demo generator, the warehouse tables the stages build,
docs/ARCHITECTURE.md and docs/contract.md."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pipeline import contract
from pipeline.config import PROJECT_ROOT, load_config
from pipeline.contract import TABLES, WAREHOUSE
from pipeline.warehouse import connect

SUITES = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in (PROJECT_ROOT / "expectations").glob("*.json")}


def expectations_of(table: str, kind: str) -> list[dict]:
    return [check["expectation"]["kwargs"] for check in SUITES[table]["checks"] if check["expectation"]["type"] == kind]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_expectations_require_the_contracts_required_columns(table):
    (kwargs,) = expectations_of(table, "expect_table_columns_to_match_set")
    assert kwargs["column_set"] == [c.name for c in TABLES[table].required_columns]


@pytest.mark.parametrize("table", sorted(TABLES))
def test_expectations_value_sets_are_the_contracts(table):
    literal = {k["column"]: tuple(k["value_set"]) for k in expectations_of(table, "expect_column_values_to_be_in_set")
               if isinstance(k["value_set"], list)}
    allowed = {c.name: c.allowed for c in TABLES[table].columns if c.allowed}
    assert literal == allowed


@pytest.mark.parametrize("table", sorted(TABLES))
def test_expectations_ranges_are_the_contracts(table):
    numeric = {}
    for kwargs in expectations_of(table, "expect_column_values_to_be_between"):
        bounds = {key: kwargs.get(key) for key in ("min_value", "max_value")}
        bounds = {key: value for key, value in bounds.items() if isinstance(value, (int, float))}
        if bounds:
            numeric[kwargs["column"]] = (bounds.get("min_value"), bounds.get("max_value"), bool(kwargs.get("strict_min")))
    ranged = {c.name: (c.minimum, c.maximum, c.exclusive_minimum) for c in TABLES[table].columns
              if c.minimum is not None or c.maximum is not None}
    assert numeric == ranged


def test_every_expectation_names_a_contract_column():
    for table, suite in SUITES.items():
        for check in suite["checks"]:
            column = check.get("column")
            if table in TABLES and column is not None:
                assert column in TABLES[table].column_names, check["id"]


def test_generated_documents_are_fresh():
    stale = contract.write_docs(PROJECT_ROOT, check=True)
    assert not stale, f"{', '.join(map(str, stale))} stale: run `benzo-outcomes docs`"


def test_generated_documents_are_detected_stale(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "expectations").mkdir()
    for name in SUITES:
        (tmp_path / "expectations" / f"{name}.json").write_text(
            (PROJECT_ROOT / "expectations" / f"{name}.json").read_text(encoding="utf-8"), encoding="utf-8")
    architecture = (PROJECT_ROOT / contract.ARCHITECTURE_DOC).read_text(encoding="utf-8")
    (tmp_path / contract.ARCHITECTURE_DOC).write_text(architecture.replace("supply_ending", "ending"), encoding="utf-8")
    assert contract.write_docs(tmp_path, check=True) == [tmp_path / contract.CONTRACT_DOC, tmp_path / contract.ARCHITECTURE_DOC]
    assert contract.write_docs(tmp_path) and contract.write_docs(tmp_path, check=True) == []
    (tmp_path / contract.ARCHITECTURE_DOC).write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        contract.write_docs(tmp_path, check=True)


def test_contract_md_lists_every_column_value_and_check():
    text = (PROJECT_ROOT / contract.CONTRACT_DOC).read_text(encoding="utf-8")
    for table in TABLES.values():
        for column in table.columns:
            assert f"| {column.name} | {column.duckdb_type} |" in text
    for values in (contract.SEXES, contract.INDICATIONS, contract.CODE_SYSTEMS):
        assert ", ".join(values) in text
    for suite in SUITES.values():
        for check in suite["checks"]:
            assert f"`{check['id']}`" in text


def test_demo_model_categories_are_the_contracts():
    from pipeline.demo import model

    assert model.SEX_CODES == contract.SEXES and len(model.SEX_PROBS) == len(contract.SEXES)
    assert model.INDICATIONS == contract.INDICATIONS and len(model.INDICATION_PROBS) == len(contract.INDICATIONS)
    assert set(model.START_LEVEL_PROBS) == set(model.NOISE_CODES) == set(contract.INDICATIONS)
    systems = {system for _, system in (*model.DEPENDENCE_CODES, *model.MISUSE_CODES, *model.NOISE_CODES.values())}
    assert systems <= set(contract.CODE_SYSTEMS)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A small demo extract, ingested and transformed (validation's quarantine is empty: staging keeps all)."""
    from pipeline import transform
    from pipeline.demo.generator import generate
    from pipeline.ingest.native import load_native

    root = tmp_path_factory.mktemp("contract")
    cfg = load_config()
    generate(root / "demo", persons=400, seed=5, config=cfg)
    con = connect(root / "warehouse.duckdb")
    load_native(con, root / "demo", cfg)
    transform.run(con, cfg)
    yield root, con
    con.close()


def test_demo_values_are_within_the_contract(built):
    root, _ = built
    for table in TABLES.values():
        with open(root / "demo" / f"{table.name}.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        assert rows and set(rows[0]) <= set(table.column_names), table.name
        for column in table.columns:
            if column.allowed:
                assert {row[column.name] for row in rows} - {""} <= set(column.allowed), (table.name, column.name)


@pytest.mark.parametrize("table", sorted(WAREHOUSE))
def test_warehouse_tables_have_the_contracts_columns(built, table):
    _, con = built
    actual = [row[0] for row in con.execute(f"select column_name from (describe {table})").fetchall()]
    assert actual == list(WAREHOUSE[table].columns)


def test_raw_tables_have_the_contracts_types(built):
    _, con = built
    for table in TABLES.values():
        types = dict(con.execute(f"select column_name, column_type from (describe raw_{table.name})").fetchall())
        assert {c.name: types[c.name] for c in table.columns} == {c.name: c.duckdb_type for c in table.columns}
