// Sparklines of the operator home (the admin index). The figures come from the page's
// json_script block; each canvas names its window and series in data attributes.
(function () {
  "use strict";
  var COLORS = {requests: "#417690", errors: "#ba2121", credits: "#5b8a3a"};
  function draw() {
    var source = document.getElementById("operator-home-sparklines");
    if (!source) { return; }
    var data = JSON.parse(source.textContent);
    var canvases = document.querySelectorAll("canvas[data-sparkline]");
    Array.prototype.forEach.call(canvases, function (canvas) {
      if (typeof Chart === "undefined") {
        canvas.setAttribute("data-rendered", "no-chart-js");
        return;
      }
      var series = data[canvas.getAttribute("data-sparkline")];
      if (!series) { return; }
      var datasets = canvas.getAttribute("data-series").split(" ").map(function (name) {
        return {
          label: name, data: series[name], borderColor: COLORS[name], borderWidth: 1.5,
          pointRadius: 0, fill: false, tension: 0.2
        };
      });
      new Chart(canvas, {
        type: "line",
        data: {labels: series.labels, datasets: datasets},
        options: {
          animation: false, responsive: true, maintainAspectRatio: false,
          plugins: {legend: {display: false}, tooltip: {mode: "index", intersect: false}},
          scales: {x: {display: false}, y: {display: false, beginAtZero: true}}
        },
        plugins: [{
          id: "markRendered",
          afterRender: function (chart) { chart.canvas.setAttribute("data-rendered", "true"); }
        }]
      });
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
