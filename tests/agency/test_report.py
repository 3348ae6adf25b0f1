"""The baseline agent's table profile report (docs/agents.md).

Expected figures are worked out here without pandas: the stdlib `csv` module
and `Decimal` sums for the CSV sample, openpyxl's own cells for the XLSX one,
and the kinds as the rules in docs/agents.md name them.
"""

import csv
import io
import json
import statistics
import struct
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from agency.agents import tables
from agency.agents.report import profile_build, profile_chart, profile_html, table_report
from agency.agents.tables import TableUnreadable, table_is_supported, table_read

# Pure functions: nothing here touches the database, so one pass of the suite is enough.
pytestmark = pytest.mark.single_pass

SAMPLES = Path(__file__).resolve().parents[2] / "agency" / "samples"
SALES = SAMPLES / "regional_sales.csv"
INVENTORY = SAMPLES / "inventory.xlsx"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sales_rows() -> list[dict]:
    with SALES.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _sales_report():
    return table_report(name=SALES.name, content=SALES.read_bytes(), title="Regional sales")


def _column(profile, name):
    return next(column for column in profile.columns if column.name == name)


def _profile(name: str, content: bytes):
    return profile_build(table_read(name=name, content=content))


def _xlsx(rows: list[list]) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# --- The CSV sample ---------------------------------------------------------------------------


def test_it_counts_the_csv_samples_rows():
    assert _sales_report().profile.rows == len(_sales_rows()) == 18


def test_it_gives_each_csv_column_its_kind():
    kinds = {column.name: column.kind for column in _sales_report().profile.columns}
    assert kinds == {
        "month": "datetime",
        "region": "categorical",
        "product": "categorical",
        "units": "numeric",
        "revenue_usd": "numeric",
        "returns": "numeric",
    }


def test_it_counts_the_csv_samples_missing_values():
    rows = _sales_rows()
    expected = {name: sum(1 for row in rows if not row[name].strip()) for name in rows[0]}
    assert {column.name: column.missing for column in _sales_report().profile.columns} == expected


def test_it_computes_the_revenue_figures():
    revenue = [Decimal(row["revenue_usd"]) for row in _sales_rows()]
    stats = _column(_sales_report().profile, "revenue_usd").numeric
    assert stats.count == len(revenue)
    assert stats.sum == pytest.approx(float(sum(revenue)), abs=1e-6)
    assert stats.mean == pytest.approx(float(sum(revenue) / len(revenue)), abs=1e-6)
    assert (stats.min, stats.max) == (float(min(revenue)), float(max(revenue)))
    assert stats.median == pytest.approx(float(statistics.median(revenue)), abs=1e-6)


def test_it_reports_the_sample_standard_deviation():
    revenue = [Decimal(row["revenue_usd"]) for row in _sales_rows()]
    stats = _column(_sales_report().profile, "revenue_usd").numeric
    assert stats.std == pytest.approx(float(statistics.stdev(revenue)), rel=1e-9)  # n - 1, not n


def test_it_totals_revenue_by_region_highest_first():
    totals = defaultdict(Decimal)
    for row in _sales_rows():
        totals[row["region"]] += Decimal(row["revenue_usd"])
    expected = sorted(totals.items(), key=lambda item: -item[1])
    pair = next(g for g in _sales_report().profile.group_totals if (g.category, g.measure) == ("region", "revenue_usd"))
    assert [(row.label, row.sum) for row in pair.groups] == [(label, float(total)) for label, total in expected]


def test_it_charts_revenue_by_region_first():
    first = _sales_report().profile.group_totals[0]
    assert (first.category, first.measure) == ("region", "revenue_usd")


def test_it_lists_the_top_values_of_a_categorical_column():
    product = _column(_sales_report().profile, "product")
    assert [(top.value, top.count) for top in product.top] == [("Pro plan", 9), ("Standard plan", 9)]


def test_it_summarises_the_total_and_the_highest_group():
    assert _sales_report().summary == (
        "18 rows \N{MULTIPLICATION SIGN} 6 columns; revenue_usd totals 121,381.00. "
        "By region, West is highest (51,599.00)."
    )


# --- The XLSX sample --------------------------------------------------------------------------


def test_it_totals_the_xlsx_samples_quantity_by_warehouse():
    workbook = load_workbook(INVENTORY, read_only=True)
    header, *body = workbook.worksheets[0].iter_rows(values_only=True)
    warehouse, quantity = header.index("warehouse"), header.index("quantity")
    totals = defaultdict(Decimal)
    for row in body:
        totals[row[warehouse]] += Decimal(str(row[quantity]))
    expected = sorted(totals.items(), key=lambda item: -item[1])
    report = table_report(name="inventory.xlsx", content=INVENTORY.read_bytes(), title="Inventory")
    pair = next(g for g in report.profile.group_totals if (g.category, g.measure) == ("warehouse", "quantity"))
    assert report.profile.rows == len(body)
    assert [(row.label, row.sum) for row in pair.groups] == [(label, float(total)) for label, total in expected]


