"""Shared building blocks for MLScope's dashboards (grafana-foundation-sdk, Grafana 11.6 build).

Every panel made here:
- has its datasource set on the panel AND on every target (the SDK does not copy it down);
- has a refId on every target (the SDK does not set one);
- has a unit and a thresholds config (one base step at least).

Layout is done here too, not by the SDK: Grafana only shows panels *inside* a row when the row is
collapsed, so expanded rows are emitted as a row marker followed by top-level panels, with every
gridPos computed explicitly (deterministic output).
"""

from __future__ import annotations

import json
import string
import typing
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import bargauge, common as common_b, dashboard as dash_b
from grafana_foundation_sdk.builders import prometheus as prom_b, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, dashboard
from grafana_foundation_sdk.models import prometheus as prom_m

DATASOURCE_UID = "prometheus"
DATASOURCE = dashboard.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
TAG = "mlscope"
# Firing alerts for annotations; the always-firing Watchdog would put a permanent band on every graph.
FIRING_ALERTS = 'ALERTS{alertstate="firing",alertname!="Watchdog"}'
GRID_WIDTH = 24

# Grafana colour names used by thresholds.
GREEN, YELLOW, ORANGE, RED, BLUE, TEXT = "green", "yellow", "orange", "red", "blue", "text"


# --------------------------------------------------------------------------- queries

