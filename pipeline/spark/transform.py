"""Transform on Spark: the transform's own SQL files, transpiled from DuckDB's dialect with sqlglot.

There is no second copy of the logic: ``pipeline.transform.sql_files()`` lists
the files (whatever they are split into), ``sql_parameters`` fills them exactly
as on DuckDB, and :func:`to_spark` turns each statement into Spark SQL. What
sqlglot does not map by itself is rewritten here, as AST transforms:

* ``arg_min_null`` / ``arg_max_null`` (DuckDB: the value at the least/greatest
  key, NULL values kept) -> Spark's ``min_by`` / ``max_by``, which keep NULL
  values too and skip only NULL keys, as DuckDB's ``*_null`` forms do.
* ``x / y`` -> IEEE division (DuckDB's ``x / 0`` is inf, -inf or nan; Spark's an error or NULL).
* ``isfinite(x)`` -> ``not isnan(x) and abs(x) <> double('inf')`` (NULL stays NULL).
* ``create [or replace] [temp] table t as ...`` -> the query written as
  Parquet under the Spark warehouse folder and a view ``t`` over it
  (``pipeline.spark.tables``): what every Spark has, local or on a cluster,
  with or without a metastore (REPLACE TABLE ... AS SELECT needs Delta).
* DuckDB's star modifiers (``t.* exclude (a)``, ``* replace (f(a) as a)``) ->
  the explicit column list, read from Spark's analysis of the relation (the
  star alone, over the same FROM, with the CTEs defined before it; nothing runs).

>>> to_spark("create or replace table t as select arg_min_null(x, k) as x from s group by g")
[Statement(target='t', sql='SELECT MIN_BY(x, k) AS x FROM s GROUP BY g')]
>>> to_spark("select cast(b as date) - cast(a as date) as days, a + interval 3 day as later from s")[0].sql
"SELECT DATEDIFF(DAY, CAST(a AS DATE), CAST(b AS DATE)) AS days, a + INTERVAL '3' DAY AS later FROM s"

"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from pipeline.config import Config

if TYPE_CHECKING:
    from pipeline.spark.tables import SparkTables

_NULL_KEEPING = {"ARG_MIN_NULL": "ArgMin", "ARG_MAX_NULL": "ArgMax"}


def _functions(node):
    """DuckDB-only functions -> their Spark equivalents."""
    from sqlglot import exp

    if isinstance(node, exp.Div):  # DuckDB: x / 0 is IEEE (inf, -inf, nan); Spark: an error (ANSI) or NULL
        x, y = node.this, node.expression
        ieee = exp.Mul(this=exp.Cast(this=x.copy(), to=exp.DataType.build("double")),
                       expression=exp.Anonymous(this="double", expressions=[exp.Literal.string("inf")]))
        return exp.Case(ifs=[exp.If(this=exp.EQ(this=y.copy(), expression=exp.Literal.number(0)), true=ieee)],
                        default=exp.Anonymous(this="try_divide", expressions=[x, y]))
    if isinstance(node, exp.Anonymous) and str(node.this).upper() == "ISFINITE":
        value = node.expressions[0]
        return exp.paren(exp.and_(exp.not_(exp.Anonymous(this="isnan", expressions=[value.copy()])),
                                  exp.NEQ(this=exp.Abs(this=value.copy()),
                                          expression=exp.Anonymous(this="double", expressions=[exp.Literal.string("inf")]))))
    if isinstance(node, exp.Anonymous) and str(node.this).upper() in _NULL_KEEPING:
        value, key = node.expressions[:2]
        return getattr(exp, _NULL_KEEPING[str(node.this).upper()])(this=value, expression=key)
    return node


class Statement(NamedTuple):
    """One Spark statement: a query whose result becomes table ``target`` (Parquet + a view), or SQL to run."""

    target: str | None
    sql: str


def _statements(tree) -> list[Statement]:
    """One DuckDB statement -> what Spark runs for it: ``create [or replace] [temp] table t as q``
    materialises q as table t; anything else runs as it is."""
    from sqlglot import exp

    if isinstance(tree, exp.Create) and str(tree.args.get("kind", "")).upper() == "TABLE" and tree.expression is not None:
        name = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        return [Statement(name.name, tree.expression.sql(dialect="spark"))]
    return [Statement(None, tree.sql(dialect="spark"))]


# Window functions Spark refuses a frame for (DuckDB ignores the frame of a named window for them).
_FRAMELESS = ("Lag", "Lead", "RowNumber", "Rank", "DenseRank", "Ntile", "PercentRank", "CumeDist")


def _windows(node):
    """Named windows inlined (Spark refuses a frame on lag/row_number, which DuckDB ignores);
    ``count(distinct x) over w`` -> ``size(collect_set(x) over w)`` (Spark has no DISTINCT window
    aggregate; both skip NULLs); a RANGE frame of ``to_days(n)`` -> ``INTERVAL n DAY``."""
    from sqlglot import exp
    from sqlglot.optimizer.simplify import simplify

    if not isinstance(node, exp.Select):
        return node
    named = {w.this.name.lower(): w for w in node.args.get("windows") or []}
    for window in list(node.find_all(exp.Window)):
        if window.find_ancestor(exp.Select) is not node:
            continue
        alias = window.args.get("alias")
        if alias is not None and alias.name.lower() in named:
            definition = named[alias.name.lower()]
            window.set("alias", None)
            for key in ("partition_by", "order", "spec"):
                value = definition.args.get(key)
                window.set(key, value.copy() if hasattr(value, "copy") else [v.copy() for v in value] if value else None)
        if type(window.this).__name__ in _FRAMELESS:
            window.set("spec", None)
        spec = window.args.get("spec")
        if spec is not None:
            for side in ("start", "end"):
                bound = spec.args.get(side)
                if isinstance(bound, exp.ToDays):
                    days = simplify(bound.this.copy())
                    spec.set(side, exp.Interval(this=exp.Literal.string(str(days.name)), unit=exp.var("DAY")))
        function = window.this
        if isinstance(function, exp.Count) and isinstance(function.this, exp.Distinct):
            collected = window.copy()
            collected.set("this", exp.Anonymous(this="collect_set", expressions=[function.this.expressions[0].copy()]))
            window.replace(exp.Anonymous(this="size", expressions=[collected]))
    if named:
        node.set("windows", None)
    return node


def _plain_ctes(node):
    """``with x as materialized (...)``: DuckDB's hint to compute a CTE once; Spark's parser has no
    such keyword (it decides reuse itself), so the CTE is written without it.

    >>> to_spark("with a as materialized (select 1 as x) select x from a")[0].sql
    'WITH a AS (SELECT 1 AS x) SELECT x FROM a'
    """
    from sqlglot import exp

    if isinstance(node, exp.CTE) and node.args.get("materialized") is not None:
        node.set("materialized", None)
    return node


def _asof_joins(node):
    """``a asof [left] join b on a.x >= b.y [and a.k = b.k ...]`` (DuckDB) -> a join on the interval
    [b.y, next b.y) of each b row, the next one found with ``lead`` over b (Spark has no ASOF join).

    Only this shape (one ``>=`` or ``>``, the right side a column of b, equalities beside it) is
    rewritten; any other ASOF join is left for Spark to refuse, naming it.
    """
    from sqlglot import exp

    if not (isinstance(node, exp.Join) and str(node.args.get("method") or "").upper() == "ASOF"):
        return node
    right = node.this
    alias = right.alias_or_name
    conditions = list(node.args["on"].flatten()) if isinstance(node.args.get("on"), exp.And) else [node.args.get("on")]
    inequality = [c for c in conditions if isinstance(c, (exp.GTE, exp.GT)) and isinstance(c.expression, exp.Column)
                  and c.expression.table == alias]
    equalities = [c for c in conditions if isinstance(c, exp.EQ)]
    if len(inequality) != 1 or len(inequality) + len(equalities) != len(conditions):
        return node
    bound = inequality[0]
    key = bound.expression.name
    partition = [c.expression.copy() if isinstance(c.expression, exp.Column) and c.expression.table == alias
                 else c.this.copy() for c in equalities]
    for column in partition:
        column.set("table", None)
    inner = exp.select("*", exp.alias_(
        exp.Window(this=exp.Anonymous(this="lead", expressions=[exp.column(key)]), partition_by=partition or None,
                   order=exp.Order(expressions=[exp.Ordered(this=exp.column(key), nulls_first=False)])),
        "_asof_next")).from_(exp.Table(this=right.this.copy()) if isinstance(right, exp.Table) else right.copy())
    upper_op = exp.LT if isinstance(bound, exp.GTE) else exp.LTE
    upper = exp.or_(upper_op(this=bound.this.copy(), expression=exp.column("_asof_next", table=alias)),
                    exp.column("_asof_next", table=alias).is_(exp.null()))
    joined = exp.Join(this=exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias))),
                      side=node.args.get("side"), on=exp.and_(*[c.copy() for c in conditions], upper))
    return joined


def _date_arithmetic(node):
    """``cast(b as date) - cast(a as date)`` -> DATEDIFF (no schema needed: both sides say they are dates)."""
    from sqlglot import exp

    if isinstance(node, exp.Sub):
        left, right = node.this, node.expression
        if all(isinstance(side, (exp.Cast, exp.TryCast)) and side.to.is_type("date") for side in (left, right)):
            return exp.DateDiff(this=left, expression=right, unit=exp.var("DAY"))
    return node


def _typed_date_differences(tree, schema: dict[str, dict[str, str]]):
    """``date - date`` is a day count in DuckDB, an INTERVAL in Spark: every difference whose two sides
    are dates (types inferred by sqlglot through the CTEs from the tables' Spark schemas) -> DATEDIFF.

    Returns the qualified tree (identifiers quoted, columns qualified; the same query), or the tree
    unchanged when sqlglot cannot type it.
    """
    from sqlglot import exp
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify

    if not any(isinstance(node, exp.Sub) for node in tree.find_all(exp.Sub)):
        return tree
    try:
        typed = annotate_types(qualify(tree.copy(), schema=schema, dialect="duckdb", validate_qualify_columns=False),
                               schema=schema, dialect="duckdb")
    except Exception:  # noqa: BLE001 - untyped: left to the patterns _date_arithmetic knows
        return tree

    def is_date(node) -> bool:
        return node.type is not None and node.type.is_type("date")

    for sub in list(typed.find_all(exp.Sub)):
        if is_date(sub.this) and is_date(sub.expression):
            sub.replace(exp.DateDiff(this=sub.this.copy(), expression=sub.expression.copy(), unit=exp.var("DAY")))
    return typed


def _star_modifiers(star) -> bool:
    return bool(star.args.get("except_") or star.args.get("replace") or star.args.get("rename"))


def _expand_stars(tree, columns_of: Callable[[str], list[str]]):
    """Replace every star with DuckDB modifiers by the explicit columns it stands for (see module docstring)."""
    from sqlglot import exp

    def post_order(node):  # children before parents, siblings in order: earlier CTEs are expanded first
        for child in node.iter_expressions():
            yield from post_order(child)
        yield node

    for select in [node for node in post_order(tree) if isinstance(node, exp.Select)]:
        projections = list(select.expressions)
        if not any(isinstance(p, exp.Star) and _star_modifiers(p)
                   or isinstance(p, exp.Column) and isinstance(p.this, exp.Star) and _star_modifiers(p.this)
                   for p in projections):
            continue
        with_ = select.root().find(exp.With)
        enclosing = select.find_ancestor(exp.CTE)
        prior = []
        if with_ is not None:
            for cte in with_.expressions:
                if cte is enclosing:
                    break
                prior.append(cte.copy())
        expanded = []
        for projection in projections:
            star = projection if isinstance(projection, exp.Star) else (
                projection.this if isinstance(projection, exp.Column) and isinstance(projection.this, exp.Star) else None)
            if star is None or not _star_modifiers(star):
                expanded.append(projection)
                continue
            table = projection.table if isinstance(projection, exp.Column) else ""
            probe = select.copy()
            probe.set("with_", exp.With(expressions=prior) if prior else None)
            plain = exp.Column(this=exp.Star(), table=exp.to_identifier(table)) if table else exp.Star()
            probe.set("expressions", [plain])
            for key in ("where", "group", "having", "qualify", "order", "distinct"):
                probe.set(key, None)
            probe.set("limit", exp.Limit(expression=exp.Literal.number(0)))
            probe = probe.transform(_functions).transform(_date_arithmetic).transform(_windows).transform(_asof_joins)
            dropped = {c.name.lower() for c in star.args.get("except_") or []}
            replaced = {a.alias.lower(): a for a in star.args.get("replace") or []}
            for name in columns_of(probe.sql(dialect="spark")):
                key = name.lower()
                if key in dropped:
                    continue
                if key in replaced:
                    expanded.append(replaced[key].copy())
                else:
                    expanded.append(exp.Column(this=exp.to_identifier(name, quoted=True),
                                               table=exp.to_identifier(table) if table else None))
        select.set("expressions", expanded)
    return tree


def _source_tables(tree) -> list[str]:
    """Tables a statement reads (its CTEs' names excluded)."""
    from sqlglot import exp

    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    return sorted({t.name for t in tree.find_all(exp.Table) if t.name and t.name.lower() not in ctes})


def spark_schema(spark: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """{table: {column: Spark type}} of the tables that exist (sqlglot reads Spark's type names)."""
    schema = {}
    for name in names:
        if spark.catalog.tableExists(name):
            schema[name.lower()] = {f.name.lower(): f.dataType.simpleString() for f in spark.table(name).schema.fields}
    return schema


def to_spark(sql: str, columns_of: Callable[[str], list[str]] | None = None,
             schema_of: Callable[[list[str]], dict[str, dict[str, str]]] | None = None) -> list[Statement]:
    """DuckDB SQL (one or more statements) as Spark SQL statements.

    ``columns_of(spark_query) -> column names`` resolves star modifiers, ``schema_of(table names) ->
    {table: {column: type}}`` types date differences (see the module docstring); without them those
    constructs are left as they are.
    """
    import sqlglot

    out = []
    for tree in sqlglot.parse(sql, read="duckdb"):
        if tree is None:
            continue
        if columns_of is not None:
            tree = _expand_stars(tree, columns_of)
        if schema_of is not None:
            tree = _typed_date_differences(tree, schema_of(_source_tables(tree)))
        tree = (tree.transform(_functions).transform(_date_arithmetic).transform(_windows).transform(_asof_joins)
                .transform(_plain_ctes))
        out.extend(_statements(tree))
    return out


def run_script(spark: Any, sql: str, tables: "SparkTables") -> None:
    """Run DuckDB-dialect SQL on Spark, statement by statement (each one transpiled as the ones before
    it have run: star modifiers are resolved against the tables they built)."""
    import sqlglot

    for text in sqlglot.transpile(sql, read="duckdb", write="duckdb"):
        for statement in to_spark(text, columns_of=lambda query: spark.sql(query).columns,
                                  schema_of=lambda names: spark_schema(spark, names)):
            if statement.target is None:
                spark.sql(statement.sql)
            else:
                tables.write(statement.target, spark.sql(statement.sql))


_TABLE_MACRO = re.compile(r"create\s+or\s+replace\s+temp\s+macro\s+(\w+)\s*\(([^)]*)\)\s+as\s+table\s+(.*?);",
                          re.IGNORECASE | re.DOTALL)


def _collect_table_macros(sql: str, macros: dict) -> bool:
    """DuckDB table macros (``create temp macro f(a, b) as table <query>``) of a SQL file into ``macros``;
    True when the file holds nothing else (Spark has no table macros: their calls are expanded)."""
    code = re.sub(r"--[^\n]*", "", sql)
    found = _TABLE_MACRO.findall(code)
    for name, params, body in found:
        macros[name.lower()] = ([p.strip() for p in params.split(",") if p.strip()], body.strip())
    return bool(found) and not _TABLE_MACRO.sub("", code).strip()


def _expand_table_macros(sql: str, macros: dict) -> str:
    """Each call ``f('raw_x', 'x')`` of a collected table macro as a subquery: ``query_table(param)``
    becomes the named table, other uses of a parameter its literal, and the body's CTE names get the
    macro's name as prefix (no clash with the caller's ``final``).

    >>> m = {}
    >>> _collect_table_macros("create or replace temp macro v(t, l) as table with final as "
    ...                       "(select * from query_table(t) where x = l) select * from final;", m)
    True
    >>> _expand_table_macros("select * from v('raw_a', 'a')", m)
    "select * from (with v_final as (select * from raw_a where x = 'a') select * from v_final)"
    """
    for name, (params, body) in macros.items():
        ctes = re.findall(r"(?:\bwith\s+|,\s*)(\w+)\s+as\s*\(", body, flags=re.IGNORECASE)

        def call(match, params=params, body=body, ctes=ctes, name=name):
            args = [a.strip() for a in match.group(1).split(",")]
            text = body
            for cte in ctes:
                text = re.sub(rf"\b{cte}\b", f"{name}_{cte}", text)
            for param, arg in zip(params, args):
                text = re.sub(rf"query_table\(\s*{param}\s*\)", arg.strip("'\""), text)
                text = re.sub(rf"\b{param}\b", arg, text)
            return f"({text})"

        sql = re.sub(rf"\b{name}\(([^)]*)\)", call, sql, flags=re.IGNORECASE)
    return sql



def run(spark: Any, config: Config, tables: "SparkTables", files: list | None = None,
        params: dict | None = None, counts: bool = True) -> dict[str, int]:
    """The transform's SQL files on Spark; returns the row counts of the output tables (as on DuckDB)."""
    from pipeline.transform import OUTPUT_TABLES, sql_files, sql_parameters
    from pipeline.warehouse import render_sql

    params = sql_parameters(config) if params is None else params
    timings = {}
    macros: dict[str, tuple[list[str], str]] = {}
    for path in files if files is not None else sql_files():
        started = time.perf_counter()
        sql = render_sql(path.read_text(encoding="utf-8"), **params)
        if _collect_table_macros(sql, macros):
            continue  # a file of table macros defines nothing on Spark: its calls are expanded below
        run_script(spark, _expand_table_macros(sql, macros), tables)
        timings[path.name] = round(time.perf_counter() - started, 2)
    if not counts:
        return timings
    counts = " union all ".join(f"select '{name}' as name, count(*) as n from {name}" for name in OUTPUT_TABLES)
    summary = {row[0]: int(row[1]) for row in spark.sql(counts).collect()}
    row = spark.sql("select count_if(ascertained), count_if(dependence) from outcomes").collect()[0]
    summary.update({"cohort_ascertained": int(row[0]), "cohort_dependent": int(row[1])})
    return summary
