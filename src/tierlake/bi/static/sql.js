// The SQL page's quick chart: first column as x, first numeric column as y.
(function () {
  "use strict";
  const el = document.getElementById("sql-chart");
  const data = JSON.parse(document.getElementById("sql-chart-data").textContent);
  Plotly.newPlot(el, [{
    type: data.x.length > 60 ? "scatter" : "bar", x: data.x, y: data.y,
    hovertemplate: data.x_title + ": %{x}<br>" + data.y_title + ": %{y}<extra></extra>",
  }], {
    margin: {l: 60, r: 20, t: 10, b: 60}, xaxis: {title: {text: data.x_title}},
    yaxis: {title: {text: data.y_title}},
  }, {displaylogo: false, responsive: true}).then(function () {
    el.dataset.state = "ready";
  });
})();
