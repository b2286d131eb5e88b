// Chat page behaviour: keyboard, size checks before sending, composer reset, scrolling.
// No inline script (the Content-Security-Policy forbids it); htmx does the rest.
(function () {
  "use strict";

  function composer() { return document.getElementById("composer"); }
  function input() { return document.getElementById("composer-input"); }
  function messages() { return document.getElementById("messages"); }

  function showNotice(text) {
    var notice = document.getElementById("notice");
    if (!notice) return;
    notice.className = "notice error";
    notice.setAttribute("role", "alert");
    notice.textContent = text;
  }

  // Auto-scroll only while the reader is at the bottom; reading further up stops it.
  var stickToBottom = true;
  document.addEventListener("scroll", function () {
    var el = document.scrollingElement;
    stickToBottom = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  }, { passive: true });

  function scrollIfSticky() {
    if (stickToBottom) {
      var el = document.scrollingElement;
      el.scrollTop = el.scrollHeight;
    }
  }

  document.addEventListener("keydown", function (event) {
    if (event.target !== input()) return;
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      var send = document.getElementById("send-button");
      if (send && !send.disabled) composer().requestSubmit();
    }
  });

  // Stop, Regenerate, Continue and Retry go through one hidden ws-send form.
  function sendAction(action) {
    document.getElementById("action-input").value = action;
    document.getElementById("action-form").requestSubmit();
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-stop]")) {
      sendAction("stop");
      return;
    }
    var button = event.target.closest("[data-action]");
    if (button) sendAction(button.dataset.action);
  });

  // Refuse empty or oversized input in the page, before anything is sent.
  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target !== composer()) return;
    var text = (event.detail.parameters.message || "").trim();
    var limit = parseInt(composer().dataset.maxChars, 10);
    if (!text) {
      event.preventDefault();
      showNotice("Type a message before sending.");
    } else if (text.length > limit) {
      event.preventDefault();
      showNotice("That message is " + text.length.toLocaleString() +
        " characters; the limit is " + limit.toLocaleString() + ".");
    }
  });

  // A started turn swaps in #composer-reset with the new message's id: the text was
  // accepted and stored, so the composer can be cleared (a refusal keeps the text).
  var lastReset = "";
  function resetComposerIfAccepted() {
    var marker = document.getElementById("composer-reset");
    if (marker && marker.dataset.reset && marker.dataset.reset !== lastReset) {
      lastReset = marker.dataset.reset;
      input().value = "";
    }
  }

  document.addEventListener("htmx:wsAfterMessage", function () {
    resetComposerIfAccepted();
    scrollIfSticky();
  });
  document.addEventListener("DOMContentLoaded", function () { stickToBottom = true; scrollIfSticky(); });
})();
