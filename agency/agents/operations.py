"""The analysis catalogue: the only table operations a model's plan can ask for (docs/agents.md).

A language model answers with a *plan*, JSON matching `PLAN_SCHEMA`: up to eight steps, each an
operation from the catalogue with its arguments. `plan_check` refuses a plan that does not fit the
table (unknown columns, a sum of text, limits) and `plan_run` runs it with pandas. The plan is
data from start to end: an operation is looked up in `_OPERATIONS`, a dict we wrote; column names
are looked up in the table; filter values are compared as values. Nothing the model wrote is
evaluated, imported, compiled or used as an attribute name.

`filter` and `sort` transform the working table that later steps see; every other operation
reads the working table and produces a result (a table or a chart) without changing it.
"""

import html
import io
import numbers
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import jsonschema
import pandas as pd
from pandas.api import types as ptypes

STEPS_MAX = 8
RESULT_ROWS_MAX = 1000  # every table a step returns, and the rows a sort may keep
TOP_N_MAX = 50
VALUE_COUNTS_MAX = 50
PIVOT_SIDE_MAX = 50  # distinct values of a pivot's index, and of its columns
BAR_MAX = 50
LINE_POINTS_MAX = 1000
HIST_BINS = 20
IN_VALUES_MAX = 100
CONDITIONS_MAX = 10
AGGS = ["sum", "mean", "count", "min", "max", "median"]
FILTER_OPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not_in", "contains"]

# --- The schema the model answers with (plain JSON Schema, draft 2020-12) ---------------------

_COLUMN = {"type": "string", "minLength": 1, "maxLength": 200}
_AGG = {"enum": AGGS}


def _args(properties: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _columns(min_items: int, max_items: int) -> dict:
    return {"type": "array", "items": _COLUMN, "minItems": min_items, "maxItems": max_items, "uniqueItems": True}


_SCALAR = {"type": ["string", "number", "boolean"], "maxLength": 200}
_CONDITION = {
    **_args({"column": _COLUMN, "op": {"enum": FILTER_OPS}, "value": {}}, ["column", "op", "value"]),
    # `in` and `not_in` take a list of values, the other operators one value.
    "if": {"properties": {"op": {"enum": ["in", "not_in"]}}, "required": ["op"]},
    "then": {"properties": {"value": {"type": "array", "items": _SCALAR, "minItems": 1, "maxItems": IN_VALUES_MAX}}},
    "else": {"properties": {"value": _SCALAR}},
}

ARGS_SCHEMAS: dict[str, dict] = {
    "describe": _args({"columns": _columns(1, 50)}, []),
    "group_aggregate": _args({"by": _columns(1, 2), "column": _COLUMN, "agg": _AGG}, ["by", "column", "agg"]),
    "filter": _args(
        {"conditions": {"type": "array", "items": _CONDITION, "minItems": 1, "maxItems": CONDITIONS_MAX}},
        ["conditions"],
    ),
    "sort": _args(
        {
            "by": _columns(1, 3),
            "descending": {"type": "boolean"},
            "limit": {"type": "integer", "minimum": 1, "maximum": RESULT_ROWS_MAX},
        },
        ["by"],
    ),
    "top_n": _args(
        {"column": _COLUMN, "n": {"type": "integer", "minimum": 1, "maximum": TOP_N_MAX}, "by": _COLUMN}, ["column"]
    ),
    "pivot": _args(
        {"index": _COLUMN, "columns": _COLUMN, "values": _COLUMN, "agg": _AGG}, ["index", "columns", "values", "agg"]
    ),
    "value_counts": _args(
        {"column": _COLUMN, "n": {"type": "integer", "minimum": 1, "maximum": VALUE_COUNTS_MAX}}, ["column"]
    ),
    "chart": _args({"kind": {"enum": ["bar", "line", "hist"]}, "x": _COLUMN, "y": _COLUMN}, ["kind", "x"]),
}


def _args_when(op: str, args_schema: dict) -> dict:
    return {
        "if": {"properties": {"op": {"const": op}}, "required": ["op"]},
        "then": {"properties": {"args": args_schema}},
    }


PLAN_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "minItems": 1,
            "maxItems": STEPS_MAX,
            "items": {
                **_args(
                    {
                        "op": {"enum": list(ARGS_SCHEMAS)},
                        "args": {"type": "object"},
                        "title": {"type": "string", "minLength": 1, "maxLength": 120},
                    },
                    ["op", "args", "title"],
                ),
                # The discriminator: each op's own argument schema.
                "allOf": [_args_when(op, schema) for op, schema in ARGS_SCHEMAS.items()],
            },
        },
        "narrative_focus": {"type": "string", "maxLength": 1000},
    },
    "required": ["steps", "narrative_focus"],
    "additionalProperties": False,
}

_plan_validator = jsonschema.Draft202012Validator(PLAN_SCHEMA)


