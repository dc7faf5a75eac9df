/* The alarm page: the evidence chart (uPlot, vendored under static/vendor/uplot), drawn from
 * the data attribute the page carries. The first series is what was measured (bars, a line or
 * steps); the others are limits and baselines, drawn as dashed lines. A shaded band marks the
 * stretch the rule fired on. Without JavaScript the figures stay readable in their table. */
(function () {
  "use strict";

  var HEIGHT = 280;

  function cssColour(element, name, fallback) {
    var value = getComputedStyle(element).getPropertyValue(name).trim();
    return value || fallback;
  }

  function bandPlugin(band, colour) {
    return {
      hooks: {
        drawClear: function (plot) {
          if (!band) {
            return;
          }
          var left = plot.valToPos(band[0], "x", true);
          var right = plot.valToPos(band[1], "x", true);
          var box = plot.bbox;
          left = Math.max(left, box.left);
          right = Math.min(right, box.left + box.width);
          if (right <= left) {
            return;
          }
          var context = plot.ctx;
          context.save();
          context.fillStyle = colour;
          context.fillRect(left, box.top, right - left, box.height);
          context.restore();
        },
      },
    };
  }

  function measuredPaths(style) {
    if (style === "line") {
      return uPlot.paths.linear();
    }
    if (style === "steps") {
      return uPlot.paths.stepped({ align: 1 });
    }
    return uPlot.paths.bars({ size: [0.8, 48], align: 1 });
  }

  function draw(element) {
    if (element.dataset.drawn || typeof uPlot === "undefined") {
      return;
    }
    element.dataset.drawn = "1";
    var data = JSON.parse(element.dataset.alarmChart);
    var accent = cssColour(element, "--accent", "#0b6bcb");
    var bad = cssColour(element, "--bad", "#b42318");
    var unit = data.unit ? " " + data.unit : "";
    var width = function () {
      return Math.max(element.clientWidth, 280);
    };
    var series = [{ label: data.timeLabel }];
    data.series.forEach(function (line) {
      var entry = {
        label: line.label,
        width: line.limit ? 2 : 1,
        spanGaps: false,
        points: { show: false },
        value: function (plot, value) {
          return value == null ? "–" : value + unit;
        },
      };
      if (line.limit) {
        entry.stroke = bad;
        entry.dash = [6, 4];
      } else {
        entry.stroke = accent;
        entry.fill = data.style === "bars" ? accent + "66" : undefined;
        entry.paths = measuredPaths(data.style);
      }
      series.push(entry);
    });
    var options = {
      width: width(),
      height: HEIGHT,
      // Times are shown in the property's time zone, not the browser's.
      tzDate: function (seconds) {
        return uPlot.tzDate(new Date(seconds * 1000), data.zone);
      },
      scales: { x: { time: true } },
      series: series,
      axes: [
        {},
        {
          size: 72,
          values: function (plot, splits) {
            return splits.map(function (value) {
              return value + unit;
            });
          },
        },
      ],
      plugins: [bandPlugin(data.band, bad + "22")],
    };
    var columns = [data.x].concat(
      data.series.map(function (line) {
        return line.values;
      })
    );
    var plot = new uPlot(options, columns, element);
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
    if (root.matches && root.matches("[data-alarm-chart]")) {
      draw(root);
    }
    root.querySelectorAll("[data-alarm-chart]").forEach(draw);
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
