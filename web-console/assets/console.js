// Tideway console: live fragments over Server-Sent Events, the log tail, and small form
// helpers. Hand-written, no dependencies; every page also works without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // Live regions: the server re-renders them and sends {id, html} when they change.
  var liveUrl = document.body.getAttribute("data-live");
  var dot = document.getElementById("live-status");
  function setLive(on, title) {
    if (!dot) return;
    dot.classList.toggle("on", on);
    if (title) dot.title = title;
  }
  if (liveUrl && window.EventSource) {
    var live = new EventSource(liveUrl);
    live.addEventListener("fragment", function (e) {
      var f = JSON.parse(e.data);
      var el = document.getElementById(f.id);
      if (el) el.innerHTML = f.html;
      setLive(true, "Updated " + new Date().toLocaleTimeString());
    });
    live.addEventListener("tick", function () { setLive(true); });
    live.addEventListener("problem", function (e) { setLive(false, e.data); });
    live.addEventListener("expired", function () { window.location.href = "/login"; });
    live.onerror = function () { setLive(false, "Reconnecting…"); };
  }

  // Forms that need a confirmation.
  document.addEventListener("submit", function (e) {
    var msg = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) e.preventDefault();
  });

  // Release form: show the options of the chosen strategy only.
  var releaseForm = document.getElementById("release-form");
  if (releaseForm) {
    var sync = function () {
      var checked = releaseForm.querySelector("input[name=strategy]:checked");
      var kind = checked ? checked.value : "immediate";
      releaseForm.querySelectorAll("fieldset.opts").forEach(function (fs) {
        fs.hidden = fs.getAttribute("data-strategy").split(" ").indexOf(kind) < 0;
      });
    };
    releaseForm.addEventListener("change", sync);
    sync();
  }

  // Log tail.
  var lines = document.getElementById("log-lines");
  if (lines && window.EventSource) {
    var select = document.getElementById("log-instance");
    var pause = document.getElementById("log-pause");
    var status = document.getElementById("log-status");
    var paused = false;
    var source = null;
    var MAX = 500;
    var connect = function () {
      if (source) source.close();
      lines.textContent = "";
      var url = lines.getAttribute("data-src");
      if (select && select.value) url += "?instance=" + encodeURIComponent(select.value);
      source = new EventSource(url);
      source.onopen = function () { status.textContent = "Following " + (select && select.value ? select.value : "all instances") + "."; };
      source.onerror = function () { status.textContent = "Disconnected; retrying…"; };
      source.onmessage = function (e) {
        if (paused) return;
        var l;
        try { l = JSON.parse(e.data); } catch (err) { return; }
        var li = document.createElement("li");
        if (l.stream === "stderr") li.className = "err";
        var t = document.createElement("span");
        t.className = "t";
        t.textContent = (l.time || "").slice(11, 19);
        var i = document.createElement("span");
        i.className = "i";
        i.textContent = l.instance + " v" + l.version;
        li.appendChild(t);
        li.appendChild(i);
        li.appendChild(document.createTextNode(l.line));
        var atBottom = lines.scrollHeight - lines.scrollTop - lines.clientHeight < 30;
        lines.appendChild(li);
        while (lines.childNodes.length > MAX) lines.removeChild(lines.firstChild);
        if (atBottom) lines.scrollTop = lines.scrollHeight;
      };
    };
    if (select) select.addEventListener("change", connect);
    if (pause) pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume" : "Pause";
    });
    connect();
  }
})();