def test_it_reads_the_xlsx_samples_dates_and_gaps():
    workbook = load_workbook(INVENTORY, read_only=True)
    header, *body = workbook.worksheets[0].iter_rows(values_only=True)
    profile = _profile("INVENTORY.XLSX", INVENTORY.read_bytes())
    assert _column(profile, "received").kind == "datetime"
    assert _column(profile, "unit_cost").missing == sum(1 for row in body if row[header.index("unit_cost")] is None)


def test_it_takes_a_formulas_cached_value_and_never_evaluates_it():
    # openpyxl saves formulas without cached values, as a program that does not calculate would.
    df = table_read(name="book.xlsx", content=_xlsx([["a", "b"], [1, "=1+1"], [2, 5]]))
    assert df["b"].isna().tolist() == [True, False]


# --- The chart --------------------------------------------------------------------------------


def test_it_draws_a_png_of_the_fixed_size():
    png = _sales_report().png
    assert png.startswith(PNG_SIGNATURE)
    _length, chunk, width, height = struct.unpack(">I4sII", png[8:24])
    assert (chunk, width, height) == (b"IHDR", 800, 450)


def test_it_draws_a_histogram_when_there_are_no_groups():
    content = b"amount\n" + b"\n".join(str(n).encode() for n in range(40))
    df = table_read(name="amounts.csv", content=content)
    assert profile_chart(df, profile_build(df)).startswith(PNG_SIGNATURE)


def test_it_draws_the_top_values_when_there_is_no_number():
    df = table_read(name="colours.csv", content=b"colour\nred\nblue\nred\ngreen\n")
    assert profile_chart(df, profile_build(df)).startswith(PNG_SIGNATURE)


def test_it_shows_dollar_signs_in_labels_literally():
    # Unescaped, matplotlib would parse "$\frac{$" as math and fail.
    df = table_read(name="plans.csv", content=b"plan,price\n$\\frac{$,5\nbasic $,7\n$\\frac{$,1\n")
    assert profile_chart(df, profile_build(df)).startswith(PNG_SIGNATURE)


# --- The page ---------------------------------------------------------------------------------


def test_it_formats_the_figures_on_the_page():
    html = _sales_report().html
    assert '<td class="n">121,381.00</td>' in html  # revenue_usd's sum
    assert '<td class="n">51,599.00</td>' in html  # West's revenue
    assert '<img src="chart.png"' in html


def test_it_escapes_a_column_name_from_the_file():
    profile = _profile("x.csv", b"<script>alert(1)</script>,region\n1,a\n2,b\n")
    html = profile_html(profile=profile, title="t", chart_name="chart.png")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html


def test_it_escapes_the_title_and_the_chart_name():
    profile = _profile("x.csv", b"a\n1\n")
    html = profile_html(profile=profile, title="<b>Q3</b>", chart_name='c.png" onerror="x')
    assert "<title>&lt;b&gt;Q3&lt;/b&gt;</title>" in html
    assert 'src="c.png&quot; onerror=&quot;x"' in html


# --- Reading ----------------------------------------------------------------------------------


def test_it_knows_the_supported_extensions():
    assert [table_is_supported(n) for n in ("a.CSV", "b.xlsx", "c.Json", "d.txt", "e.xls", "csv")] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_it_counts_infinities_as_missing_values():
    profile = _profile("inf.csv", b"region,v\na,inf\nb,-inf\na,1.5\nb,2\n")
    assert (_column(profile, "v").missing, _column(profile, "v").numeric.sum) == (2, 3.5)


def test_it_refuses_a_text_file():
    content = (SAMPLES / "consulting_agreement.txt").read_bytes()
    with pytest.raises(TableUnreadable, match=r"^The file is not a CSV, XLSX or JSON table: .*unsupported extension"):
        table_read(name="consulting_agreement.txt", content=content)


def test_it_refuses_a_txt_name_even_with_csv_content():
    with pytest.raises(TableUnreadable, match="unsupported extension"):
        table_read(name="sales.txt", content=SALES.read_bytes())


def test_it_refuses_a_malformed_csv():
    with pytest.raises(TableUnreadable, match=r"malformed .*Expected 2 fields in line 3, saw 4"):
        table_read(name="bad.csv", content=b"a,b\n1,2\n3,4,5,6\n")


def test_it_refuses_an_empty_csv():
    with pytest.raises(TableUnreadable, match="empty"):
        table_read(name="empty.csv", content=b"")


def test_it_refuses_a_csv_with_a_header_and_no_rows():
    with pytest.raises(TableUnreadable, match="no rows"):
        table_read(name="header.csv", content=b"a,b,c\n")


def test_it_refuses_too_many_columns():
    header = ",".join(f"c{i}" for i in range(201))
    row = ",".join("1" for _ in range(201))
    with pytest.raises(TableUnreadable, match="201 columns; at most 200"):
        table_read(name="wide.csv", content=f"{header}\n{row}\n".encode())


