/* The portals' live parts, in plain JavaScript (no build step, no inline script: the CSP
   allows script-src 'self' only). Every page works without it; this adds:
   - [data-poll-url]: re-fetch a server-rendered fragment and swap it in until the fragment
     comes back without data-poll-url (a pod reaching RUNNING, logs arriving);
   - [data-chart]: a bar chart drawn as SVG from a json_script block;
   - form[data-price-form]: the live price of a pod from the offers the server reads;
   - [data-copy]: copy a secret or snippet to the clipboard;
   - [data-redirect-url]: continue to a page on another origin (Stripe Checkout);
   - form[data-busy]: disable the submit button and show a spinner while the server works;
   - form[data-confirm]: ask before doing something that cannot be undone.
   Nothing here may throw or log an error: the browser tests fail on any console error. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";

  function fragmentFrom(html) {
    var template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content.firstElementChild;
  }

  /* ---- polling -------------------------------------------------------------------------- */
  function schedulePoll(element) {
    var url = element.getAttribute("data-poll-url");
    if (!url) return;
    var interval = parseInt(element.getAttribute("data-poll-interval") || "2000", 10);
    var failures = 0;
    function tick() {
      if (!element.isConnected) return;
      if (document.hidden) { window.setTimeout(tick, interval); return; }
      fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (response.redirected) {
            // The session ended (the fragment answered with the log-in page): reload, so
            // the log-in page comes back here afterwards.
            window.location.reload();
            return null;
          }
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.text();
        })
        .then(function (html) {
          if (html === null) return;
          failures = 0;
          var replacement = fragmentFrom(html);
          if (!replacement || !element.isConnected) return;
          element.replaceWith(replacement);
          enhance(replacement);
        })
        .catch(function () {
          // A navigation away aborts the fetch; a server hiccup is retried more slowly.
          failures += 1;
          if (element.isConnected && failures < 30) {
            window.setTimeout(tick, interval * Math.min(failures + 1, 5));
          }
        });
    }
    window.setTimeout(tick, interval);
  }

  /* ---- charts --------------------------------------------------------------------------- */
  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function drawBarChart(container) {
    var source = document.getElementById(container.getAttribute("data-chart"));
    if (!source) return;
    var points;
    try { points = JSON.parse(source.textContent); } catch (e) { return; }
    if (!points.length) return;
    points.forEach(function (p) { p.value = parseFloat(p.value) || 0; });
    var width = 600, height = 180, left = 44, bottom = 20, top = 8;
    var max = Math.max.apply(null, points.map(function (p) { return p.value; })) || 1;
    var prefix = container.getAttribute("data-chart-prefix") || "";
    var decimals = max >= 10 ? 0 : max >= 0.1 ? 2 : 4;
    var svg = el("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": container.getAttribute("data-chart-label") || "chart" });
    var plotH = height - bottom - top, plotW = width - left;
    var slot = plotW / points.length;
    [0, 0.5, 1].forEach(function (f) {
      var y = top + plotH * (1 - f);
      svg.appendChild(el("line", { x1: left, x2: width, y1: y, y2: y, "class": "axis" }));
      svg.appendChild(el("text", { x: left - 4, y: y + 3, "text-anchor": "end" },
        prefix + (max * f).toFixed(decimals)));
    });
    points.forEach(function (p, i) {
      var h = Math.max(p.value > 0 ? 1 : 0, plotH * p.value / max);
      var x = left + i * slot + slot * 0.15;
      var bar = el("rect", { x: x, y: top + plotH - h, width: slot * 0.7, height: h, "class": "bar" });
      bar.appendChild(el("title", {}, p.label + ": " + prefix + p.value.toFixed(Math.max(decimals, 2))));
      svg.appendChild(bar);
      if (points.length <= 12 || i % Math.ceil(points.length / 10) === 0) {
        svg.appendChild(el("text", { x: x + slot * 0.35, y: height - 6, "text-anchor": "middle" }, p.short || p.label));
      }
    });
    container.replaceChildren(svg);
  }

  /* ---- live pod price ------------------------------------------------------------------- */
  function dollars(micros) { return (micros / 1e6).toFixed(2); }

  function setupPriceForm(form) {
    var model = form.querySelector("select[name=gpu_model]");
    var count = form.querySelector("input[name=gpu_count]");
    var output = form.querySelector("[data-price-output]");
    if (!model || !count || !output) return;
    var offers = {};
    function readOffers(list) {
      offers = {};
      // the live price: the cheapest on-demand row per model (own nodes or upstream)
      list.forEach(function (o) {
        if (o.spot) return;
        var known = offers[o.gpu_model];
        if (!known || o.price_per_gpu_hour < known.price_per_gpu_hour) offers[o.gpu_model] = o;
      });
    }
    var initial = document.getElementById(form.getAttribute("data-offers"));
    if (initial) { try { readOffers(JSON.parse(initial.textContent)); } catch (e) { offers = {}; } }
    function render() {
      var offer = offers[model.value];
      var isCpu = model.value === "CPU";
      if (isCpu) { count.value = "0"; count.min = "0"; count.max = "0"; }
      else { count.min = "1"; count.max = "8"; if (count.value === "0") count.value = "1"; }
      var n = parseInt(count.value || "0", 10) || 0;
      if (!offer) {
        output.textContent = "No free " + model.value + " right now: the pod will wait in PENDING until one frees up.";
        return;
      }
      var perHour = offer.price_per_gpu_hour * Math.max(n, 1);
      var text = "$" + dollars(perHour) + "/h";
      if (!isCpu) {
        text += " (" + n + " × $" + dollars(offer.price_per_gpu_hour) + "/GPU-h) · " +
          offer.free_gpus + " free, up to " + offer.max_gpus_per_node + " on one node";
        if (offer.source === "upstream") {
          text += " · " + (offer.provider || offer.provider_kind) + ", markup included";
        }
        if (n > offer.max_gpus_per_node) text += " — no node has " + n + " free: it will wait";
      } else {
        text += " (CPU only)";
      }
      output.textContent = text;
    }
    model.addEventListener("change", render);
    count.addEventListener("input", render);
    render();
    var url = form.getAttribute("data-offers-url");
    if (url) {
      window.setInterval(function () {
        if (document.hidden) return;
        fetch(url, { credentials: "same-origin" })
          .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
          .then(function (body) { readOffers(body.offers || []); render(); })
          .catch(function () { /* keep the last known prices */ });
      }, 10000);
    }
  }

  /* ---- small behaviours ----------------------------------------------------------------- */
  function setupCopy(button) {
    button.addEventListener("click", function () {
      var target = document.getElementById(button.getAttribute("data-copy"));
      if (!target) return;
      var text = target.textContent;
      var done = function () { button.textContent = "Copied"; };
      var fallback = function () {
        var range = document.createRange();
        range.selectNodeContents(target);
        var selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, fallback);
      } else {
        fallback();
      }
    });
  }

  function setupBusy(form) {
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) return;
      var button = form.querySelector("button[type=submit], button:not([type])");
      if (!button) return;
      window.setTimeout(function () { button.disabled = true; }, 0);
      var spinner = document.createElement("span");
      spinner.className = "spinner";
      spinner.setAttribute("aria-hidden", "true");
      button.textContent = " " + (form.getAttribute("data-busy") || "Working…");
      button.prepend(spinner);
    });
  }

  function setupConfirm(form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  }

  function enhance(root) {
    var scope = root || document;
    var all = function (selector) {
      var found = Array.prototype.slice.call(scope.querySelectorAll(selector));
      if (scope.matches && scope.matches(selector)) found.unshift(scope);
      return found;
    };
    all("[data-poll-url]").forEach(schedulePoll);
    all("[data-chart]").forEach(drawBarChart);
    all("form[data-price-form]").forEach(setupPriceForm);
    all("[data-copy]").forEach(setupCopy);
    all("form[data-confirm]").forEach(setupConfirm);
    all("form[data-busy]").forEach(setupBusy);
    all("[data-redirect-url]").forEach(function (node) {
      window.setTimeout(function () {
        window.location.assign(node.getAttribute("data-redirect-url"));
      }, 600);
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { enhance(document); });
  } else {
    enhance(document);
  }
})();
