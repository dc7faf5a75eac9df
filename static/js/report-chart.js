/* The report page's chart: uPlot (vendored under static/vendor/uplot) drawn from the JSON data
 * element its partial carries (json_script), as bars or lines over the report's labels (days,
 * months or units). Without JavaScript the chart's figures stay readable in the table below
 * it. Redrawn whenever htmx swaps the report in again. */
(function () {
  "use strict";

  var HEIGHT = 280;
  var PALETTE = ["#0b6bcb", "#c2410c", "#15803d", "#7c3aed", "#b91c1c", "#0f766e"];

  function colourOf(element, index) {
    if (index === 0) {
      var accent = getComputedStyle(element).getPropertyValue("--accent").trim();
      if (accent) {
        return accent;
      }
    }
    return PALETTE[index % PALETTE.length];
  }

  function draw(element) {
    if (element.dataset.drawn || typeof uPlot === "undefined") {
      return;
    }
    var source = document.getElementById(element.dataset.reportChart);
    if (!source) {
      return;
    }
    element.dataset.drawn = "1";
    var chart = JSON.parse(source.textContent);
    var labels = chart.labels;
    var unit = chart.unit ? " " + chart.unit : "";
    var bars = chart.style !== "lines";
    var count = chart.series.length;
    var x = labels.map(function (label, index) {
      return index;
    });
    var series = [
      {
        label: element.dataset.xLabel || "",
        value: function (plot, index) {
          return index == null ? "–" : labels[index];
        },
      },
    ];
    var data = [x];
    chart.series.forEach(function (one, index) {
      var colour = colourOf(element, index);
      // Several bar series overlap, each narrower than the one before, so all stay visible.
      var size = 0.8 * (count - index) / count;
      series.push({
        label: one.label,
        stroke: colour,
        fill: bars ? colour + "99" : undefined,
        width: bars ? 1 : 2,
        paths: bars ? uPlot.paths.bars({ size: [size, 64] }) : undefined,
        points: { show: !bars },
        value: function (plot, value) {
          return value == null ? "–" : value + unit;
        },
      });
      data.push(one.values.map(function (value) {
        return value == null ? null : Number(value);
      }));
    });
    var width = function () {
      return Math.max(element.clientWidth, 280);
    };
    var options = {
      width: width(),
      height: HEIGHT,
      scales: {
        x: {
          time: false,
          range: function () {
            return [-0.5, labels.length - 0.5];
          },
        },
        y: {
          range: function (plot, min, max) {
            var low = Math.min(0, min);
            var high = max > 0 ? max * 1.1 : 1;
            return [low, high];
          },
        },
      },
      series: series,
      axes: [
        {
          incrs: [1, 2, 5, 10, 20, 50, 100],
          values: function (plot, splits) {
            return splits.map(function (index) {
              return Number.isInteger(index) && labels[index] !== undefined ? labels[index] : "";
            });
          },
        },
        {
          size: 72,
          values: function (plot, splits) {
            return splits.map(function (value) {
              return value + unit;
            });
          },
        },
      ],
    };
    var plot = new uPlot(options, data, element);
    if (typeof ResizeObserver !== "undefined") {
      var observer = new ResizeObserver(function () {
        if (!element.isConnected) {
          observer.disconnect();
          plot.destroy();
          return;
        }
        plot.setSize({ width: width(), height: HEIGHT });
      });
      observer.observe(element);
    }
  }

  function drawAll(root) {
    if (root.matches && root.matches("[data-report-chart]")) {
      draw(root);
    }
    if (root.querySelectorAll) {
      root.querySelectorAll("[data-report-chart]").forEach(draw);
    }
  }

  if (typeof htmx !== "undefined") {
    htmx.onLoad(drawAll);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () {
      drawAll(document);
    });
  } else {
    drawAll(document);
  }
})();