def test_it_refuses_a_workbook_with_too_many_columns():
    content = _xlsx([[f"c{i}" for i in range(205)], list(range(205))])
    with pytest.raises(TableUnreadable, match="201 columns; at most 200"):
        table_read(name="wide.xlsx", content=content)


def test_it_refuses_too_many_rows(monkeypatch):
    monkeypatch.setattr(tables, "MAX_ROWS", 3)
    with pytest.raises(TableUnreadable, match="more than 3 rows"):
        table_read(name="long.csv", content=b"a\n1\n2\n3\n4\n")


def test_it_refuses_bytes_that_are_not_utf8():
    with pytest.raises(TableUnreadable, match="not UTF-8"):
        table_read(name="latin.csv", content="région,total\nÎle,1\n".encode("latin-1"))


def test_it_refuses_a_file_that_is_not_a_workbook():
    with pytest.raises(TableUnreadable, match="not a readable XLSX"):
        table_read(name="sheet.xlsx", content=SALES.read_bytes())


def test_it_reads_a_semicolon_delimited_csv():
    df = table_read(name="eu.csv", content=b"region;revenue;units\nNorth;10.5;3\nSouth;4;2\n")
    assert list(df.columns) == ["region", "revenue", "units"]
    assert df["revenue"].tolist() == [10.5, 4.0]


def test_it_reads_a_tab_delimited_csv():
    df = table_read(name="export.csv", content=b"region\trevenue\nNorth\t1\nSouth\t2\n")
    assert list(df.columns) == ["region", "revenue"]


def test_it_reads_a_csv_with_a_byte_order_mark():
    df = table_read(name="excel.csv", content=b"\xef\xbb\xbfregion,revenue\nNorth,1\n")
    assert list(df.columns) == ["region", "revenue"]


def test_it_reads_a_json_array_of_objects():
    rows = [{"region": "North", "revenue": 10}, {"region": "South", "revenue": 5.5, "note": "late"}]
    profile = _profile("data.json", json.dumps(rows).encode())
    assert [(c.name, c.kind, c.missing) for c in profile.columns] == [
        ("region", "categorical", 0),
        ("revenue", "numeric", 0),
        ("note", "categorical", 1),
    ]
    assert _column(profile, "revenue").numeric.sum == 15.5


def test_it_reads_json_with_a_byte_order_mark():
    df = table_read(name="export.json", content=b'\xef\xbb\xbf[{"region": "North"}]')
    assert df["region"].tolist() == ["North"]


def test_it_refuses_json_that_is_not_an_array_of_flat_objects():
    for content in (b'{"a": 1}', b'[{"a": {"b": 1}}]', b"[1, 2]", b"{"):
        with pytest.raises(TableUnreadable):
            table_read(name="data.json", content=content)


# --- Column kinds -----------------------------------------------------------------------------


def test_it_keeps_text_that_only_resembles_dates_out_of_datetime():
    profile = _profile("d.csv", b"slash,month13,iso\n04/05,2026-13,2026-04-30\n05/06,2026-12,2026-05-01\n")
    assert [column.kind for column in profile.columns] == ["categorical", "categorical", "datetime"]


def test_it_keeps_codes_that_pandas_would_read_as_dates_out_of_datetime():
    # pandas' ISO 8601 parser takes "2026" for 1 January and "20260430" for 30 April.
    rows = [{"fiscal_year": "2026", "batch": "20260430"}, {"fiscal_year": "2025", "batch": "20260501"}]
    profile = _profile("codes.json", json.dumps(rows).encode())
    assert [column.kind for column in profile.columns] == ["categorical", "categorical"]


def test_it_calls_repeating_text_categorical_and_unique_text_text():
    repeating = "\n".join(f"v{i % 25}" for i in range(60))  # 25 distinct in 60 rows: under half
    unique = "\n".join(f"v{i}" for i in range(30))  # 30 distinct in 30 rows
    assert _profile("r.csv", f"x\n{repeating}\n".encode()).columns[0].kind == "categorical"
    assert _profile("u.csv", f"x\n{unique}\n".encode()).columns[0].kind == "text"


def test_it_leaves_single_valued_categories_out_of_group_totals():
    profile = _profile("one.csv", b"country,region,amount\nNL,North,1\nNL,South,2\n")
    assert [(g.category, g.measure) for g in profile.group_totals] == [("region", "amount")]


def test_it_caps_the_group_totals_at_six_pairs():
    rows = "\n".join(f"{'ab'[i % 2]},{'cd'[i % 2]},{i},{i * 2},{i * 3},{i * 4}" for i in range(10))
    profile = _profile("many.csv", f"k1,k2,n1,n2,n3,n4\n{rows}\n".encode())
    assert len(profile.group_totals) == 6
    assert {g.category for g in profile.group_totals} == {"k1", "k2"}
