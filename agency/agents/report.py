"""The baseline agent's table profile: figures, a chart and an HTML page, with no language model.

`table_report` is the entry point: the file read by `agency.agents.tables`,
profiled by `profile_build`, drawn by `profile_chart` and written up by
`profile_html` and `profile_summary`. Every figure comes straight from the
table; the rules that choose column kinds, group totals and the chart are in
docs/agents.md and in the constants below.
"""

import io
import math
import re
from dataclasses import dataclass, replace
from enum import StrEnum

import pandas as pd
import structlog
from django.template.loader import render_to_string
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agency.agents.tables import table_read

logger = structlog.get_logger(__name__)

# A text column is categorical when its values repeat: few distinct ones, or at most half as many as rows.
CATEGORICAL_MAX_DISTINCT = 20
CATEGORICAL_MAX_SHARE = 0.5
TOP_VALUES = 5
# Group totals: categories with 2..20 values, at most 6 (category, measure) pairs.
GROUPS_MIN, GROUPS_MAX = 2, 20
GROUP_PAIRS_MAX = 6
# 2026-04, 2026-04-30, 2026-04-30T12:00[:00[.000]][Z|+02:00]: dates by ISO 8601's shape, nothing looser,
# so that codes like "04/05" or plain numbers never turn into dates.
DATE_SHAPE = re.compile(r"\d{4}-\d{2}(-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?)?")
CHART_INCHES = (8, 4.5)
CHART_DPI = 100
LABEL_CHARS = 30
TIMES = "\N{MULTIPLICATION SIGN}"  # as in "18 rows by 6 columns"; named, so no one reads it for an x


class Kind(StrEnum):
    NUMERIC = "numeric"
    DATETIME = "datetime"
    CATEGORICAL = "categorical"
    TEXT = "text"


@dataclass(frozen=True)
class NumericStats:
    """The figures of a numeric column's values (`table_read` turned infinities into missing values);
    `std` is the sample standard deviation (ddof=1), None below two values."""

    count: int
    sum: float
    mean: float
    median: float
    min: float
    max: float
    std: float | None


@dataclass(frozen=True)
class ValueCount:
    value: str
    count: int


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    kind: Kind
    missing: int
    distinct: int
    numeric: NumericStats | None = None
    top: tuple[ValueCount, ...] = ()  # categorical columns: the most frequent values, most frequent first
    first: str | None = None  # datetime columns: the earliest and latest value
    last: str | None = None


@dataclass(frozen=True)
class GroupRow:
    label: str
    rows: int
    sum: float
    mean: float | None  # None when no row of the group has a value


@dataclass(frozen=True)
class GroupTotals:
    category: str
    measure: str
    groups: tuple[GroupRow, ...]  # by sum, highest first


@dataclass(frozen=True)
class TableProfile:
    rows: int
    columns: tuple[ColumnProfile, ...]
    group_totals: tuple[GroupTotals, ...]

    def of_kind(self, kind: Kind) -> tuple[ColumnProfile, ...]:
        return tuple(column for column in self.columns if column.kind == kind)


@dataclass(frozen=True)
class Report:
    html: str
    png: bytes
    profile: TableProfile
    summary: str
    chart_name: str


def table_report(*, name: str, content: bytes, title: str, chart_name: str = "chart.png") -> Report:
    """The profile report of a client's table; `TableUnreadable` when the file is not one."""
    df = table_read(name=name, content=content)
    profile = profile_build(df)
    report = Report(
        html=profile_html(profile=profile, title=title, chart_name=chart_name),
        png=profile_chart(df, profile),
        profile=profile,
        summary=profile_summary(profile),
        chart_name=chart_name,
    )
    # Sizes only: column names and values are the client's data and stay out of the logs.
    logger.info("table_report_built", rows=profile.rows, columns=len(profile.columns), size=len(content))
    return report


# --- The profile ------------------------------------------------------------------------------


def profile_build(df: pd.DataFrame) -> TableProfile:
    columns = tuple(_column_profile(str(label), values) for label, values in df.items())
    return TableProfile(rows=len(df), columns=columns, group_totals=_group_totals(df, columns))


def column_kind(values: pd.Series) -> Kind:
    """Numbers are numeric, booleans categorical; text is a date when every value has ISO 8601's
    shape, categorical when its values repeat, free text otherwise. An empty column is text."""
    present = values.dropna()
    if present.empty:
        return Kind.TEXT
    if pd.api.types.is_bool_dtype(values):
        return Kind.CATEGORICAL
    if pd.api.types.is_numeric_dtype(values):
        return Kind.NUMERIC
    if pd.api.types.is_datetime64_any_dtype(values) or _dates_in_text(present):
        return Kind.DATETIME
    distinct = present.nunique()
    if distinct <= CATEGORICAL_MAX_DISTINCT or distinct <= CATEGORICAL_MAX_SHARE * len(present):
        return Kind.CATEGORICAL
    return Kind.TEXT


