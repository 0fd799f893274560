// Admin login pages (spec kiro-ops §8.4): copy the sign-in link, and for a device-code login
// poll the admin every max(interval, 5) s until the credential exists or the session ends.
(function () {
  "use strict";

  var copy = document.getElementById("copy-link");
  if (copy && navigator.clipboard) {
    copy.addEventListener("click", function () {
      navigator.clipboard.writeText(copy.dataset.link).then(function () {
        copy.textContent = "Link copied";
      });
    });
  } else if (copy) {
    copy.hidden = true;
  }

  var status = document.getElementById("login-status");
  if (!status) {
    return;
  }
  var url = status.dataset.pollUrl;
  var interval = Math.max(parseInt(status.dataset.interval, 10) || 5, 5);
  var tokenInput = document.querySelector("input[name=csrfmiddlewaretoken]");

  function again() {
    window.setTimeout(poll, interval * 1000);
  }

  function poll() {
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": tokenInput ? tokenInput.value : "" },
    })
      .then(function (response) {
        return response.json();
      })
      .then(function (data) {
        status.textContent = data.message || data.status;
        if (data.status === "pending") {
          if (data.interval) {
            interval = Math.max(data.interval, 5);
          }
          again();
          return;
        }
        if (data.status === "done") {
          var link = document.getElementById("login-credential-link");
          link.href = data.credentialUrl;
          document.getElementById("login-done").hidden = false;
          if (data.warning) {
            status.textContent += " Warning: " + data.warning;
          }
        } else {
          status.className = "errornote";
        }
      })
      .catch(function () {
        status.textContent = "Could not reach the admin; trying again …";
        again();
      });
  }

  again();
})();