@dataclass(frozen=True)
class Q:
    """One PromQL target. `instant` for tables/bar gauges of the current value, `table` for table format."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _as_q(q: Q | str) -> Q:
    return q if isinstance(q, Q) else Q(q)


def _target(q: Q, ref_id: str) -> prom_b.Dataquery:
    t = prom_b.Dataquery().expr(q.expr).ref_id(ref_id).datasource(DATASOURCE)
    t = t.editor_mode(prom_m.QueryEditorMode.CODE)
    if q.legend:
        t = t.legend_format(q.legend)
    if q.instant:
        t = t.instant()
    else:
        t = t.range()
    if q.table:
        t = t.format(prom_m.PromQueryFormat.TABLE)
    return t


def ref_ids() -> typing.Iterator[str]:
    yield from string.ascii_uppercase


# --------------------------------------------------------------------------- thresholds

def steps(base: str, *pairs: tuple[float, str]) -> dash_b.ThresholdsConfig:
    """Absolute thresholds: `base` colour below the first value, then (value, colour) pairs ascending."""
    values = [v for v, _ in pairs]
    assert values == sorted(values), f"threshold values must ascend: {values}"
    items = [dashboard.Threshold(value=None, color=base)] + [dashboard.Threshold(value=v, color=c) for v, c in pairs]
    return dash_b.ThresholdsConfig().mode(dashboard.ThresholdsMode.ABSOLUTE).steps(items)


def neutral() -> dash_b.ThresholdsConfig:
    """For values with no good/bad level (traffic, spend without a budget): plain text, never a
    reassuring green."""
    return steps(TEXT)


def high_bad(warn: float, crit: float) -> dash_b.ThresholdsConfig:
    return steps(GREEN, (warn, ORANGE), (crit, RED))


def low_bad(crit: float, warn: float) -> dash_b.ThresholdsConfig:
    """Red below `crit`, orange below `warn`, green from `warn` up (availability, budgets)."""
    return steps(RED, (crit, ORANGE), (warn, GREEN))


def any_bad() -> dash_b.ThresholdsConfig:
    """Counts where any non-zero value is a problem (targets down, firing alerts, errors)."""
    return steps(GREEN, (1, RED))


# --------------------------------------------------------------------------- panels

def _common(p, title: str, queries: typing.Sequence[Q | str], unit: str, thresholds: dash_b.ThresholdsConfig,
            w: int, h: int, description: str = "", decimals: float | None = None,
            min_val: float | None = None, max_val: float | None = None,
            links: typing.Sequence[tuple[str, str]] = (), mappings: typing.Sequence[dashboard.ValueMapping] = (),
            no_value: str | None = None, time_from: str | None = None):
    assert queries, f"panel {title!r} has no query"
    assert unit, f"panel {title!r} has no unit"
    p = p.title(title).datasource(DATASOURCE).unit(unit).thresholds(thresholds).span(w).height(h)
    if description:
        p = p.description(description)
    if decimals is not None:
        p = p.decimals(decimals)
    if min_val is not None:
        p = p.min(min_val)
    if max_val is not None:
        p = p.max(max_val)
    if mappings:
        p = p.mappings(list(mappings))
    if no_value is not None:
        p = p.no_value(no_value)
    if time_from is not None:
        p = p.time_from(time_from)     # this panel's own range, e.g. the 30-day SLO window
    if links:
        p = p.links([dash_b.DashboardLink(text).type(dashboard.DashboardLinkType.LINK).url(url)
                     .keep_time(True).include_vars(False).as_dropdown(False).target_blank(False)
                     for text, url in links])
    ids = ref_ids()
    return p.targets([_target(_as_q(q), next(ids)) for q in queries])


def stat_panel(title: str, queries: typing.Sequence[Q | str], unit: str, thresholds=None, *, w: int = 4,
               h: int = 4, graph: bool = True, color_background: bool = False, names: bool = False,
               value_size: float | None = None, **kwargs) -> stat.Panel:
    p = stat.Panel()
    p = _common(p, title, queries, unit, thresholds or neutral(), w, h, **kwargs)
    if value_size is not None:
        p = p.text(common_b.VizTextDisplayOptions().value_size(value_size))
    return (p.graph_mode(common.BigValueGraphMode.AREA if graph else common.BigValueGraphMode.NONE)
            .color_mode(common.BigValueColorMode.BACKGROUND if color_background else common.BigValueColorMode.VALUE)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME if names else common.BigValueTextMode.VALUE)
            .justify_mode(common.BigValueJustifyMode.CENTER)
            .orientation(common.VizOrientation.AUTO)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def timeseries_panel(title: str, queries: typing.Sequence[Q | str], unit: str, thresholds=None, *, w: int = 12,
                     h: int = 8, stack: bool = False, legend_table: bool = False, fill: float = 10,
                     show_thresholds: bool = False, soft_max: float | None = None, **kwargs) -> timeseries.Panel:
    p = timeseries.Panel()
    p = _common(p, title, queries, unit, thresholds or neutral(), w, h, **kwargs)
    legend = common_b.VizLegendOptions().show_legend(True).placement(common.LegendPlacement.BOTTOM)
    if legend_table:
        legend = legend.display_mode(common.LegendDisplayMode.TABLE).calcs(["lastNotNull", "max"])
    else:
        legend = legend.display_mode(common.LegendDisplayMode.LIST).calcs([])
    p = (p.legend(legend)
         .tooltip(common_b.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
         .line_width(1).fill_opacity(fill).show_points(common.VisibilityMode.NEVER)
         .span_nulls(False))
    if stack:
        p = p.stacking(common_b.StackingConfig().mode(common.StackingMode.NORMAL).group("A"))
    if soft_max is not None:
        p = p.axis_soft_max(soft_max)
    if show_thresholds:
        p = p.thresholds_style(common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
    return p


def bargauge_panel(title: str, queries: typing.Sequence[Q | str], unit: str, thresholds=None, *, w: int = 12,
                   h: int = 8, **kwargs) -> bargauge.Panel:
    p = bargauge.Panel()
    p = _common(p, title, queries, unit, thresholds or neutral(), w, h, **kwargs)
    return (p.display_mode(common.BarGaugeDisplayMode.GRADIENT).orientation(common.VizOrientation.HORIZONTAL)
            .show_unfilled(True)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))


def state_panel(title: str, queries: typing.Sequence[Q | str], unit: str, thresholds=None, *, w: int = 12,
                h: int = 8, **kwargs) -> statetimeline.Panel:
    p = statetimeline.Panel()
    p = _common(p, title, queries, unit, thresholds or neutral(), w, h, **kwargs)
    return (p.show_value(common.VisibilityMode.NEVER).merge_values(True).fill_opacity(70)
            .color_scheme(dash_b.FieldColor().mode(dashboard.FieldColorModeId.THRESHOLDS)))


def table_panel(title: str, queries: typing.Sequence[Q | str], unit: str, thresholds=None, *, w: int = 24,
                h: int = 8, hide: typing.Sequence[str] = ("Time", "__name__"), rename: dict | None = None,
                column_units: dict[str, str] | None = None, merge: bool = False, sort_by: str | None = None,
                sort_desc: bool = True, cell_colors: bool = False, tall_rows: bool = False, **kwargs) -> table.Panel:
    """A table of instant values (every query is forced to instant + table format); `tall_rows` for a TV."""
    qs = [Q(q.expr, q.legend, instant=True, table=True) for q in map(_as_q, queries)]
    p = table.Panel()
    p = _common(p, title, qs, unit, thresholds or neutral(), w, h, **kwargs)
    p = p.show_header(True).cell_height(common.TableCellHeight.LG if tall_rows else common.TableCellHeight.SM)
    if cell_colors:
        p = p.cell_options(common.TableColoredBackgroundCellOptions(mode=common.TableCellBackgroundDisplayMode.BASIC))
    transforms = []
    if merge:
        transforms.append(dashboard.DataTransformerConfig(id_val="merge", options={}))
    exclude = {name: True for name in hide}
    transforms.append(dashboard.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": exclude, "renameByName": dict(rename or {}), "indexByName": {}}))
    p = p.transformations(transforms)
    for column, col_unit in (column_units or {}).items():
        p = p.override_by_name(column, [dashboard.DynamicConfigValue(id_val="unit", value=col_unit)])
    if sort_by:
        p = p.sort_by([common_b.TableSortByFieldState().display_name(sort_by).desc(sort_desc)])
    return p


def value_text(mapping: dict[str, tuple[str, str]]) -> dashboard.ValueMap:
    """Value -> (text, colour) mapping, e.g. {"0": ("DOWN", "red"), "1": ("UP", "green")}."""
    return dashboard.ValueMap(options={k: dashboard.ValueMappingResult(text=t, color=c, index=i)
                                       for i, (k, (t, c)) in enumerate(sorted(mapping.items()))})


def value_range(low: float | None, high: float | None, text: str, color: str, index: int = 0) -> dashboard.RangeMap:
    """Values in [low, high] (None: unbounded) shown as `text` in `color`; an empty text keeps the number."""
    return dashboard.RangeMap(options=dashboard.DashboardRangeMapOptions(
        from_val=low, to=high, result=dashboard.ValueMappingResult(text=text or None, color=color, index=index)))


def no_data_text(text: str, color: str = TEXT) -> dashboard.SpecialValueMap:
    """What a null/NaN value reads as (e.g. "not burning" where a division by zero left no value)."""
    return dashboard.SpecialValueMap(options=dashboard.DashboardSpecialValueMapOptions(
        match=dashboard.SpecialValueMatch.NULL_AND_NAN, result=dashboard.ValueMappingResult(text=text, color=color,
                                                                                             index=0)))


def column_thresholds(p, column: str, thresholds: typing.Sequence[tuple[float | None, str]], unit: str | None = None):
    """Colour one table column's cells by its own absolute thresholds (and give it a unit)."""
    props = [dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background",
                                                                             "mode": "basic"}),
             dashboard.DynamicConfigValue(id_val="thresholds", value={
                 "mode": "absolute", "steps": [{"value": v, "color": c} for v, c in thresholds]})]
    if unit:
        props.append(dashboard.DynamicConfigValue(id_val="unit", value=unit))
    return p.override_by_name(column, props)


