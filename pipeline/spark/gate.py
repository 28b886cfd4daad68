"""The identifier gate on Spark: every value of every text column (extra columns
included), as Spark SQL, one aggregate pass per table.

Nothing here is a second copy of the gate: the patterns, the rules that apply to
a column, the value expressions, the per-rule aggregates, the share thresholds,
the column-name rules and the refusal message all come from
``pipeline/privacy/gate.py`` (the DuckDB gate). What this module adds:

* **DuckDB SQL -> Spark SQL** with sqlglot (``to_spark_sql``): the gate's SQL
  pieces (value expressions, checksum confirmations, aggregates) are written in
  DuckDB's dialect and transpiled here at run time.
* **Patterns that cannot blow up under Java's backtracking matcher**
  (``java_safe``): DuckDB runs the gate's patterns with RE2 (a DFA: linear
  time whatever the pattern); Spark's ``rlike`` / ``regexp_extract`` are
  ``java.util.regex``, which backtracks. Every unbounded quantifier
  (``+``, ``*``, ``{n,}``) is rewritten to a bounded one (``{1,64}``, ``{0,64}``,
  ``{n,64}``), so each start position costs at most a bounded amount of work and
  a field is judged in time linear in its length (a 1 MB field in well under a
  second per pattern; ``tests/test_spark_checks.py`` measures it). An unanchored
  pattern still finds an identifier inside a longer run (it matches the run's
  last 64 characters); an anchored one (``^...$``, e.g. a whole value shaped
  like "SURNAME, Firstname") no longer matches a value with a single word or
  space run longer than 64 characters -- no name, date or code has one.

Passes: one aggregate query per table counts, per column, the rows whose value
matches the union of the column's rules, matching each distinct value once
(``candidate_rows``; the clean case ends here). Only when some
column has candidates, a second aggregate query computes, for those columns,
the counts ``pipeline.privacy.gate.judge_counts`` judges (the same shares and
thresholds as DuckDB). A refusal is ``PrivacyError`` (CLI exit code 3) with the
same one line as the DuckDB gate: file, column, rule, rows -- never a value.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping, Sequence

import sqlglot
from sqlglot import exp

from pipeline.contract import TABLES
from pipeline.privacy import gate as duck
from pipeline.privacy.gate import Finding

# The bound every unbounded quantifier gets on Java's matcher.
QUANTIFIER_BOUND = 64

_ESCAPE_WITH_BRACES = re.compile(r"\\[xpPN]\{[^}]*\}")


_LEADING_RUN = re.compile(r"(\[(?:\\.|[^\]\\])+\]|\\[dwsDWS])(\+|\{[1-9]\d*,\}|\{[1-9]\d*,\d+\})")


@functools.lru_cache(maxsize=None)
def java_safe(pattern: str, bound: int = QUANTIFIER_BOUND) -> str:
    r"""``pattern`` made safe for Java's backtracking matcher: every unbounded quantifier
    bounded (``_bounded``), and an alternative that opens with a run of one character
    class (``[A-Za-z0-9._%+'-]+@...``, a word) may start only where that run starts
    (a negative lookbehind) and reads the run possessively: without that, every
    position inside a long run would be tried again, each costing up to the bound.

    >>> print(java_safe(r"[a-z]+@x|(?i:(\w{2,}\s)y)|^\d+$"))
    (?<![a-z])[a-z]++@x|(?<!\w)(?i:(\w{2,}+\s)y)|^\d{1,64}$
    """
    alternatives = []
    for alternative in duck._top_level_alternatives(pattern):
        flags = re.match(r"\(\?[a-z]+\)", alternative)
        head = flags.group(0) if flags else ""
        body = alternative[len(head):]
        opening = re.match(r"(\((\?[a-z]*:)?)*", body).group(0)
        run = _LEADING_RUN.match(body, len(opening))
        if run and "|" not in body[:run.start()]:
            # starts only where the run starts; the run itself is read possessively, whole
            # (exact: the element after it never matches the run's class -- '@' after an
            # e-mail's local part, a space or punctuation after a word)
            alternatives.append(f"{head}(?<!{run.group(1)}){opening}{run.group(1)}{run.group(2)}+"
                                f"{_bounded(body[run.end():], bound)}")
        else:
            alternatives.append(head + _bounded(body, bound))
    return "|".join(alternatives)


def _bounded(pattern: str, bound: int = QUANTIFIER_BOUND) -> str:
    r"""``pattern`` with every unbounded quantifier bounded (see the module docstring).

    Escapes (``\+``, ``\x{200B}``, ``\p{Z}``) and character classes are left alone.

    >>> print(_bounded(r"[a-z]+@[a-z-]+(\.[a-z]+)*\.[a-z]{2,}"))
    [a-z]{1,64}@[a-z-]{1,64}(\.[a-z]{1,64}){0,64}\.[a-z]{2,64}
    >>> print(_bounded(r"^\+?\d+$|[\t\x{200B}*+]+ \p{Z}*(?:x)"))
    ^\+?\d{1,64}$|[\t\x{200B}*+]{1,64} \p{Z}{0,64}(?:x)
    """
    out: list[str] = []
    i, n, in_class = 0, len(pattern), False
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            braced = _ESCAPE_WITH_BRACES.match(pattern, i)
            piece = braced.group(0) if braced else pattern[i:i + 2]
            out.append(piece)
            i += len(piece)
            continue
        if in_class:
            out.append(ch)
            if ch == "]":
                in_class = False
            i += 1
            continue
        if ch == "[":
            out.append(ch)
            in_class = True
            i += 1
            # a "]" right after "[" or "[^" is a literal
            if pattern[i:i + 1] == "^":
                out.append("^")
                i += 1
            if pattern[i:i + 1] == "]":
                out.append("]")
                i += 1
            continue
        if ch in "+*" and out and out[-1] != "(" and not (out[-1] == "?" and len(out) > 1 and out[-2] == "("):
            out.append("{1,%d}" % bound if ch == "+" else "{0,%d}" % bound)
            i += 1
            continue
        if ch == "{":
            counted = re.match(r"\{(\d+),\}", pattern[i:])
            if counted:
                low = int(counted.group(1))
                out.append("{%d,%d}" % (low, max(low, bound)))
                i += len(counted.group(0))
                continue
        out.append(ch)
        i += 1
    return "".join(out)


_REGEX_FUNCTIONS = (exp.RegexpLike, exp.RegexpExtract, exp.RegexpReplace, exp.RegexpILike, exp.RegexpSplit)


@functools.lru_cache(maxsize=4096)
def to_spark_sql(duckdb_sql: str) -> str:
    r"""A DuckDB SQL expression as Spark SQL (sqlglot), every regular expression made ``java_safe``.

    >>> print(to_spark_sql("count_if(regexp_matches(cast(\"a b\" as varchar), '^\d+'))"))
    COUNT_IF(CAST(`a b` AS STRING) RLIKE '^\\d{1,64}')
    >>> print(to_spark_sql("strlen(x) >= 9"))
    LENGTH(x) >= 9
    """
    tree = sqlglot.parse_one(duckdb_sql, read="duckdb")

    def rewrite(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() == "strlen":
            return exp.Length(this=node.expressions[0])
        if isinstance(node, _REGEX_FUNCTIONS):
            pattern = node.args.get("expression")
            if isinstance(pattern, exp.Literal) and pattern.is_string:
                node.set("expression", exp.Literal.string(java_safe(pattern.this)))
        return node

    return tree.transform(rewrite).sql(dialect="spark")


def _spark_type_names(df) -> list[str]:
    return [field.dataType.simpleString().upper() for field in df.schema.fields]


def _value_counts(values, columns: int):
    """The (column index ``c``, value ``v``, rows ``n``) of every non-NULL value of ``_v0.._v<columns-1>``:
    the table's values, each distinct one once (Spark's partial aggregation shrinks them before the
    shuffle: codes, dates, drugs, regions repeat)."""
    from pyspark.sql import functions as F

    pairs = F.array(*[F.struct(F.lit(i).alias("c"), F.col(f"_v{i}").cast("string").alias("v"))
                      for i in range(columns)])
    return (values.select(F.inline(pairs)).where("v is not null").groupBy("c", "v")
            .agg(F.count(F.lit(1)).alias("n")))


def _matches_union(unions: Mapping[int, str]) -> str:
    """Spark SQL: whether ``v`` matches the union of its column ``c``'s rules (``unions``: c -> pattern)."""
    return "case c " + " ".join(f"when {i} then {to_spark_sql(f'regexp_matches(v, {duck._literal(union)})')}"
                                for i, union in unions.items()) + " end"


def candidate_rows(values, unions: Sequence[str]) -> list[int]:
    """Per column ``_v<i>`` of ``values``, how many rows hold a value matching ``unions[i]``.

    Java's regex engine is far slower than DuckDB's RE2 on these unions (every alternative tried at
    every position), so each *distinct* value is matched once (``_value_counts``), and the matching
    pairs' row counts summed per column. One Spark job for the table, whatever the number of columns
    and rules.
    """
    from pyspark.sql import functions as F

    if not unions:
        return []
    match = _matches_union(dict(enumerate(unions)))
    rows = (_value_counts(values, len(unions)).groupBy("c")
            .agg(F.expr(f"sum(if({match}, n, 0))").alias("hits")).collect())
    hits = {int(row["c"]): int(row["hits"] or 0) for row in rows}
    return [hits.get(i, 0) for i in range(len(unions))]


def scan_dataframe(df, table: str, file_name: str | None = None, columns: Sequence[str] | None = None,
                   labels: Mapping[str, str] | None = None, extra: bool = False) -> list[Finding]:
    """Findings from every value of ``columns`` (default: all) of the Spark DataFrame ``df``,
    judged as columns of contract table ``table`` (see ``pipeline.privacy.gate.scan_table``)."""
    from pyspark.sql import functions as F

    file_name = file_name or table
    columns = list(df.columns if columns is None else columns)
    if not columns:
        return []
    labels = dict(labels or {})
    applicable = {c: duck._applicable(table, c, extra) for c in columns}
    unions = {c: duck._union(rules) for c, rules in applicable.items()}
    # the value each rule reads (numbers, dates, booleans of contract columns are partly skipped, as in DuckDB)
    values = df.select(*[F.expr(to_spark_sql(duck._value_sql(table, c, extra))).alias(f"_v{i}")
                         for i, c in enumerate(columns)])
    # pass 1: per column, the rows whose value matches the union of its rules -- each distinct value
    # matched once (one job: the (column, value) pairs counted, then matched), see candidate_rows
    first = candidate_rows(values, [unions[c] for c in columns])
    flagged = [(i, c) for i, c in enumerate(columns) if first[i]]
    if not flagged:
        return []
    # pass 2: the aggregates judge_counts reads, for the flagged columns only (over the rows: one row holds
    # every flagged column, so each aggregate is evaluated once per row, not once per column and row)
    parts: list[Any] = []
    spans: list[tuple[int, str, int, int]] = []
    for i, column in flagged:
        column_parts = duck.judge_parts(f'"_v{i}"', unions[column], applicable[column])
        # the union (each rule's guard) is matched once per value, not once per rule
        candidate = f'regexp_matches("_v{i}", {duck._literal(unions[column])})'
        column_parts = [p.replace(candidate, f'"_c{i}"') for p in column_parts]
        spans.append((i, column, len(parts), len(parts) + len(column_parts)))
        parts += [F.expr(to_spark_sql(p)) for p in column_parts]
    guarded = values.select("*", *[F.expr(to_spark_sql(f'regexp_matches("_v{i}", {duck._literal(unions[c])})'))
                                   .alias(f"_c{i}") for i, c in flagged])
    second = guarded.agg(*parts).collect()[0]
    findings: list[Finding] = []
    for i, column, start, end in spans:
        row = [second[k] if second[k] is not None else 0 for k in range(start, end)]
        findings += duck.judge_counts(file_name, column, labels.get(column, column), applicable[column], row)
    return findings


def table_findings(df, table: str, file_name: str | None = None, header: bool = True) -> list[Finding]:
    """Header findings (names, types) then value findings for a DataFrame read as contract table ``table``
    (``pipeline.privacy.gate.check_relation`` on Spark)."""
    columns = list(df.columns)
    file_name = file_name or table
    findings = duck.check_header(table, file_name, columns, _spark_type_names(df)) if header else []
    labels = {c: duck.printable_column(c, i) for i, c in enumerate(columns)}
    contract = TABLES.get(table)
    expected = {c.name for c in contract.columns} if contract else set()
    in_contract = [c for c in columns if c.strip().lower() in expected]
    extras = [c for c in columns if c.strip().lower() not in expected]
    findings += scan_dataframe(df, table, file_name, in_contract, labels)
    findings += scan_dataframe(df, table, file_name, extras, labels, extra=True)
    return findings


def findings(spark, tables: Mapping[str, str], file_names: Mapping[str, str] | None = None) -> list[Finding]:
    """Every finding in ``tables`` (contract table -> Spark table or view name)."""
    found: list[Finding] = []
    for table, name in tables.items():
        label = (file_names or {}).get(table, table)
        found += table_findings(spark.table(name), table, label)
    return found


def check_tables(spark, tables: Mapping[str, str], config=None, file_names: Mapping[str, str] | None = None) -> None:
    """The identifier gate over Spark tables (contract table -> Spark table or view name).

    Raises ``PrivacyError`` (CLI exit code 3) with the DuckDB gate's one line -- file
    (``file_names[table]``, else the table's name), column, rule, rows, never a value
    -- or returns None. ``config`` is accepted for the engine seam's uniform signature;
    the gate has no settings (its thresholds are policy, docs/privacy.md).
    """
    duck.refuse(findings(spark, tables, file_names))


# ---------------------------------------------------------------- OMOP CDM


def cdm_findings(df, cdm_table: str, label: str) -> list[Finding]:
    """``pipeline.privacy.gate.check_cdm_table`` on Spark: every ``*_source_value`` and free-text
    column of a clinical CDM table by value, any column outside CDM v5.4 by name, type and value."""
    standard = duck.CDM_CLINICAL_COLUMNS.get(cdm_table)
    if standard is None:
        return []
    columns, types = list(df.columns), _spark_type_names(df)
    labels = {c: duck.printable_column(c, i) for i, c in enumerate(columns)}
    text = [c for c in columns
            if c.strip().lower().endswith("_source_value") or c.strip().lower() in duck.CDM_TEXT_COLUMNS]
    others = [(i, c) for i, c in enumerate(columns) if c.strip().lower() not in standard]
    found: list[Finding] = []
    for position, column in others:
        kind = duck.identifier_kind_of_name(column)
        if duck._IDENTIFIER_AS_NAME.search(str(column)):
            found.append(Finding(label, labels[column], "a column name that looks like an identifier",
                                 "gate.name.value_like", None))
        elif kind:
            found.append(Finding(label, labels[column], kind[0], kind[1], None))
        elif types[position].startswith(duck._DATE_TYPES):
            found.append(Finding(label, labels[column], "a date-typed column outside the CDM (possible date of birth)",
                                 "gate.name.extra_date_column", None))
    found += scan_dataframe(df, cdm_table, label, text, labels)
    found += scan_dataframe(df, cdm_table, label, [c for _, c in others], labels, extra=True)
    return found


def refuse_cdm_identifiers(spark, tables: Mapping[str, tuple[str, Any]]) -> None:
    """The gate over an OMOP CDM on Spark: ``tables`` maps CDM table -> (label, DataFrame or
    Spark table name); raises ``PrivacyError`` (one line, no value) on any finding."""
    found: list[Finding] = []
    for cdm_table, (label, source) in tables.items():
        df = spark.table(source) if isinstance(source, str) else source
        found += cdm_findings(df, cdm_table, label)
    duck.refuse(found)
