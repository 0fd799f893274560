// Batch import with per-item progress (spec kiro-ops §6.3): the form is sent with fetch to
// the streaming endpoint, each `data: <json>` event becomes a table row, and "Stop" aborts
// the request; the server then starts no new item and keeps the finished ones.
(function () {
  "use strict";

  var form = document.getElementById("batch-form");
  if (!form || !window.fetch || !window.AbortController || !window.TextDecoder) {
    return; // the plain form post still works
  }
  var stop = document.getElementById("batch-stop");
  var table = document.getElementById("batch-progress");
  var body = table.querySelector("tbody");
  var summary = document.getElementById("batch-progress-summary");
  var controller = null;

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function show(event) {
    if (event.status === "summary") {
      var s = event.summary;
      summary.textContent =
        s.total + " item(s): " + s.verified + " verified, " + s.imported + " imported, " +
        s.duplicate + " duplicate, " + s.failed + " failed (" + s.rolledBack + " rolled back)";
      return;
    }
    var row = document.createElement("tr");
    cell(row, event.index);
    cell(row, event.email || "(no email)");
    cell(row, event.status).className = "outcome-" + event.status;
    cell(row, event.usage || "");
    cell(row, (event.error || "") + (event.rolledBack ? " (rolled back)" : ""));
    if (event.credentialId) {
      var link = document.createElement("a");
      link.href = form.dataset.changeUrl.replace("/0/", "/" + event.credentialId + "/");
      link.textContent = "#" + event.credentialId;
      row.appendChild(document.createElement("td")).appendChild(link);
    } else {
      cell(row, "");
    }
    body.appendChild(row);
  }

  function finish(text) {
    stop.hidden = true;
    form.querySelector("[type=submit]").disabled = false;
    controller = null;
    if (text) {
      summary.textContent = text;
    }
  }

  stop.addEventListener("click", function () {
    if (controller) {
      controller.abort();
    }
  });

  form.addEventListener("submit", function (submitEvent) {
    submitEvent.preventDefault();
    controller = new AbortController();
    body.textContent = "";
    summary.textContent = "Importing …";
    table.hidden = false;
    stop.hidden = false;
    form.querySelector("[type=submit]").disabled = true;
    var decoder = new TextDecoder();
    var buffer = "";

    fetch(form.dataset.streamUrl, {
      method: "POST",
      body: new FormData(form),
      credentials: "same-origin",
      signal: controller.signal,
    })
      .then(function (response) {
        if (!response.ok) {
          return response.json().then(function (data) {
            finish(data.error || "The import was refused (" + response.status + ").");
          });
        }
        var reader = response.body.getReader();
        function read() {
          return reader.read().then(function (chunk) {
            if (chunk.done) {
              finish("");
              return;
            }
            buffer += decoder.decode(chunk.value, { stream: true });
            var events = buffer.split("\n\n");
            buffer = events.pop();
            events.forEach(function (text) {
              if (text.indexOf("data: ") === 0) {
                show(JSON.parse(text.slice(6)));
              }
            });
            return read();
          });
        }
        return read();
      })
      .catch(function (error) {
        finish(
          error.name === "AbortError"
            ? "Stopped: no further items were started; the ones listed are kept."
            : "The import failed: " + error
        );
      });
  });
})();