# --- What callers see --------------------------------------------------------------------------


class PlanRefused(Exception):
    """The plan cannot run on this table; the message names the step and the problem."""


@dataclass(frozen=True, eq=False)
class StepResult:
    """One step's outcome: a table (`filter` and `sort` give the new working table) or a chart."""

    title: str
    op: str
    table: pd.DataFrame | None
    png: bytes | None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepResult):
            return NotImplemented
        if (self.title, self.op, self.png) != (other.title, other.op, other.png):
            return False
        if self.table is None or other.table is None:
            return self.table is other.table
        return self.table.equals(other.table)


def plan_check(plan: dict, df: pd.DataFrame) -> None:
    """Refuse (`PlanRefused`) a plan that does not match `PLAN_SCHEMA` or does not fit `df`.

    Only what the columns decide is checked here (names, types); `filter` and `sort` keep the
    columns, so each step is checked against `df`. Limits that depend on the rows a step will see
    (a pivot's size, a chart's bars) are checked when it runs.
    """
    error = jsonschema.exceptions.best_match(_plan_validator.iter_errors(plan))
    if error is not None:
        raise _schema_refusal(error)
    if not df.columns.is_unique:
        raise PlanRefused("The table has duplicate column names; no plan can refer to them unambiguously.")
    kinds = {column: _kind(df[column]) for column in df.columns}
    for number, step in enumerate(plan["steps"], start=1):
        with _refusing(number, step["op"]):
            _OPERATIONS[step["op"]].check(step["args"], kinds)


def plan_run(plan: dict, df: pd.DataFrame) -> list[StepResult]:
    """Check the plan, then run its steps in order on `df` (which is not modified)."""
    plan_check(plan, df)
    working, results = df, []
    for number, step in enumerate(plan["steps"], start=1):
        operation = _OPERATIONS[step["op"]]
        with _refusing(number, step["op"]):
            output = operation.run(working, step["args"])
        if operation.transforms:
            working = output
        if isinstance(output, bytes):
            results.append(StepResult(title=step["title"], op=step["op"], table=None, png=output))
        else:
            table = output.head(RESULT_ROWS_MAX).reset_index(drop=True)
            results.append(StepResult(title=step["title"], op=step["op"], table=table, png=None))
    return results


def step_results_html(results: list[StepResult]) -> str:
    """An HTML fragment: each step's title and its table, or an `<img>` of its chart.

    Charts are referred to by the names `step_results_charts` gives their PNGs.
    """
    parts = []
    for result, name in zip(results, _chart_names(results), strict=True):
        title = html.escape(result.title)
        if name is not None:
            body = f'<img src="{html.escape(name)}" alt="{title}">'
        elif result.table is not None:
            body = result.table.to_html(escape=True, index=False, border=0, na_rep="", classes="analysis-table")
        else:
            body = ""
        parts.append(f'<section class="analysis-step">\n<h3>{title}</h3>\n{body}\n</section>')
    return "\n".join(parts)


def step_results_charts(results: list[StepResult]) -> dict[str, bytes]:
    """The charts' PNGs by the file names `step_results_html` refers to (`chart-1.png`, …)."""
    return {
        name: result.png
        for result, name in zip(results, _chart_names(results), strict=True)
        if name is not None and result.png is not None
    }


def _chart_names(results: list[StepResult]) -> list[str | None]:
    names, charts = [], 0
    for result in results:
        if result.png is None:
            names.append(None)
        else:
            charts += 1
            names.append(f"chart-{charts}.png")
    return names


def _schema_refusal(error: jsonschema.ValidationError) -> PlanRefused:
    path = list(error.absolute_path)
    step = f"Step {path[1] + 1}: " if len(path) > 1 and path[0] == "steps" else ""
    message = error.message
    if len(message) > 300:  # the offending value comes first: keep the verdict at the end
        message = f"{message[:150]} … {message[-150:]}"
    return PlanRefused(f"{step}the plan does not match the schema at {error.json_path}: {message}")


class _Problem(Exception):
    """A step's problem; `_refusing` turns it into `PlanRefused` naming the step."""


@contextmanager
def _refusing(number: int, op: str) -> Iterator[None]:
    try:
        yield
    except _Problem as exc:
        raise PlanRefused(f"Step {number} ({op}): {exc}") from None


# --- Column kinds ------------------------------------------------------------------------------

NUMBER, TEXT, BOOLEAN, DATETIME = "number", "text", "boolean", "datetime"
_ORDERED = {NUMBER, TEXT, BOOLEAN, DATETIME}  # may be grouped by, sorted, counted, put on an axis
_COMPARABLE = {NUMBER, TEXT, BOOLEAN}  # have a JSON type a filter value can match


