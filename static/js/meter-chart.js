/* The meter page: the consumption chart (uPlot, vendored under static/vendor/uplot) drawn from
 * the data attribute its partial carries, and the confirmation dialogs of cut-off and restore.
 * Without JavaScript the chart's figures stay readable in their table and the dialogs open as
 * plain pages (?confirm=...). */
(function () {
  "use strict";

  var HEIGHT = 256;
  var STEP_SECONDS = { hours: 3600, days: 86400 };

  function cssColour(element, name, fallback) {
    var value = getComputedStyle(element).getPropertyValue(name).trim();
    return value || fallback;
  }

  function draw(element) {
    if (element.dataset.drawn || typeof uPlot === "undefined") {
      return;
    }
    element.dataset.drawn = "1";
    var data = JSON.parse(element.dataset.chart);
    var step = STEP_SECONDS[data.period] || 3600;
    var quantities = data.y.map(Number);
    var colour = cssColour(element, "--accent", "#0b6bcb");
    var width = function () {
      return Math.max(element.clientWidth, 280);
    };
    var places = data.period === "days" ? 2 : 3;
    var options = {
      width: width(),
      height: HEIGHT,
      // Bucket starts are shown in the property's time zone, not the browser's.
      tzDate: function (seconds) {
        return uPlot.tzDate(new Date(seconds * 1000), data.zone);
      },
      scales: {
        x: {
          time: true,
          range: function (plot, min, max) {
            return [min, max + step];
          },
        },
        y: {
          range: function (plot, min, max) {
            return [0, max > 0 ? max * 1.1 : 1];
          },
        },
      },
      series: [
        { label: element.dataset.timeLabel },
        {
          label: element.dataset.seriesLabel,
          stroke: colour,
          fill: colour + "66",
          width: 1,
          paths: uPlot.paths.bars({ size: [0.8, 48], align: 1 }),
          points: { show: false },
          value: function (plot, value) {
            return value == null ? "–" : value.toFixed(places) + " " + data.unit;
          },
        },
      ],
      axes: [
        {},
        {
          size: 64,
          values: function (plot, splits) {
            return splits.map(function (value) {
              return value + " " + data.unit;
            });
          },
        },
      ],
    };
    var plot = new uPlot(options, [data.x, quantities], element);
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
    if (root.matches && root.matches("[data-chart]")) {
      draw(root);
    }
    root.querySelectorAll("[data-chart]").forEach(draw);
  }

  function firstField(dialog) {
    return dialog.querySelector("textarea, input:not([type=hidden]), select");
  }

  // A dialog the server opened (a refused form, or ?confirm= without JavaScript) becomes modal.
  function promoteOpenDialogs(root) {
    root.querySelectorAll("dialog[open]").forEach(function (dialog) {
      if (dialog.showModal && !dialog.matches(":modal")) {
        dialog.close();
        dialog.showModal();
      }
    });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.dialog);
      if (dialog && dialog.showModal) {
        event.preventDefault();
        dialog.showModal();
        var field = firstField(dialog);
        if (field) {
          field.focus();
        }
      }
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer && closer.closest("dialog")) {
      event.preventDefault();
      closer.closest("dialog").close();
    }
  });

  // The server answers a switch that went through with this event: the dialog's work is done.
  document.body.addEventListener("relay-issued", function () {
    document.querySelectorAll("dialog[open]").forEach(function (dialog) {
      dialog.close();
    });
  });

  function start() {
    drawAll(document);
    promoteOpenDialogs(document);
  }

  if (typeof htmx !== "undefined") {
    htmx.onLoad(drawAll);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
