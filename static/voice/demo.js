// Voice agent demo: microphone → /ws/voice-agent → speaker, with the protocol in
// shared/reference/voice-protocol.md: JSON text frames for events, binary frames for
// 16-bit little-endian mono PCM (in: at the rate sent in `config`; out: at the rate announced
// in `audio_start`).
(function () {
  "use strict";

  const VAD_RATES = [8000, 16000, 32000, 48000]; // what the server's VAD accepts
  const TARGET_RATE = 16000;

  const root = document.getElementById("voice-demo");
  if (!root) return;
  const form = document.getElementById("voice-form");
  const keyInput = document.getElementById("voice-key");
  const promptInput = document.getElementById("voice-prompt");
  const startButton = document.getElementById("voice-start");
  const stopButton = document.getElementById("voice-stop");
  const statusLine = document.getElementById("voice-status");
  const log = document.getElementById("voice-log");

  let socket = null;
  let micContext = null;
  let micStream = null;
  let speaker = null; // { context, nextTime, sources, rate }
  let assistantLine = null;

  function status(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "voice-status" + (kind ? " " + kind : "");
  }

  function line(kind, text) {
    const item = document.createElement("li");
    item.className = kind;
    item.textContent = text;
    log.appendChild(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  // --- microphone -------------------------------------------------------------------------

  function toPcm16(samples, fromRate, toRate) {
    let data = samples;
    if (fromRate !== toRate) {
      const ratio = fromRate / toRate;
      const length = Math.floor(samples.length / ratio);
      data = new Float32Array(length);
      for (let i = 0; i < length; i += 1) {
        const position = i * ratio;
        const left = Math.floor(position);
        const right = Math.min(left + 1, samples.length - 1);
        data[i] = samples[left] + (samples[right] - samples[left]) * (position - left);
      }
    }
    const pcm = new Int16Array(data.length);
    for (let i = 0; i < data.length; i += 1) {
      const s = Math.max(-1, Math.min(1, data[i]));
      pcm[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
    }
    return pcm;
  }

  async function startMicrophone(ws) {
    micStream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    micContext = new AudioContext();
    const rate = VAD_RATES.includes(micContext.sampleRate) ? micContext.sampleRate : TARGET_RATE;
    await micContext.audioWorklet.addModule(root.dataset.worklet);
    const source = micContext.createMediaStreamSource(micStream);
    const capture = new AudioWorkletNode(micContext, "pcm-capture");
    capture.port.onmessage = function (event) {
      if (ws.readyState === WebSocket.OPEN) {
        ws.send(toPcm16(event.data, micContext.sampleRate, rate).buffer);
      }
    };
    source.connect(capture);
    return rate;
  }

  function stopMicrophone() {
    if (micStream) micStream.getTracks().forEach(function (track) { track.stop(); });
    if (micContext) micContext.close();
    micStream = null;
    micContext = null;
  }

  // --- speaker ----------------------------------------------------------------------------

  function playPcm(buffer) {
    if (!speaker || !speaker.rate) return;
    const pcm = new Int16Array(buffer);
    const audio = speaker.context.createBuffer(1, pcm.length, speaker.rate);
    const channel = audio.getChannelData(0);
    for (let i = 0; i < pcm.length; i += 1) channel[i] = pcm[i] / 0x8000;
    const source = speaker.context.createBufferSource();
    source.buffer = audio;
    source.connect(speaker.context.destination);
    const startAt = Math.max(speaker.nextTime, speaker.context.currentTime + 0.05);
    source.start(startAt);
    speaker.nextTime = startAt + audio.duration;
    speaker.sources.push(source);
    source.onended = function () {
      speaker.sources = speaker.sources.filter(function (s) { return s !== source; });
    };
  }

  function silenceSpeaker() {
    if (!speaker) return;
    speaker.sources.forEach(function (source) { source.stop(); });
    speaker.sources = [];
    speaker.nextTime = 0;
  }

  // --- protocol ---------------------------------------------------------------------------

  function onEvent(event) {
    switch (event.type) {
      case "transcription":
        if (event.final && event.text) line("user", event.text);
        break;
      case "response":
        if (!assistantLine) assistantLine = line("assistant", "");
        assistantLine.textContent = event.delta ? assistantLine.textContent + event.text : event.text;
        if (!event.delta) assistantLine = null;
        break;
      case "audio_start":
        speaker.rate = event.sample_rate;
        status("Speaking…", "live");
        break;
      case "audio_end":
        status("Listening…", "live");
        break;
      case "interrupted":
        silenceSpeaker();
        assistantLine = null;
        line("note", "(interrupted)");
        status("Listening…", "live");
        break;
      case "error":
        line("error", event.code + ": " + event.message);
        break;
      default:
        break;
    }
  }

  function closeReason(code) {
    return {
      4401: "the key was not accepted",
      4408: "idle for too long",
      4409: "a deployment is not ready",
      4429: "too many sessions or rate limited",
      1011: "a backend failed",
    }[code] || "closed (" + code + ")";
  }

  function stop() {
    stopMicrophone();
    silenceSpeaker();
    if (speaker) speaker.context.close();
    speaker = null;
    if (socket && socket.readyState <= WebSocket.OPEN) socket.close(1000);
    socket = null;
    startButton.disabled = false;
    stopButton.disabled = true;
  }

  function start() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = scheme + "://" + location.host + root.dataset.socketPath +
      "?api_key=" + encodeURIComponent(keyInput.value.trim());
    const ws = new WebSocket(url);
    ws.binaryType = "arraybuffer";
    socket = ws;
    speaker = { context: new AudioContext(), nextTime: 0, sources: [], rate: 0 };
    startButton.disabled = true;
    stopButton.disabled = false;
    status("Connecting…");

    ws.onopen = async function () {
      try {
        const rate = await startMicrophone(ws);
        ws.send(JSON.stringify({
          type: "config",
          system_prompt: promptInput.value,
          sample_rate: rate,
        }));
        status("Listening…", "live");
      } catch (error) {
        line("error", "Microphone: " + error.message);
        status("Stopped: no microphone.", "failed");
        stop();
      }
    };
    ws.onmessage = function (message) {
      if (typeof message.data === "string") {
        onEvent(JSON.parse(message.data));
      } else {
        playPcm(message.data);
      }
    };
    ws.onclose = function (event) {
      // The server's reason is worth showing even when we were already stopping.
      if (socket === ws || event.code !== 1000) {
        status("Disconnected: " + closeReason(event.code) + ".", event.code === 1000 ? "" : "failed");
      }
      if (socket === ws) stop();
    };
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!socket) start();
  });
  stopButton.addEventListener("click", function () {
    status("Stopped.");
    stop();
  });
})();
