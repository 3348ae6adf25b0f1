"""The analysis catalogue (docs/agents.md). Expected figures come from the sample read with the
stdlib `csv` module and plain Python arithmetic, never from the pandas call under test."""

import ast
import csv
import statistics
from collections import Counter, defaultdict
from pathlib import Path

import jsonschema
import pandas as pd
import pytest

from agency.agents import operations
from agency.agents.operations import (
    PLAN_SCHEMA,
    PlanRefused,
    plan_check,
    plan_run,
    step_results_charts,
    step_results_html,
)

SAMPLE = Path(operations.__file__).resolve().parents[1] / "samples" / "regional_sales.csv"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.read_csv(SAMPLE)


@pytest.fixture
def rows() -> list[dict]:
    with SAMPLE.open(newline="") as file:
        return [
            {
                **row,
                "units": int(row["units"]),
                "revenue_usd": float(row["revenue_usd"]),
                "returns": int(row["returns"]),
            }
            for row in csv.DictReader(file)
        ]


def plan(*steps: tuple[str, dict]) -> dict:
    return {
        "steps": [{"op": op, "args": args, "title": f"Step {i}"} for i, (op, args) in enumerate(steps, 1)],
        "narrative_focus": "Which region sells most.",
    }


def run_one(df: pd.DataFrame, op: str, args: dict) -> pd.DataFrame:
    [result] = plan_run(plan((op, args)), df)
    return result.table


def records(table: pd.DataFrame) -> list[tuple]:
    return [tuple(row) for row in table.itertuples(index=False)]


def sums_by(rows: list[dict], key: str, value: str) -> dict:
    totals = defaultdict(float)
    for row in rows:
        totals[row[key]] += row[value]
    return totals


# --- Each operation against an independent computation ---------------------------------------


def test_it_describes_numeric_columns(sales, rows):
    table = run_one(sales, "describe", {"columns": ["units"]})
    units = [row["units"] for row in rows]
    expected = (len(units), sum(units) / len(units), statistics.stdev(units), min(units), statistics.median(units))
    [(column, count, mean, std, low, median, high)] = records(table)
    assert (column, count) == ("units", expected[0])
    assert (mean, std, low, median, high) == pytest.approx((*expected[1:], max(units)))


def test_it_describes_every_numeric_column_when_none_is_named(sales):
    assert list(run_one(sales, "describe", {})["column"]) == ["units", "revenue_usd", "returns"]


def test_it_totals_a_column_per_group_largest_first(sales, rows):
    table = run_one(sales, "group_aggregate", {"by": ["region"], "column": "revenue_usd", "agg": "sum"})
    expected = sorted(sums_by(rows, "region", "revenue_usd").items(), key=lambda item: -item[1])
    assert list(table["region"]) == [region for region, _ in expected]
    assert list(table["sum_revenue_usd"]) == pytest.approx([total for _, total in expected])
    assert [region for region, _ in expected] == ["West", "North", "South"]  # the sample does tell them apart


def test_it_aggregates_per_two_group_columns(sales, rows):
    table = run_one(sales, "group_aggregate", {"by": ["region", "product"], "column": "units", "agg": "max"})
    best = defaultdict(int)
    for row in rows:
        best[row["region"], row["product"]] = max(best[row["region"], row["product"]], row["units"])
    assert records(table) == sorted(((*key, units) for key, units in best.items()), key=lambda r: -r[2])


def test_it_filters_on_a_number(sales, rows):
    table = run_one(sales, "filter", {"conditions": [{"column": "units", "op": ">", "value": 100}]})
    assert list(table["units"]) == [row["units"] for row in rows if row["units"] > 100]


def test_it_filters_on_a_list_of_values(sales, rows):
    condition = {"column": "region", "op": "in", "value": ["North", "South"]}
    table = run_one(sales, "filter", {"conditions": [condition]})
    assert list(table["region"]) == [row["region"] for row in rows if row["region"] in ("North", "South")]