def _dates_in_text(present: pd.Series) -> bool:
    if not all(isinstance(value, str) for value in present):
        return False
    text = present.astype(str)
    # The shape first: to_datetime alone would take "1" or "May" for dates. Then the calendar (no 2026-13).
    return bool(text.str.fullmatch(DATE_SHAPE).all()) and bool(_dates(text).notna().all())


def _dates(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    return pd.to_datetime(values, format="ISO8601", utc=True, errors="coerce")


def _column_profile(name: str, values: pd.Series) -> ColumnProfile:
    kind = column_kind(values)
    present = values.dropna()
    profile = ColumnProfile(name=name, kind=kind, missing=int(values.isna().sum()), distinct=int(present.nunique()))
    if kind == Kind.NUMERIC:
        return replace(profile, numeric=_numeric_stats(present))
    if kind == Kind.CATEGORICAL:
        return replace(profile, top=_top_values(present))
    if kind == Kind.DATETIME:
        dates = _dates(present)
        return replace(profile, first=_date_text(dates.min()), last=_date_text(dates.max()))
    return profile


def _numeric_stats(present: pd.Series) -> NumericStats:
    numbers = present.astype("float64")
    return NumericStats(
        count=len(numbers),
        sum=float(numbers.sum()),
        mean=float(numbers.mean()),
        median=float(numbers.median()),
        min=float(numbers.min()),
        max=float(numbers.max()),
        std=float(numbers.std(ddof=1)) if len(numbers) > 1 else None,
    )


def _float(value) -> float | None:
    """A plain float, or None for NaN (the mean of a group whose rows have no value), shown as a dash."""
    number = float(value)
    return None if math.isnan(number) else number


def _top_values(present: pd.Series) -> tuple[ValueCount, ...]:
    counts = present.value_counts()
    # Ties in the order of the values' text: value_counts leaves their order to the hashing.
    ranked = sorted(((str(value), int(count)) for value, count in counts.items()), key=lambda vc: (-vc[1], vc[0]))
    return tuple(ValueCount(value=value, count=count) for value, count in ranked[:TOP_VALUES])


def _date_text(moment: pd.Timestamp) -> str:
    if moment.hour == moment.minute == moment.second == moment.microsecond == 0:
        return moment.strftime("%Y-%m-%d")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _measures(columns: tuple[ColumnProfile, ...]) -> list[ColumnProfile]:
    """Numeric columns by the size of their total, largest first (the table's order on ties):
    the column that carries the money usually outweighs counts and flags."""
    numeric = [column for column in columns if column.kind == Kind.NUMERIC]
    return sorted(numeric, key=lambda column: -abs(column.numeric.sum))


def _group_totals(df: pd.DataFrame, columns: tuple[ColumnProfile, ...]) -> tuple[GroupTotals, ...]:
    """Sum and mean of each numeric column per value of each categorical column with 2..20 values:
    the categories in the table's order, the measures by `_measures`, at most `GROUP_PAIRS_MAX` pairs."""
    categories = [c for c in columns if c.kind == Kind.CATEGORICAL and GROUPS_MIN <= c.distinct <= GROUPS_MAX]
    pairs = [(category, measure) for category in categories for measure in _measures(columns)]
    return tuple(_group_pair(df, category.name, measure.name) for category, measure in pairs[:GROUP_PAIRS_MAX])


def _group_pair(df: pd.DataFrame, category: str, measure: str) -> GroupTotals:
    # Rows without a category are left out; a measure's missing values count as nothing in the sum.
    grouped = df[measure].astype("float64").groupby(df[category], dropna=True, sort=False)
    sums, means, sizes = grouped.sum(), grouped.mean(), grouped.size()
    rows = [
        GroupRow(label=str(key), rows=int(sizes[key]), sum=float(sums[key]), mean=_float(means[key]))
        for key in sums.index
    ]
    rows.sort(key=lambda row: (-row.sum, row.label))
    return GroupTotals(category=category, measure=measure, groups=tuple(rows))


# --- The chart --------------------------------------------------------------------------------


def profile_chart(df: pd.DataFrame, profile: TableProfile) -> bytes:
    """A PNG of `CHART_INCHES` at `CHART_DPI`: the first group totals as bars, else the first numeric
    column's histogram, else the first categorical column's most frequent values.

    A Figure on its own Agg canvas, never pyplot: pyplot's global state is not
    thread-safe, and the backend it would pick depends on the machine.
    """
    figure = Figure(figsize=CHART_INCHES, dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    numeric, categorical = profile.of_kind(Kind.NUMERIC), profile.of_kind(Kind.CATEGORICAL)
    if profile.group_totals:
        _chart_group_totals(axes, profile.group_totals[0])
    elif numeric:
        _chart_histogram(axes, df[numeric[0].name], numeric[0].name)
    elif categorical:
        _chart_top_values(axes, categorical[0])
    else:
        axes.set_axis_off()
        axes.set_title("No numeric or categorical column to chart")
    buffer = io.BytesIO()
    # No "Software" stamp: the same table gives the same bytes whatever matplotlib drew them.
    figure.savefig(buffer, format="png", dpi=CHART_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _label(text: str) -> str:
    """Text from the file as matplotlib should show it: shortened, and `$` taken literally, not as math."""
    short = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"
    return short.replace("$", r"\$")


def _bars(axes: Axes, labels: list[str], heights: list[float]) -> None:
    positions = range(len(labels))
    axes.bar(positions, heights, color="#2f6fed")
    axes.set_xticks(positions, [_label(label) for label in labels], rotation=30, ha="right")
    axes.ticklabel_format(axis="y", style="plain", useOffset=False)


def _chart_group_totals(axes: Axes, totals: GroupTotals) -> None:
    _bars(axes, [row.label for row in totals.groups], [row.sum for row in totals.groups])
    axes.set_title(f"Total {_label(totals.measure)} by {_label(totals.category)}")
    axes.set_xlabel(_label(totals.category))
    axes.set_ylabel(f"{_label(totals.measure)} (sum)")


def _chart_histogram(axes: Axes, values: pd.Series, name: str) -> None:
    numbers = values.dropna().astype("float64")
    axes.hist(numbers.to_numpy(), bins=max(1, min(20, numbers.nunique())), color="#2f6fed")
    axes.set_title(f"Distribution of {_label(name)}")
    axes.set_xlabel(_label(name))
    axes.set_ylabel("rows")


def _chart_top_values(axes: Axes, column: ColumnProfile) -> None:
    _bars(axes, [top.value for top in column.top], [top.count for top in column.top])
    axes.set_title(f"Most frequent values of {_label(column.name)}")
    axes.set_xlabel(_label(column.name))
    axes.set_ylabel("rows")


# --- The page and the summary -----------------------------------------------------------------


def number_text(value: float | None) -> str:
    """Two decimals and comma thousands, whatever the server's locale; a dash for no value."""
    return "—" if value is None else f"{value:,.2f}"


def profile_html(*, profile: TableProfile, title: str, chart_name: str) -> str:
    """A self-contained page; the template's autoescaping covers every text that came from the file."""
    context = {
        "title": title,
        "chart_name": chart_name,
        "rows": f"{profile.rows:,}",
        "column_count": f"{len(profile.columns):,}",
        "summary": profile_summary(profile),
        "columns": [_column_row(column) for column in profile.columns],
        "numeric": [_numeric_row(column) for column in profile.of_kind(Kind.NUMERIC)],
        "group_totals": [_group_table(totals) for totals in profile.group_totals],
    }
    return render_to_string("agents/report.html", context)


def _column_row(column: ColumnProfile) -> dict:
    if column.kind == Kind.CATEGORICAL:
        details = ", ".join(f"{top.value} ({top.count:,})" for top in column.top)
    elif column.kind == Kind.DATETIME:
        details = f"{column.first} to {column.last}"
    else:
        details = ""
    return {
        "name": column.name,
        "kind": column.kind.value,
        "missing": f"{column.missing:,}",
        "distinct": f"{column.distinct:,}",
        "details": details,
    }


def _numeric_row(column: ColumnProfile) -> dict:
    stats = column.numeric
    figures = (stats.sum, stats.mean, stats.median, stats.min, stats.max, stats.std)
    return {"name": column.name, "count": f"{stats.count:,}", "figures": [number_text(f) for f in figures]}


def _group_table(totals: GroupTotals) -> dict:
    return {
        "category": totals.category,
        "measure": totals.measure,
        "groups": [
            {"label": row.label, "rows": f"{row.rows:,}", "sum": number_text(row.sum), "mean": number_text(row.mean)}
            for row in totals.groups
        ],
    }


def _plain(text: str, limit: int = 60) -> str:
    """File text fit for one sentence: whitespace runs collapsed, long names shortened."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def profile_summary(profile: TableProfile) -> str:
    """One or two plain sentences (not HTML: whoever shows them escapes them)."""
    rows, width = profile.rows, len(profile.columns)
    shape = f"{rows:,} row{'s' * (rows != 1)} {TIMES} {width} column{'s' * (width != 1)}"
    measures, categorical = _measures(profile.columns), profile.of_kind(Kind.CATEGORICAL)
    if profile.group_totals:
        totals = profile.group_totals[0]
        total = next(m.numeric.sum for m in measures if m.name == totals.measure)
        best = totals.groups[0]
        return (
            f"{shape}; {_plain(totals.measure)} totals {number_text(total)}. "
            f"By {_plain(totals.category)}, {_plain(best.label)} is highest ({number_text(best.sum)})."
        )
    if measures:
        stats = measures[0].numeric
        return f"{shape}; {_plain(measures[0].name)} totals {number_text(stats.sum)} (mean {number_text(stats.mean)})."
    if categorical and categorical[0].top:
        top = categorical[0].top[0]
        return f"{shape}; the most frequent {_plain(categorical[0].name)} is {_plain(top.value)} ({top.count:,} rows)."
    return f"{shape}; no numeric or categorical column to summarise."
