"""publish: exports against their own schema, headline.json, the report's headline, offline page, atomic swap."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from test_publish_fixtures import ATTRITION, build_warehouse, estimates_frame, sample_manifest

import pipeline.publish as publish
from pipeline.config import load_config
from pipeline.errors import PrivacyError
from pipeline.privacy import disclosure
from pipeline.publish import exports as exports_module
from pipeline.publish.report import ci_text, pct
from pipeline.warehouse import connect

TABLES = ("estimates", "cohort_attrition", "data_quality")


@pytest.fixture(autouse=True)
def no_static_figures(monkeypatch):
    """Chromium takes seconds to start; only test_static_figures renders images."""
    monkeypatch.setattr(publish, "write_static_figures", lambda figures, figures_dir: [])


def _publish(tmp_path: Path, con=None, config=None, **kwargs) -> Path:
    con = con or build_warehouse(connect(":memory:"))
    return publish.run(con, config or load_config(), tmp_path / "reports", sample_manifest(), kwargs.get("result"))


@pytest.fixture
def reports(tmp_path) -> Path:
    (tmp_path / "reports" / "quality").mkdir(parents=True)
    (tmp_path / "reports" / "quality" / "index.html").write_text("<p>GX data docs</p>")
    return _publish(tmp_path).parent


def test_run_writes_the_whole_set_and_replaces_quality(reports):
    names = {p.relative_to(reports).as_posix() for p in reports.rglob("*")}
    # the previous set's quality/ (GX Data Docs of an earlier run) is not carried over: publish writes its own
    assert "quality/index.html" not in names
    assert {"index.html", "plotly.min.js", "manifest.json", "quality/validation.json", "exports/headline.json",
            "exports/schema.json", "exports/schema_version.txt", "exports/data_dictionary.csv",
            "exports/data_dictionary.md"} <= names
    assert {f"exports/{t}.{ext}" for t in TABLES for ext in ("csv", "parquet")} <= names
    assert not list(reports.parent.glob("reports.tmp-*")) and not list(reports.parent.glob("reports.old-*"))
    manifest = json.loads((reports / "manifest.json").read_text())
    assert manifest["run_id"] == "fixture-run" and manifest["config"]["disclosure"]["min_cell_count"] == 11
    assert manifest["disclosure"]["min_cell_count"] == 11 and manifest["disclosure"]["rounding_base"] == 5


def test_exports_match_their_json_schema(reports):
    import jsonschema  # installed with great-expectations: missing is a failure
    schema = json.loads((reports / "exports" / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    bundle = {t: exports_module.records(pd.read_csv(reports / "exports" / f"{t}.csv")) for t in TABLES}
    bundle["headline"] = json.loads((reports / "exports" / "headline.json").read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(bundle), key=str)
    assert not errors, errors[:3]
    # the schema has teeth: a small count or an unknown column is refused
    bad = json.loads(json.dumps(bundle))
    bad["estimates"][0]["n"] = 5
    bad["cohort_attrition"][0]["extra"] = 1
    assert len(list(jsonschema.Draft202012Validator(schema).iter_errors(bad))) >= 2


def test_csv_and_parquet_hold_the_same_rows_with_stable_columns(reports):
    for table in TABLES:
        csv = pd.read_csv(reports / "exports" / f"{table}.csv")
        parquet = pd.read_parquet(reports / "exports" / f"{table}.parquet")
        assert list(csv.columns) == list(parquet.columns) == [c[0] for c in exports_module.DICTIONARY[table]]
        assert len(csv) == len(parquet) > 0
        assert (csv["schema_version"] == (reports / "exports" / "schema_version.txt").read_text().strip()).all()
    estimates = pd.read_csv(reports / "exports" / "estimates.csv")
    assert list(estimates.columns) == [
        "schema_version", "analysis", "estimand", "estimator", "population", "variable", "level", "time_days", "n",
        "events", "estimate_name", "estimate_type", "estimate", "ci_low", "ci_high", "method", "suppressed",
        "suppression_reason"]


def test_the_one_data_dictionary_describes_exactly_what_was_exported(reports):
    """Generated from the contracts; compared here with the files a real run exported."""
    exports = reports / "exports"
    dictionary = pd.read_csv(exports / "data_dictionary.csv", keep_default_na=False)
    assert (dictionary["meaning"].str.len() > 0).all()
    assert not list(exports.glob("*dictionary*"))[2:]  # one dictionary (csv + md), not one per export
    assert (exports / "data_dictionary.md").read_text().count("|") > 100

    def described(file: str, kind: str = "column") -> list[str]:
        return dictionary.loc[(dictionary["file"] == file) & (dictionary["kind"] == kind), "name"].tolist()

    for table in TABLES:
        assert described(f"{table}.csv / {table}.parquet") == list(pd.read_csv(exports / f"{table}.csv").columns)
    summarised = pd.read_csv(exports / "summarised_result.csv", dtype="string", keep_default_na=False)
    assert described("summarised_result.csv / .parquet") == list(summarised.columns)
    assert set(summarised["estimate_name"]) <= set(described("summarised_result.csv / .parquet", "estimate_name"))
    settings = pd.read_csv(exports / "settings.csv", dtype="string")
    patterns = [re.escape(name).replace(re.escape("<table>"), r"\w+").replace(re.escape("<section>_<setting>"), r"\w+")
                for name in described("settings.csv")]
    assert all(any(re.fullmatch(p, column) for p in patterns) for column in settings.columns)
    # every value of the estimates' explicit columns is described, and each name keeps its one type
    estimates = pd.read_csv(exports / "estimates.csv", keep_default_na=False)
    for kind in ("analysis", "estimand", "estimator", "population", "estimate_name", "estimate_type"):
        missing = set(estimates[kind]) - set(described("estimates.csv / estimates.parquet", kind))
        assert not missing, (kind, missing)
    types = dictionary[(dictionary["kind"] == "estimate_name")
                       & (dictionary["file"] == "estimates.csv / estimates.parquet")].set_index("name")["type"]
    pairs = estimates[["estimate_name", "estimate_type"]].drop_duplicates()
    assert all(types[name] == kind for name, kind in pairs.itertuples(index=False))
    headline = json.loads((exports / "headline.json").read_text())
    keys = {f"{block}.{group}.{key}" for block, groups in headline.items() if block != "config"
            for group, entry in groups.items() for key in entry} | {"config"}
    assert keys == set(described("headline.json", "key"))


def _is_published_count(value: int, k: int = 11, base: int = 5) -> bool:
    """0, or the middle of its band of ``base`` values, bands starting at k (docs/privacy.md)."""
    return value == 0 or (value >= k and (value - k) % base == (base - 1) // 2)


def test_headline_json_has_designs_shape_and_matches_the_reports_sentence(reports):
    headline = json.loads((reports / "exports" / "headline.json").read_text())
    assert set(headline) == {"headline", "complete_case", "config", "fixed_window_headline",
                             "fixed_window_complete_case"}
    for block in ("headline", "complete_case", "fixed_window_headline", "fixed_window_complete_case"):
        assert set(headline[block]) == {"gt_4_weeks", "le_4_weeks"}
        for entry in headline[block].values():
            assert set(entry) == {"estimate", "ci_low", "ci_high", "n", "n_assessed", "events", "method"}
    # headline.json is the estimates' headline rows, chosen by their explicit columns, as published
    estimates = pd.read_csv(reports / "exports" / "estimates.csv")
    for block, estimator in (("headline", "hajek_ipw"), ("complete_case", "complete_case")):
        for group in ("gt_4_weeks", "le_4_weeks"):
            row = estimates[(estimates["analysis"] == "headline") & (estimates["estimator"] == estimator)
                            & (estimates["level"] == group)].iloc[0]
            entry = headline[block][group]
            assert (entry["n"], entry["events"], entry["method"]) == (row["n"], row["events"], row["method"])
            assert entry["estimate"] == pytest.approx(row["estimate"], abs=1e-12)
            assert _is_published_count(entry["n"]) and _is_published_count(entry["events"])
    gt = headline["headline"]["gt_4_weeks"]
    assert gt["method"].startswith("primary: IPW (Hajek)")  # human text, shown as it is
    cc = headline["complete_case"]["gt_4_weeks"]
    assert cc["estimate"] == pytest.approx(cc["events"] / cc["n"])  # from the rounded counts
    assert gt["n_assessed"] == cc["n"]
    assert headline["config"] == load_config().to_dict()

    page = (reports / "index.html").read_text()
    sentence = re.search(r"<p id='headline-sentence'[^>]*>(.*?)</p>", page, re.S).group(1)
    le = headline["headline"]["le_4_weeks"]
    for entry in (gt, le):
        assert pct(entry["estimate"]) in sentence
        assert ci_text(entry["ci_low"], entry["ci_high"], 0.95) in sentence
        assert f"{entry['n']:,}" in sentence
    assert "Marriott" in page and "almost one-third" in page and "Rickels" in page and "43%" in page
    # the results were generated when the live manifest says, not when the page was built
    assert "results generated 2026-11-22T03:05:00+00:00" in page


def test_report_is_offline_one_local_plotly_and_no_cdn(reports):
    page = (reports / "index.html").read_text()
    assert "cdn" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page), "external resource in index.html"
    assert re.findall(r"<script[^>]*\bsrc=[\"']([^\"']+)", page) == ["plotly.min.js"]
    assert (reports / "plotly.min.js").stat().st_size > 1_000_000
    assert "<link" not in page and "@import" not in page and "fonts.googleapis" not in page


def test_suppressed_cells_publish_nothing_anywhere(reports):
    estimates = pd.read_csv(reports / "exports" / "estimates.csv")
    small = estimates[estimates["suppressed"]]
    assert len(small) and small[["events", "estimate", "ci_low", "ci_high"]].isna().all().all()
    sex = estimates[(estimates["analysis"] == "by_stratum") & (estimates["variable"] == "sex")]
    withheld_sex = sex[sex["suppressed"]]
    assert len(withheld_sex)  # a real extract of 4,000 has rare sexes: the check has teeth
    # zero events is a result, published as such (the curves start at day 0 with none)
    start = estimates[(estimates["analysis"] == "cumulative_incidence") & (estimates["time_days"] == 0)]
    assert len(start) and (~start["suppressed"] & (start["events"] == 0) & (start["estimate"] == 0)).any()
    quality = pd.read_csv(reports / "exports" / "data_quality.csv")
    code_rule = quality[(quality["source"] == "validation") & (quality["check_id"] == "diagnoses.code.format")].iloc[0]
    assert bool(code_rule["suppressed"]) and pd.isna(code_rule["count"]) and pd.isna(code_rule["share"])
    loaded = quality[(quality["source"] == "load") & (quality["table_name"] == "diagnoses")].set_index("check_id")
    assert pd.isna(loaded.loc["rows_quarantined", "count"]) and pd.isna(loaded.loc["rows_loaded", "count"])
    page = (reports / "index.html").read_text()
    from pipeline.publish.labels import Names

    for level in withheld_sex["level"]:
        assert f"{Names().level('sex', level)}<br>" not in page  # no hover text for the withheld cell
    assert "withheld (disclosure control)" in page


def test_suppressed_cells_have_no_chart_point(tmp_path):
    from pipeline.publish.labels import Names
    from pipeline.publish.report import build_report
    from pipeline.publish.tables import collect

    config = load_config()
    published = collect(build_warehouse(connect(":memory:")), config, None)
    _, figures = build_report(published, config, sample_manifest(), tmp_path)
    estimates = published.estimates
    published_sex = estimates[(estimates["analysis"] == "by_stratum") & (estimates["variable"] == "sex")
                              & (estimates["estimator"] == "hajek_ipw")]
    withheld = published_sex.loc[published_sex["suppressed"].astype(bool), "level"].tolist()
    assert withheld
    sex = figures["stratum_sex"]
    hover = [text for trace in sex.data for text in (trace.hovertext or ()) if text]
    hidden = {Names().level("sex", level) for level in withheld}
    assert hover and not any(text.split("<br>")[0] in hidden for text in hover)
    points = sum(len([x for x in trace.x if x is not None]) for trace in sex.data if trace.x is not None)
    assert points == (~published_sex["suppressed"]).sum() < len(published_sex)
    curve = figures["cumulative_incidence"]
    curves = estimates[(estimates["analysis"] == "cumulative_incidence") & (estimates["estimator"] == "aalen_johansen_ipw")]
    checked = 0
    for group, part in curves.groupby("level"):
        line = [t for t in curve.data if t.name == Names().level("headline_group", group) and t.mode == "lines"
                and t.hovertext][0]
        withheld_days = part.loc[part["suppressed"].astype(bool), "time_days"].astype(int).tolist()
        assert not set(withheld_days) & set(line.x)  # withheld points are not drawn (the step holds the last one)
        checked += len(withheld_days)
    assert checked  # a real curve is coarsened somewhere: the check has teeth


def test_atomic_swap_keeps_the_old_set_when_the_build_fails(tmp_path, monkeypatch):
    reports = tmp_path / "reports"
    (reports / "exports").mkdir(parents=True)
    (reports / "index.html").write_text("old report")
    (reports / "exports" / "headline.json").write_text("{}")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full halfway through")

    monkeypatch.setattr(publish, "build_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        _publish(tmp_path)
    assert (reports / "index.html").read_text() == "old report"
    assert (reports / "exports" / "headline.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_a_static_figure_error_on_its_thread_stops_the_publication(tmp_path, monkeypatch):
    """The static figures render on a thread beside the exports: an error there is raised, and the old set
    stays, exactly as when they were written on the publishing thread."""
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "index.html").write_text("old report")

    def broken(figures, figures_dir):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(publish, "write_static_figures", broken)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        _publish(tmp_path)
    assert (reports / "index.html").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


@pytest.mark.parametrize("planted, message", [
    ("events=3", "exports/estimates.csv: events (row 1): count below k (1..10)"),
    ("events=12", "exports/estimates.csv: events (row 1): count not rounded (base 5, bands from 11)"),
    ("reason", "exports/estimates.csv: suppression_reason (row 1): text quotes a value"),
])
def test_the_output_checker_stops_the_publication_and_keeps_the_old_set(tmp_path, monkeypatch, planted, message):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "index.html").write_text("old report")
    real = publish.write_exports

    def leaky(published, config, exports_dir):
        written = real(published, config, exports_dir)
        frame = pd.read_csv(exports_dir / "estimates.csv")
        if planted == "reason":
            frame.loc[0, "suppression_reason"] = "indication=Doe, Jane"
        else:
            frame.loc[0, "events"] = int(planted.split("=")[1])
        frame.to_csv(exports_dir / "estimates.csv", index=False)
        return written

    monkeypatch.setattr(publish, "write_exports", leaky)
    with pytest.raises(PrivacyError) as refused:
        _publish(tmp_path)
    assert str(refused.value).startswith(f"refusing to publish: {message}")
    assert "\n" not in str(refused.value) and "Doe" not in str(refused.value)
    assert (reports / "index.html").read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reports"]


def test_the_output_checker_reads_files_it_was_never_told_about(tmp_path, monkeypatch):
    """A future export is checked without being registered: a Parquet file, a JSON file, an HTML page."""
    from pipeline.publish.checker import check_release

    real = publish.write_exports

    def more(published, config, exports_dir):
        written = real(published, config, exports_dir)
        pd.DataFrame({"group_level": ["a"], "n_assessed": [7]}).to_parquet(exports_dir / "future_result.parquet")
        (exports_dir / "extra.json").write_text(json.dumps({"result": [{"count": 14}]}))
        pd.DataFrame({"variable_name": ["number subjects", "number subjects"], "estimate_name": ["count", "percentage"],
                      "estimate_value": ["7", "3.5"]}).to_csv(exports_dir / "future_result.csv", index=False)
        (exports_dir / "page.html").write_text("<p>4 people excluded</p><img src='https://cdn.example/x.png'>")
        (exports_dir / "notes.bin").write_bytes(b"\x00")
        return written

    monkeypatch.setattr(publish, "write_exports", more)
    monkeypatch.setattr(publish, "require_clean", lambda root, k, b: None)  # look at everything it would say
    reports = _publish(tmp_path).parent
    found = {str(v) for v in check_release(reports, 11, 5)}
    assert found == {
        "exports/future_result.parquet: n_assessed (row 1): count below k (1..10)",
        "exports/future_result.csv: estimate_value (row 1, estimate_name count): count below k (1..10)",
        "exports/extra.json: result[0].count: count not rounded (base 5, bands from 11)",
        "exports/page.html: src/href: loads a resource from the network (the report must open offline)",
        "exports/page.html: text '...<p>4 people': count below k (1..10)",
        "exports/notes.bin: file: file type '.bin' cannot be checked, so it is not published",
    }


def test_attrition_never_gives_back_a_small_exclusion(tmp_path):
    attrition = ATTRITION[:2] + [(3, "at least 365 days of prior observation", 14268, 4, 14264),
                                 (4, "no benzodiazepine dispensing in the prior 365 days", 14264, 1766, 12498)]
    con = build_warehouse(connect(":memory:"), attrition=attrition)
    reports = _publish(tmp_path, con).parent
    frame = pd.read_csv(reports / "exports" / "cohort_attrition.csv")
    assert pd.isna(frame.loc[2, "excluded"]) and frame.loc[2, "suppressed"]
    # no published running total minus a later one, less the published exclusions between, is 1..10
    # no difference of published running totals and exclusions pins the withheld exclusion down
    from test_attacker import attack

    assert attack(reports)[1] == []
    assert "withheld (disclosure control)" in (reports / "index.html").read_text()


def test_missing_analyses_say_so_and_headline_can_come_from_the_estimate_result(tmp_path):
    frame = estimates_frame()
    frame = frame[frame["analysis"] == "by_duration_band"]  # no headline rows: the estimate result gives it
    result = {"headline": {"gt_4_weeks": {"estimate": 0.3, "ci_low": 0.28, "ci_high": 0.32, "n": 4000,
                                          "events": 1200, "method": "IPW"},
                           "le_4_weeks": {"estimate": 0.06, "ci_low": 0.05, "ci_high": 0.07, "n": 5000,
                                          "events": 300, "method": "IPW"}},
              "complete_case": {}, "anchor_sentences": ["not published: free text"]}
    reports = _publish(tmp_path, build_warehouse(connect(":memory:"), estimates=frame), result=result).parent
    page = (reports / "index.html").read_text()
    for section in ("cumulative incidence over time", "the dose-response model", "sensitivity analyses",
                    "withdrawal by ending"):
        assert f"No estimates for {section} were produced" in page
    headline = json.loads((reports / "exports" / "headline.json").read_text())
    # counts rounded to the middle of their band of 5; the proportion recomputed from them
    gt, le = headline["headline"]["gt_4_weeks"], headline["headline"]["le_4_weeks"]
    assert (gt["n"], gt["events"], le["n"], le["events"]) == (3998, 1198, 4998, 298)
    assert gt["estimate"] == pytest.approx(1198 / 3998) and le["estimate"] == pytest.approx(298 / 4998)
    assert le["method"] == "IPW"
    assert headline["complete_case"]["gt_4_weeks"]["estimate"] is None
    assert "not published: free text" not in page


def test_empty_warehouse_still_publishes_a_readable_report(tmp_path):
    reports = _publish(tmp_path, connect(":memory:")).parent
    page = (reports / "index.html").read_text()
    assert "No publishable estimate of dependence" in page
    assert "No cohort attrition table was produced" in page
    assert pd.read_csv(reports / "exports" / "estimates.csv").empty


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_static_figures_are_written_beside_the_report(tmp_path, monkeypatch):
    from pipeline.publish.figures import write_static_figures

    monkeypatch.setattr(publish, "write_static_figures", write_static_figures)
    reports = _publish(tmp_path).parent
    assert {p.name for p in (reports / "figures").iterdir()} >= {"duration_bands.png", "duration_bands.svg"}


def test_static_figures_skip_without_a_browser(tmp_path, monkeypatch, caplog):
    from pipeline.publish import figures

    monkeypatch.setattr(figures, "find_chrome", lambda: None)
    with caplog.at_level("INFO"):
        assert figures.write_static_figures({"x": None}, tmp_path / "figures") == []
    assert "no Chrome/Chromium" in caplog.text and not (tmp_path / "figures").exists()


def test_nothing_published_depends_on_the_method_text(tmp_path):
    """Rows are chosen by their explicit columns: with every ``method`` text replaced by an opaque token
    (one token per text, so disclosure control's groups stay the same), the exports, headline.json and
    the summarised result are the same but for the method text itself."""
    honest = _publish(tmp_path / "honest").parent / "exports"
    frame = estimates_frame()
    tokens = {text: f"method {i}" for i, text in enumerate(dict.fromkeys(frame["method"]))}
    frame["method"] = frame["method"].map(tokens)  # no "primary: ", no "complete case", no "reference level"
    noisy = _publish(tmp_path / "noisy", build_warehouse(connect(":memory:"), estimates=frame)).parent / "exports"

    def without_method(path):
        table = pd.read_csv(path, keep_default_na=False)
        return table.drop(columns=["method"]).sort_values(list(table.columns.drop("method"))).reset_index(drop=True)

    pd.testing.assert_frame_equal(without_method(honest / "estimates.csv"), without_method(noisy / "estimates.csv"))
    headlines = [json.loads((exports / "headline.json").read_text()) for exports in (honest, noisy)]
    for headline in headlines:
        for block, groups in headline.items():
            for entry in groups.values() if block != "config" else ():
                entry.pop("method")
    assert headlines[0] == headlines[1]
    summarised = [pd.read_csv(exports / "summarised_result.csv", dtype="string", keep_default_na=False)
                  for exports in (honest, noisy)]
    pd.testing.assert_frame_equal(summarised[0], summarised[1])


def test_an_estimates_table_without_the_explicit_columns_is_one_clear_error(tmp_path):
    from pipeline.errors import StageOrderError

    con = build_warehouse(connect(":memory:"))
    con.execute("create or replace table estimates as select analysis, variable, level, time_days, n, n_assessed, "
                "events, estimate, ci_low, ci_high, method from estimates")  # as an older estimate stage wrote it
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "index.html").write_text("old report")
    with pytest.raises(StageOrderError) as refused:
        _publish(tmp_path, con)
    message = str(refused.value)
    assert "estimates lacks column(s) estimand, estimator, population, estimate_name, estimate_type" in message
    assert "rerun it (python -m pipeline estimate)" in message and "\n" not in message
    assert (reports / "index.html").read_text() == "old report"