def _kind(series: pd.Series) -> str:
    if ptypes.is_bool_dtype(series):
        return BOOLEAN
    if ptypes.is_numeric_dtype(series):
        return NUMBER
    if ptypes.is_datetime64_any_dtype(series):
        return DATETIME
    if ptypes.is_string_dtype(series):
        return TEXT
    return "mixed"  # an object column of mixed values: nothing may use it


def _value_kind(value: object) -> str:
    if isinstance(value, bool):  # before numbers: True is an int to Python
        return BOOLEAN
    if isinstance(value, numbers.Real):
        return NUMBER
    return TEXT if isinstance(value, str) else "unknown"


def _need(kinds: dict, column: str, allowed: set[str], role: str) -> None:
    if column not in kinds:
        known = ", ".join(repr(str(name)) for name in kinds)
        raise _Problem(f"unknown column {column!r} (the table has {known})")
    if kinds[column] not in allowed:
        wanted = " or ".join(sorted(allowed))
        raise _Problem(f"{column!r} is a {kinds[column]} column; {role} must be {wanted}")


def _need_value_column(kinds: dict, column: str, agg: str, role: str) -> None:
    _need(kinds, column, _ORDERED if agg == "count" else {NUMBER}, f"the {role} of a {agg}")


def _free_name(name: str, taken: list) -> str:
    while name in taken:
        name += "_"
    return name


# --- The operations: a check against the columns, a run on the working table ------------------


_STATS = ["mean", "std", "min", "median", "max"]  # `std` is the sample standard deviation (n - 1)


def _describe_check(args: dict, kinds: dict) -> None:
    for column in args.get("columns", []):
        _need(kinds, column, {NUMBER}, "a described column")
    if "columns" not in args and NUMBER not in kinds.values():
        raise _Problem("the table has no number column to describe")


def _describe_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    columns = args.get("columns") or [c for c in df.columns if _kind(df[c]) == NUMBER]
    rows = []
    for column in columns:
        s = pd.Series(df[column].to_numpy(dtype="float64", na_value=float("nan")))  # nullable ints: NA → NaN
        stats = (s.mean(), s.std(), s.min(), s.median(), s.max())
        rows.append({"column": column, "count": int(s.count()), **dict(zip(_STATS, map(float, stats), strict=True))})
    return pd.DataFrame(rows, columns=["column", "count", *_STATS])


def _group_aggregate_check(args: dict, kinds: dict) -> None:
    for column in args["by"]:
        _need(kinds, column, _ORDERED, "a group column")
    _need_value_column(kinds, args["column"], args["agg"], "column")


def _group_aggregate_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    by, column, agg = args["by"], args["column"], args["agg"]
    values = df.groupby(by, sort=True, dropna=True)[column].agg(agg)
    table = values.reset_index(name=_free_name(f"{agg}_{column}", by))
    # Stable sort: equal values stay in the order of their group keys.
    return table.sort_values(table.columns[-1], ascending=False, kind="stable", na_position="last")


def _filter_check(args: dict, kinds: dict) -> None:
    for condition in args["conditions"]:
        column, op, value = condition["column"], condition["op"], condition["value"]
        _need(kinds, column, _COMPARABLE, "a filtered column")
        kind = kinds[column]
        if op == "contains" and kind != TEXT:
            raise _Problem(f"{column!r} is a {kind} column; 'contains' needs text")
        if op in ("<", "<=", ">", ">=") and kind == BOOLEAN:
            raise _Problem(f"{op!r} does not order the boolean column {column!r}")
        for item in value if isinstance(value, list) else [value]:
            if _value_kind(item) != kind:
                raise _Problem(f"{column!r} is a {kind} column; the value {item!r} is {_value_kind(item)}")


_COMPARISONS: dict[str, Callable] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _condition_mask(series: pd.Series, op: str, value: object) -> pd.Series:
    if op == "in":
        return series.isin(value)
    if op == "not_in":
        return ~series.isin(value)
    if op == "contains":
        return series.str.contains(value, regex=False, na=False)  # a substring, never a pattern
    return _COMPARISONS[op](series, value)


def _filter_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for condition in args["conditions"]:
        series = df[condition["column"]]
        matched = _condition_mask(series, condition["op"], condition["value"])
        # A missing value matches no condition, `!=` and `not_in` included (NaN != x is True).
        mask &= matched.fillna(False).astype(bool) & series.notna()
    return df[mask]


def _sort_check(args: dict, kinds: dict) -> None:
    for column in args["by"]:
        _need(kinds, column, _ORDERED, "a sort column")


def _sort_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    ascending = not args.get("descending", False)
    ordered = df.sort_values(args["by"], ascending=ascending, kind="stable", na_position="last")
    return ordered.head(args["limit"]) if "limit" in args else ordered


def _top_n_check(args: dict, kinds: dict) -> None:
    _need(kinds, args["column"], {NUMBER}, "the ranked column")
    if "by" in args:
        _need(kinds, args["by"], _ORDERED, "a group column")


