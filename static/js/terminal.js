/* The pod terminal: xterm.js (static/vendor/xterm) on a WebSocket to /ws/pods/<id>/terminal.
   Binary frames are terminal bytes both ways; text frames are JSON: our resize messages out,
   the server's status messages in ({"type": "status", "state", "message"}). */
(function () {
  "use strict";
  var root = document.getElementById("terminal");
  if (!root || typeof window.Terminal !== "function") {
    return;
  }
  var status = document.getElementById("terminal-status");
  var term = new window.Terminal({ cols: 100, rows: 30, cursorBlink: true, fontSize: 14 });
  term.open(root);

  function show(state, message) {
    status.dataset.state = state;
    status.textContent = message;
  }

  var scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  var socket = new WebSocket(scheme + "//" + window.location.host + root.dataset.socket);
  socket.binaryType = "arraybuffer";
  var encoder = new TextEncoder();

  socket.addEventListener("open", function () {
    socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
  });
  socket.addEventListener("message", function (event) {
    if (typeof event.data !== "string") {
      term.write(new Uint8Array(event.data));
      return;
    }
    var message;
    try {
      message = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (message.type === "status") {
      show(message.state, message.message);
      if (message.state === "open") {
        term.focus();
      }
    }
  });
  socket.addEventListener("close", function () {
    if (status.dataset.state !== "closed" && status.dataset.state !== "error") {
      show("closed", "The terminal is closed. Reload the page to open a new one.");
    }
    term.options.disableStdin = true;
  });
  term.onData(function (data) {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(encoder.encode(data));
    }
  });
  term.onResize(function (size) {
    if (socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "resize", cols: size.cols, rows: size.rows }));
    }
  });
})();