def column_link(p, column: str, title: str, url: str):
    """A data link on one table column's cells; `url` may use ${__data.fields.<column>} of the same row."""
    return p.override_by_name(column, [dashboard.DynamicConfigValue(
        id_val="links", value=[{"title": title, "url": url, "targetBlank": False}])])


def fixed_color_for_query(p, ref_id: str, color: str = TEXT):
    """Colour one query's values with a fixed colour instead of the thresholds (e.g. a 'total' next to a count)."""
    return p.override_by_query(ref_id, [dashboard.DynamicConfigValue(
        id_val="color", value={"mode": "fixed", "fixedColor": color})])


def color_column(p, column: str, thresholds: list[tuple[float | None, str]]):
    """Colour one table column's cells by absolute thresholds [(None, base colour), (value, colour), ...]."""
    return p.override_by_name(column, [
        dashboard.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}),
        dashboard.DynamicConfigValue(id_val="thresholds", value={
            "mode": "absolute", "steps": [{"value": v, "color": c} for v, c in thresholds]}),
    ])


# --------------------------------------------------------------------------- variables

def query_variable(name: str, label: str, query: str, *, include_all: bool = True) -> dash_b.QueryVariable:
    """A Prometheus label_values() variable; multi-select with All (matches use =~"$name")."""
    v = (dash_b.QueryVariable(name).label(label).query(query).datasource(DATASOURCE)
         .refresh(dashboard.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dashboard.VariableSort.NATURAL_ASC)
         .multi(True))
    if include_all:
        v = v.include_all(True).all_value(".*")
    return v.current(dashboard.VariableOption(selected=True, text="All", value="$__all"))


# --------------------------------------------------------------------------- dashboards

@dataclass
class Section:
    """A row title (None: no row marker) and its panels, laid out left to right, wrapping at 24 columns."""

    title: str | None
    panels: list = field(default_factory=list)


