/* Catalog pages: the deploy dialog and the chat playground. No inline code (CSP
   script-src 'self'); everything is found by attribute.

   - a[data-dialog="<dialog id>"]: opens that <dialog> instead of following the link (the link
     is the page without JavaScript);
   - form[data-playground]: sends the conversation to our own /v1/chat/completions with the
     deployment key typed in, `stream: true`, and appends the answer as the server-sent events
     arrive (read incrementally from the response body). */
(function () {
  "use strict";

  function setupDialog(link) {
    var dialog = document.getElementById(link.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") return;
    link.addEventListener("click", function (event) {
      event.preventDefault();
      dialog.showModal();
    });
  }

  function bubble(log, role, text) {
    var item = document.createElement("div");
    item.className = "chat-message chat-" + role;
    var who = document.createElement("strong");
    who.textContent = role === "user" ? "You" : role === "assistant" ? "Model" : "Error";
    var body = document.createElement("div");
    body.className = "chat-text";
    body.textContent = text;
    item.appendChild(who);
    item.appendChild(body);
    log.appendChild(item);
    return body;
  }

  /* Feed SSE text; calls onData(payload) for each complete `data:` event. Returns the rest
     (an incomplete event) to prepend to the next chunk. */
  function parseEvents(buffer, onData) {
    var events = buffer.split(/\r?\n\r?\n/);
    var rest = events.pop();
    events.forEach(function (event) {
      event.split(/\r?\n/).forEach(function (line) {
        if (line.indexOf("data:") === 0) onData(line.slice(5).trim());
      });
    });
    return rest;
  }

  function errorText(status, body) {
    try {
      var parsed = JSON.parse(body);
      if (parsed && parsed.error && parsed.error.message) return parsed.error.message;
    } catch (ignored) { /* not JSON */ }
    return "HTTP " + status;
  }

  function setupPlayground(form) {
    var section = form.closest(".playground") || form.parentNode;
    var log = section.querySelector(".chat-log");
    var busy = form.querySelector("[data-playground-busy]");
    var button = form.querySelector("button[type=submit]");
    var history = [];

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var key = form.elements.key.value.trim();
      var prompt = form.elements.prompt.value.trim();
      if (!key || !prompt) return;
      history.push({ role: "user", content: prompt });
      bubble(log, "user", prompt);
      var answer = bubble(log, "assistant", "");
      var target = answer.parentNode;
      target.setAttribute("data-state", "streaming");
      target.setAttribute("data-chunks", "0");
      var text = "";
      var chunks = 0;
      button.disabled = true;
      busy.hidden = false;

      function finish(state) {
        target.setAttribute("data-state", state);
        button.disabled = false;
        busy.hidden = true;
        if (state === "done") history.push({ role: "assistant", content: text });
      }

      fetch(form.getAttribute("data-endpoint"), {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + key },
        body: JSON.stringify({ model: form.getAttribute("data-model"), messages: history, stream: true })
      }).then(function (response) {
        if (!response.ok) {
          return response.text().then(function (body) {
            history.pop();
            target.className = "chat-message chat-error";
            answer.textContent = errorText(response.status, body);
            finish("error");
          });
        }
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var pending = "";
        var failed = null;
        function onData(payload) {
          if (payload === "[DONE]") return;
          var data;
          try { data = JSON.parse(payload); } catch (ignored) { return; }
          if (data.error) { failed = data.error.message || "The stream broke."; return; }
          var choice = data.choices && data.choices[0];
          var piece = choice && choice.delta && choice.delta.content;
          if (piece) {
            text += piece;
            chunks += 1;
            answer.textContent = text;
            target.setAttribute("data-chunks", String(chunks));
          }
        }
        function pump() {
          return reader.read().then(function (step) {
            if (step.done) {
              parseEvents(pending + "\n\n", onData);
              if (failed) {
                target.className = "chat-message chat-error";
                answer.textContent = text + " [" + failed + "]";
                finish("error");
              } else {
                finish("done");
              }
              return null;
            }
            pending = parseEvents(pending + decoder.decode(step.value, { stream: true }), onData);
            return pump();
          });
        }
        return pump();
      }).catch(function (error) {
        target.className = "chat-message chat-error";
        answer.textContent = "Could not reach the model: " + error.message;
        finish("error");
      });
    });
  }

  function enhance() {
    Array.prototype.forEach.call(document.querySelectorAll("a[data-dialog]"), setupDialog);
    Array.prototype.forEach.call(document.querySelectorAll("form[data-playground]"), setupPlayground);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", enhance);
  } else {
    enhance();
  }
})();
