// MedLedger practice pages: the little script they need. Everything works without it but the
// import's progress and the idle logoff's redirect.
"use strict";

// Automatic logoff: the node ends a session idle for data-idle-seconds; the page follows, so a
// screen left open does not keep showing a patient's records.
(function () {
  var idle = parseInt(document.body.getAttribute("data-idle-seconds") || "0", 10);
  if (!idle) { return; }
  var timer;
  function arm() {
    clearTimeout(timer);
    timer = setTimeout(function () { window.location.assign("/ui/login?ended=1"); }, idle * 1000);
  }
  // Only navigation and form posts reach the node and extend the session, so only a page load
  // restarts the timer: typing on a page does not keep a session the node has ended.
  arm();
})();

// Import with progress: the API's NDJSON stream (progress lines, then the result) read as it comes.
(function () {
  var form = document.getElementById("import");
  if (!form || !window.fetch || !window.TextDecoder) { return; }
  var bar = document.getElementById("import-bar");
  var msg = document.getElementById("import-msg");
  var phases = { validated: "Checked", sealed: "Encrypted and stored", anchored: "Written to the ledger" };
  var lastStep = "";
  // The page reloads to list the new records; what the import did is said again after it.
  var done = window.sessionStorage && sessionStorage.getItem("medledger-import");
  if (done) {
    sessionStorage.removeItem("medledger-import");
    msg.textContent = done;
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var data = new FormData(form);
    var button = document.getElementById("import-go");
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    msg.textContent = "Uploading…";
    fetch(form.action, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "Accept": "application/x-ndjson", "X-CSRF-Token": data.get("csrf") }
    }).then(function (resp) {
      var reader = resp.body.getReader();
      var dec = new TextDecoder();
      var buf = "";
      function line(l) {
        if (!l.trim()) { return; }
        var v;
        try { v = JSON.parse(l); } catch (e) { msg.textContent = "The node's answer was not understood."; return; }
        if (v.progress) {
          var p = v.progress;
          bar.max = Math.max(p.total, 1);
          bar.value = p.done;
          lastStep = (phases[p.phase] || p.phase) + ": " + p.done + " of " + p.total;
          msg.textContent = lastStep;
        } else if (v.status === 201 && v.result) {
          var n = (v.result.records || []).length;
          bar.value = bar.max;
          var said = "Imported: " + n + " record" + (n === 1 ? "" : "s") + (lastStep ? " (" + lastStep + ")" : "") + ".";
          msg.textContent = said + " Reloading the list…";
          if (window.sessionStorage) { sessionStorage.setItem("medledger-import", said); }
          window.location.assign(window.location.pathname + "?imported=1");
        } else if (v.error) {
          msg.textContent = "Import refused: " + v.error;
          msg.setAttribute("role", "alert");
          button.disabled = false;
        }
      }
      function pump() {
        return reader.read().then(function (r) {
          if (r.done) { line(buf); button.disabled = false; return; }
          buf += dec.decode(r.value, { stream: true });
          var parts = buf.split("\n");
          buf = parts.pop();
          parts.forEach(line);
          return pump();
        });
      }
      return pump();
    }).catch(function (e) {
      msg.textContent = "The import could not be sent: " + e;
      button.disabled = false;
    });
  });
})();