def _top_n_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    column, n = args["column"], args.get("n", 10)
    ranked = df.dropna(subset=[column]).sort_values(column, ascending=False, kind="stable")
    if "by" not in args:
        return ranked.head(n)
    top = ranked.groupby(args["by"], sort=True, dropna=True).head(n)
    return top.sort_values([args["by"], column], ascending=[True, False], kind="stable")


def _pivot_check(args: dict, kinds: dict) -> None:
    _need(kinds, args["index"], _ORDERED, "a pivot's index")
    _need(kinds, args["columns"], _ORDERED, "a pivot's columns")
    if args["index"] == args["columns"]:
        raise _Problem("the pivot's index and columns must be different columns")
    _need_value_column(kinds, args["values"], args["agg"], "values")


def _pivot_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    index, columns = args["index"], args["columns"]
    for side in (index, columns):
        distinct = df[side].nunique()
        if distinct > PIVOT_SIDE_MAX:
            raise _Problem(f"{side!r} has {distinct} distinct values; a pivot side may have {PIVOT_SIDE_MAX}")
    table = df.pivot_table(index=index, columns=columns, values=args["values"], aggfunc=args["agg"], sort=True)
    table.columns = [_free_name(str(name), [index]) for name in table.columns]
    return table.reset_index()


def _value_counts_check(args: dict, kinds: dict) -> None:
    _need(kinds, args["column"], _ORDERED, "a counted column")


def _value_counts_run(df: pd.DataFrame, args: dict) -> pd.DataFrame:
    column = args["column"]
    count = _free_name("count", [column])
    table = df[column].value_counts(dropna=True).rename_axis(column).reset_index(name=count)
    # Most frequent first, ties in value order: the same answer whatever order the rows came in.
    table = table.sort_values([count, column], ascending=[False, True], kind="stable")
    return table.head(args.get("n", 10))


def _chart_check(args: dict, kinds: dict) -> None:
    if args["kind"] == "hist":
        _need(kinds, args["x"], {NUMBER}, "a histogram's x")
        if "y" in args:
            raise _Problem("a histogram takes x only")
        return
    _need(kinds, args["x"], _ORDERED, "a chart's x")
    if "y" in args:
        _need(kinds, args["y"], {NUMBER}, "a chart's y")


def _chart_series(df: pd.DataFrame, args: dict) -> pd.Series:
    """A bar or line chart's points: y summed per distinct x (rows counted without y), x ascending."""
    groups = df.groupby(args["x"], sort=True, dropna=True)
    series = groups[args["y"]].sum() if "y" in args else groups.size()
    limit = BAR_MAX if args["kind"] == "bar" else LINE_POINTS_MAX
    if len(series) > limit:
        raise _Problem(f"{args['x']!r} has {len(series)} distinct values; a {args['kind']} chart shows {limit}")
    return series


def _chart_run(df: pd.DataFrame, args: dict) -> bytes:
    # matplotlib is loaded on first use: about half a second that processes drawing no chart skip.
    # Figure with the Agg canvas, not pyplot: no global figure registry, safe in threads.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Labels come from the file: a `$` in them is text, not mathtext to parse.
    with matplotlib.rc_context({"text.parse_math": False}):
        figure = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        if args["kind"] == "hist":
            axes.hist(df[args["x"]].dropna().to_numpy(dtype=float), bins=HIST_BINS)
        else:
            series = _chart_series(df, args)
            x = [str(v) for v in series.index] if _kind(df[args["x"]]) != NUMBER else series.index.to_numpy()
            draw = axes.bar if args["kind"] == "bar" else axes.plot
            draw(x, series.to_numpy(dtype=float))
        axes.set_xlabel(str(args["x"]))
        axes.set_ylabel(str(args.get("y", "rows")))
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})  # same plan, same bytes
    return buffer.getvalue()


@dataclass(frozen=True)
class _Operation:
    check: Callable[[dict, dict], None]
    run: Callable[[pd.DataFrame, dict], pd.DataFrame | bytes]
    transforms: bool = False  # the output becomes the working table of the following steps


# The whole catalogue. A plan's `op` is only ever a key into this dict.
_OPERATIONS: dict[str, _Operation] = {
    "describe": _Operation(_describe_check, _describe_run),
    "group_aggregate": _Operation(_group_aggregate_check, _group_aggregate_run),
    "filter": _Operation(_filter_check, _filter_run, transforms=True),
    "sort": _Operation(_sort_check, _sort_run, transforms=True),
    "top_n": _Operation(_top_n_check, _top_n_run),
    "pivot": _Operation(_pivot_check, _pivot_run),
    "value_counts": _Operation(_value_counts_check, _value_counts_run),
    "chart": _Operation(_chart_check, _chart_run),
}