def test_it_filters_out_a_list_of_values(sales, rows):
    condition = {"column": "month", "op": "not_in", "value": ["2026-04", "2026-05"]}
    table = run_one(sales, "filter", {"conditions": [condition]})
    assert len(table) == sum(1 for row in rows if row["month"] == "2026-06") == 6


def test_it_combines_filter_conditions_with_and(sales, rows):
    conditions = [{"column": "region", "op": "==", "value": "West"}, {"column": "returns", "op": "<=", "value": 2}]
    table = run_one(sales, "filter", {"conditions": conditions})
    assert list(table["revenue_usd"]) == [r["revenue_usd"] for r in rows if r["region"] == "West" and r["returns"] <= 2]


def test_it_matches_contains_as_a_substring_not_a_pattern(sales):
    table = run_one(sales, "filter", {"conditions": [{"column": "product", "op": "contains", "value": "."}]})
    assert table.empty


def test_it_matches_no_condition_on_a_missing_value():
    df = pd.DataFrame({"client": ["Acme", None, "Birch"]})
    table = run_one(df, "filter", {"conditions": [{"column": "client", "op": "!=", "value": "Acme"}]})
    assert list(table["client"]) == ["Birch"]


def test_it_sorts_and_keeps_the_limit(sales, rows):
    table = run_one(sales, "sort", {"by": ["revenue_usd"], "descending": True, "limit": 3})
    assert list(table["revenue_usd"]) == sorted((row["revenue_usd"] for row in rows), reverse=True)[:3]


def test_it_ranks_the_top_n_rows(sales, rows):
    table = run_one(sales, "top_n", {"column": "units", "n": 3})
    assert list(table["units"]) == sorted((row["units"] for row in rows), reverse=True)[:3]


def test_it_ranks_the_top_n_rows_per_group(sales, rows):
    table = run_one(sales, "top_n", {"column": "returns", "n": 1, "by": "region"})
    most = {region: max(r["returns"] for r in rows if r["region"] == region) for region in ("North", "South", "West")}
    assert records(table[["region", "returns"]]) == sorted(most.items())


def test_it_pivots_months_against_regions(sales, rows):
    args = {"index": "month", "columns": "region", "values": "revenue_usd", "agg": "sum"}
    table = run_one(sales, "pivot", args)
    totals = defaultdict(float)
    for row in rows:
        totals[row["month"], row["region"]] += row["revenue_usd"]
    assert list(table.columns) == ["month", "North", "South", "West"]
    for month, north, south, west in records(table):
        assert (north, south, west) == pytest.approx([totals[month, r] for r in ("North", "South", "West")])


def test_it_counts_values_most_frequent_first():
    df = pd.DataFrame({"city": ["Oslo", "Rome", "Rome", "Lima", "Rome", "Lima", "Bern"]})
    table = run_one(df, "value_counts", {"column": "city", "n": 3})
    counts = Counter(df["city"].tolist())
    assert records(table) == sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:3]


def test_it_draws_a_chart_as_png(sales):
    [result] = plan_run(plan(("chart", {"kind": "bar", "x": "region", "y": "revenue_usd"})), sales)
    assert result.png.startswith(PNG_SIGNATURE)
    assert result.table is None


@pytest.mark.parametrize("args", [{"kind": "line", "x": "month", "y": "units"}, {"kind": "hist", "x": "revenue_usd"}])
def test_it_draws_line_charts_and_histograms(sales, args):
    [result] = plan_run(plan(("chart", args)), sales)
    assert result.png.startswith(PNG_SIGNATURE)


def test_it_draws_dollar_signs_in_labels_as_text():
    df = pd.DataFrame({"plan": ["$5 plan", "$$ plan", "$\\frac{"], "units": [1, 2, 3]})
    [result] = plan_run(plan(("chart", {"kind": "bar", "x": "plan", "y": "units"})), df)
    assert result.png.startswith(PNG_SIGNATURE)


# --- Working table and results -----------------------------------------------------------------