class PromAnnotation(dashboard.AnnotationQuery):
    """A Prometheus annotation query. The SDK model lacks the Prometheus-specific fields
    (step, titleFormat, textFormat, tagKeys, useValueForTime) that Grafana's Prometheus
    datasource reads from the annotation, so they are added here."""

    def __init__(self, name: str, expr: str, icon_color: str, step: str, title_format: str, text_format: str,
                 tag_keys: str) -> None:
        super().__init__(name=name, datasource=DATASOURCE, enable=True, hide=False, icon_color=icon_color,
                         expr=expr, built_in=None)
        self.step = step
        self.title_format = title_format
        self.text_format = text_format
        self.tag_keys = tag_keys

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload.update({"step": self.step, "titleFormat": self.title_format, "textFormat": self.text_format,
                        "tagKeys": self.tag_keys, "useValueForTime": False})
        return payload


def annotations(matchers: str = "") -> list[dashboard.AnnotationQuery]:
    """Grafana's built-in annotations and the firing alerts, narrowed by `matchers` (the dashboard's
    variables, e.g. 'endpoint=~"$endpoint"': an alert without that label still matches All)."""
    builtin = dashboard.AnnotationQuery(
        name="Annotations & Alerts", datasource=dashboard.DataSourceRef(type_val="grafana", uid="-- Grafana --"),
        enable=True, hide=True, icon_color="rgba(0, 211, 255, 1)", type_val="dashboard", built_in=1,
        target=dashboard.AnnotationTarget(limit=100, match_any=False, tags=[], type_val="dashboard"))
    expr = FIRING_ALERTS if not matchers else FIRING_ALERTS[:-1] + "," + matchers + "}"
    firing = PromAnnotation("Firing alerts", expr, icon_color="red", step="60s",
                            title_format="{{alertname}}", text_format="{{alertname}} severity={{severity}}",
                            tag_keys="alertname,severity")
    return [builtin, firing]


def _layout(sections: typing.Sequence[Section]) -> list:
    """Built panel models with explicit gridPos and ids, rows as markers before their panels."""
    out: list = []
    y = 0
    next_id = 1
    for section in sections:
        if section.title is not None:
            row = dash_b.Row(section.title).collapsed(False).id(next_id).build()
            row.panels = []
            row.grid_pos = dashboard.GridPos(h=1, w=GRID_WIDTH, x=0, y=y)
            out.append(row)
            next_id += 1
            y += 1
        x = 0
        line_h = 0
        for builder in section.panels:
            panel = builder.build()
            w, h = panel.grid_pos.w, panel.grid_pos.h
            if x + w > GRID_WIDTH:
                x, y, line_h = 0, y + line_h, 0
            panel.grid_pos = dashboard.GridPos(h=h, w=w, x=x, y=y)
            panel.id_val = next_id
            next_id += 1
            out.append(panel)
            x += w
            line_h = max(line_h, h)
        y += line_h
    return out


def build_dashboard(uid: str, title: str, description: str, sections: typing.Sequence[Section], *,
                    extra_tags: typing.Sequence[str] = (), variables: typing.Sequence = (),
                    refresh: str = "1m", time_from: str = "now-6h", alert_matchers: str = "") -> dashboard.Dashboard:
    b = (dash_b.Dashboard(title).uid(uid).description(description).tags([TAG, *extra_tags])
         .timezone("browser").editable().refresh(refresh).time(time_from, "now")
         .tooltip(dashboard.DashboardCursorSync.CROSSHAIR)
         .timepicker(dash_b.TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]))
         .link(dash_b.DashboardLink("MLScope").type(dashboard.DashboardLinkType.DASHBOARDS).tags([TAG])
               .as_dropdown(False).include_vars(False).keep_time(True).target_blank(False).icon("external link")
               .tooltip("Other MLScope dashboards")))
    if variables:
        b = b.variables(list(variables))
    model = b.build()
    model.id_val = None
    model.panels = _layout(sections)
    model.annotations = dashboard.AnnotationContainer(list_val=annotations(alert_matchers))
    if model.templating is None or model.templating.list_val is None:
        model.templating = dashboard.DashboardDashboardTemplating(list_val=[])
    return model


def to_json(model: dashboard.Dashboard) -> str:
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2) + "\n"


def to_dict(model: dashboard.Dashboard) -> dict:
    return json.loads(to_json(model))


__all__ = [name for name in dir() if not name.startswith("_") and name not in {"annotations", "cogbuilder"}]
