// A dashboard page: every visual fetched from the JSON API with the page's URL filters and
// drawn (KPI tiles, tables, Plotly charts); a click on a drillable point sets
// drill.<param>=<value> in the URL (a new history entry, so "back" returns); the rows behind a
// drilled point are listed under the visual; the lake changing redraws everything.
(function () {
  "use strict";
  const pageEl = document.getElementById("bi-page");
  if (!pageEl) return;
  const page = JSON.parse(pageEl.textContent);
  const query = page.query ? "?" + page.query : "";
  const base = "/bi/api/dashboards/" + encodeURIComponent(page.dashboard) + "/visuals/";
  const plotConfig = {displaylogo: false, responsive: true};
  const money = new Intl.NumberFormat("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2});
  const number = new Intl.NumberFormat("en-US", {maximumFractionDigits: 2});

  function format(value, kind) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    switch (kind) {
      case "money": return money.format(value);
      case "percent": return number.format(value * 100) + " %";
      case "seconds": return number.format(value) + " s";
      case "milliseconds": return number.format(value) + " ms";
      default: return number.format(value);
    }
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function table(columns, rows, formats, testid) {
    const wrap = el("div", {class: "table-wrap"});
    const t = el("table", {"data-testid": testid});
    const head = el("tr");
    columns.forEach(c => head.appendChild(el("th", {}, c)));
    t.appendChild(el("thead")).appendChild(head);
    const body = t.appendChild(el("tbody"));
    rows.forEach(row => {
      const tr = body.appendChild(el("tr"));
      row.forEach((v, i) => {
        const fmt = (formats || {})[columns[i]];
        tr.appendChild(el("td", typeof v === "number" ? {class: "num"} : {},
                          fmt ? format(v, fmt) : (v === null ? "" : String(v))));
      });
    });
    wrap.appendChild(t);
    return wrap;
  }

  function kpi(v, res) {
    const box = el("div");
    box.appendChild(el("div", {class: "kpi", "data-testid": "kpi-value"}, format(res.value, v.format)));
    if (v.compare) {
      let cls = "flat", arrow = "▬", text = "no previous period";
      if (res.change !== null && res.change !== undefined) {
        cls = res.change > 0 ? "up" : (res.change < 0 ? "down" : "flat");
        arrow = res.change > 0 ? "▲" : (res.change < 0 ? "▼" : "▬");
        text = (res.change > 0 ? "+" : "") + number.format(res.change * 100) + " % vs previous period";
      }
      const ch = el("div", {class: "change " + cls, "data-testid": "kpi-change",
                            title: "previous period: " + format(res.previous, v.format)});
      ch.textContent = arrow + " " + text;
      box.appendChild(ch);
    }
    return box;
  }

  function figureFor(v, res) {
    if (res.figure && res.figure.data) return res.figure;
    // No figure from the engine: draw x against the first y column.
    const xi = res.columns.indexOf(v.x || res.columns[0]);
    const yi = res.columns.length > 1 ? 1 : 0;
    return {data: [{type: v.kind === "line" ? "scatter" : "bar", x: res.rows.map(r => r[xi]),
                    y: res.rows.map(r => r[yi])}], layout: {}};
  }

  function chart(v, res, body) {
    const fig = figureFor(v, res);
    const data = fig.data.map(trace => {
      if (!trace.hovertemplate && !trace.hoverinfo) {
        return Object.assign({}, trace, {hovertemplate: "%{x}<br>%{y}<extra>%{fullData.name}</extra>"});
      }
      return trace;
    });
    const layout = Object.assign({margin: {l: 50, r: 20, t: 10, b: 50}, autosize: true,
                                  height: 340}, fig.layout || {});
    delete layout.width;
    const div = el("div", {class: "chart", "data-testid": "chart"});
    body.appendChild(div);
    return Plotly.react(div, data, layout, plotConfig).then(() => {
      if (v.drill) {
        div.classList.add("drillable");
        div.on("plotly_click", ev => drill(v, ev.points[0]));
      }
      return div;
    });
  }

  function drillValue(point) {
    let value = point.customdata;
    if (Array.isArray(value)) value = value[0];
    if (value === undefined || value === null) {
      value = point.data && point.data.orientation === "h" ? point.y : point.x;
    }
    return String(value);
  }

  function drill(v, point) {
    const url = new URL(window.location.href);
    url.searchParams.set("drill." + v.drill.param, drillValue(point));
    window.location.assign(url.toString());  // a new history entry: the browser's back returns
  }

  async function fetchJson(url) {
    const r = await fetch(url, {headers: {"Accept": "application/json"}});
    const body = await r.json().catch(() => ({}));
    if (!r.ok) {
      const message = body.error ? body.error.message : "HTTP " + r.status;
      throw new Error(message);
    }
    return body;
  }

  async function load(v) {
    const slot = document.getElementById("slot-" + v.slot);
    const body = slot.querySelector(".body");
    const notes = slot.querySelector(".notes");
    slot.dataset.state = "loading";
    try {
      const res = await fetchJson(base + encodeURIComponent(v.id) + query);
      body.replaceChildren();
      slot.dataset.rows = String(res.rows.length);
      if (v.kind === "kpi") body.appendChild(kpi(v, res));
      else if (v.kind === "table") body.appendChild(table(res.columns, res.rows, v.formats, "visual-table"));
      else if (res.rows.length === 0) body.appendChild(el("p", {class: "muted"}, "No data for these filters."));
      else await chart(v, res, body);
      notes.textContent = (res.notes || []).join(" · ") + (res.truncated ? " (first rows only)" : "");
      if (v.detail_of && v.detail_value !== null) await loadDetail(v, slot);
      slot.dataset.state = "ready";
    } catch (e) {
      body.replaceChildren(el("p", {class: "error", "data-testid": "visual-error"}, e.message));
      slot.dataset.state = "error";
    }
  }

  async function loadDetail(v, slot) {
    const box = slot.querySelector(".detail-body");
    const sep = query ? "&" : "?";
    const url = base + encodeURIComponent(v.detail_of) + "/detail" + query + sep +
      "value=" + encodeURIComponent(v.detail_value);
    try {
      const res = await fetchJson(url);
      box.replaceChildren(table(res.columns, res.rows, {}, "detail-table"));
    } catch (e) {
      box.replaceChildren(el("p", {class: "error"}, e.message));
    }
  }

  // A pipeline run commits its tables one after another, so the lake may change several
  // times in a few seconds: a change that arrives mid-draw is drawn once, after it.
  let draws = 0;
  let drawing = false;
  let again = false;
  async function loadAll() {
    if (drawing) { again = true; return; }
    drawing = true;
    const grid = document.getElementById("grid");
    try {
      do {
        again = false;
        grid.dataset.state = "loading";
        await Promise.all(page.visuals.map(load));
        draws += 1;
        grid.dataset.draws = String(draws);  // how many times the page drew (tests, people)
      } while (again);
    } finally {
      drawing = false;
      grid.dataset.state = "ready";
    }
  }

  window.addEventListener("bi:lake-changed", loadAll);
  loadAll();
})();