def test_it_feeds_a_filtered_table_to_later_steps(sales, rows):
    results = plan_run(
        plan(
            ("filter", {"conditions": [{"column": "product", "op": "==", "value": "Pro plan"}]}),
            ("group_aggregate", {"by": ["region"], "column": "units", "agg": "sum"}),
        ),
        sales,
    )
    pro = [row for row in rows if row["product"] == "Pro plan"]
    assert dict(records(results[1].table)) == sums_by(pro, "region", "units")


def test_it_leaves_the_working_table_alone_after_a_result_step(sales, rows):
    results = plan_run(
        plan(
            ("top_n", {"column": "units", "n": 1}),
            ("group_aggregate", {"by": ["region"], "column": "units", "agg": "sum"}),
        ),
        sales,
    )
    assert dict(records(results[1].table)) == sums_by(rows, "region", "units")


def test_it_gives_equal_results_for_the_same_plan(sales):
    steps = (
        ("filter", {"conditions": [{"column": "units", "op": ">=", "value": 50}]}),
        ("value_counts", {"column": "region"}),
        ("chart", {"kind": "bar", "x": "region"}),
    )
    assert plan_run(plan(*steps), sales) == plan_run(plan(*steps), sales.copy())


def test_it_does_not_modify_the_input_table(sales):
    before = sales.copy()
    plan_run(
        plan(
            ("sort", {"by": ["units"], "limit": 2}),
            ("filter", {"conditions": [{"column": "units", "op": "<", "value": 0}]}),
        ),
        sales,
    )
    pd.testing.assert_frame_equal(sales, before)


def test_it_caps_result_tables_at_1000_rows():
    df = pd.DataFrame({"n": range(1500)})
    table = run_one(df, "filter", {"conditions": [{"column": "n", "op": ">=", "value": 0}]})
    assert len(table) == 1000


EVERY_OP = {
    "describe": {"columns": ["units"]},
    "group_aggregate": {"by": ["region"], "column": "units", "agg": "median"},
    "filter": {"conditions": [{"column": "region", "op": "!=", "value": "North"}]},
    "sort": {"by": ["month", "region"]},
    "top_n": {"column": "revenue_usd"},
    "pivot": {"index": "region", "columns": "product", "values": "units", "agg": "count"},
    "value_counts": {"column": "product"},
    "chart": {"kind": "hist", "x": "units"},
}


@pytest.mark.parametrize("op", PLAN_SCHEMA["properties"]["steps"]["items"]["properties"]["op"]["enum"])
def test_it_runs_every_op_the_schema_offers(sales, op):
    [result] = plan_run(plan((op, EVERY_OP[op])), sales)
    assert (result.table is not None) != (result.png is not None)


def test_it_is_a_valid_schema_for_the_gateway():
    jsonschema.Draft202012Validator.check_schema(PLAN_SCHEMA)


# --- Refusals -----------------------------------------------------------------------------------


def test_it_refuses_an_unknown_op(sales):
    with pytest.raises(PlanRefused, match=r"Step 1: .*'drop_table' is not one of"):
        plan_check(plan(("drop_table", {})), sales)


def test_it_refuses_an_unknown_column_naming_it(sales):
    with pytest.raises(PlanRefused, match=r"Step 2 \(sort\): unknown column 'Region'"):
        plan_check(plan(("describe", {}), ("sort", {"by": ["Region"]})), sales)


def test_it_refuses_a_sum_of_a_text_column(sales):
    with pytest.raises(PlanRefused, match="'product' is a text column"):
        plan_check(plan(("group_aggregate", {"by": ["region"], "column": "product", "agg": "sum"})), sales)


def test_it_refuses_a_number_compared_with_a_text_column(sales):
    with pytest.raises(PlanRefused, match="'month' is a text column"):
        plan_check(plan(("filter", {"conditions": [{"column": "month", "op": ">", "value": 202605}]})), sales)


def test_it_refuses_text_compared_with_a_number_column(sales):
    with pytest.raises(PlanRefused, match="the value '100' is text"):
        plan_check(plan(("filter", {"conditions": [{"column": "units", "op": ">", "value": "100"}]})), sales)


def test_it_refuses_an_unknown_argument(sales):
    with pytest.raises(PlanRefused, match="'ascending' was unexpected"):
        plan_check(plan(("sort", {"by": ["units"], "ascending": True})), sales)


def test_it_refuses_an_ill_typed_argument(sales):
    with pytest.raises(PlanRefused, match="'5' is not of type 'integer'"):
        plan_check(plan(("top_n", {"column": "units", "n": "5"})), sales)


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("top_n", {"column": "units", "n": 51}),
        ("top_n", {"column": "units", "n": 0}),
        ("value_counts", {"column": "region", "n": 51}),
        ("sort", {"by": ["units"], "limit": 1001}),
        ("group_aggregate", {"by": ["month", "region", "product"], "column": "units", "agg": "sum"}),
    ],
)
def test_it_refuses_arguments_out_of_range(sales, op, args):
    with pytest.raises(PlanRefused, match="does not match the schema"):
        plan_check(plan((op, args)), sales)


def test_it_refuses_more_than_eight_steps(sales):
    with pytest.raises(PlanRefused, match="is too long"):
        plan_check(plan(*[("describe", {})] * 9), sales)


def test_it_refuses_a_pivot_larger_than_50_by_50():
    df = pd.DataFrame({"a": range(51), "b": ["x"] * 51, "v": [1] * 51})
    with pytest.raises(PlanRefused, match="'a' has 51 distinct values"):
        plan_run(plan(("pivot", {"index": "a", "columns": "b", "values": "v", "agg": "sum"})), df)


# --- Model output is data ---------------------------------------------------------------------


def code(marker: Path) -> str:
    return f"__import__('os').system('touch {marker}')"


def test_it_refuses_code_as_an_op_without_running_it(sales, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(PlanRefused, match="is not one of"):
        plan_run(plan((code(marker), {})), sales)
    assert not marker.exists()


def test_it_refuses_code_as_a_column_without_running_it(sales, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(PlanRefused, match="unknown column"):
        plan_run(plan(("value_counts", {"column": code(marker)})), sales)
    assert not marker.exists()


def test_it_compares_code_in_a_filter_value_as_text(sales, tmp_path):
    marker = tmp_path / "pwned"
    condition = {"column": "region", "op": "==", "value": code(marker)}
    [result] = plan_run(plan(("filter", {"conditions": [condition]})), sales)
    assert result.table.empty
    assert not marker.exists()


def test_it_refuses_a_plan_that_is_python_code(sales, tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(PlanRefused, match="is not of type 'object'"):
        plan_run(code(marker), sales)
    assert not marker.exists()


def test_it_contains_no_dynamic_code_execution():
    tree = ast.parse(Path(operations.__file__).read_text())
    called = {
        node.func.id if isinstance(node.func, ast.Name) else node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute)
    }
    assert not called & {"eval", "exec", "compile", "getattr", "__import__", "query", "import_module"}


# --- HTML ---------------------------------------------------------------------------------------


def test_it_escapes_cell_values_in_html():
    df = pd.DataFrame({"name": ["<script>alert(1)</script>"], "n": [1]})
    page = step_results_html(plan_run(plan(("top_n", {"column": "n"})), df))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_it_escapes_titles_in_html(sales):
    [step] = plan(("describe", {}))["steps"]
    step["title"] = '<img src=x onerror="alert(1)">'
    page = step_results_html(plan_run({"steps": [step], "narrative_focus": ""}, sales))
    assert "<img" not in page


def test_it_refers_to_charts_by_the_names_of_their_pngs(sales):
    results = plan_run(
        plan(("chart", {"kind": "hist", "x": "units"}), ("describe", {}), ("chart", {"kind": "bar", "x": "month"})),
        sales,
    )
    charts = step_results_charts(results)
    page = step_results_html(results)
    assert charts == {"chart-1.png": results[0].png, "chart-2.png": results[2].png}
    assert '<img src="chart-1.png"' in page
    assert '<img src="chart-2.png"' in page
