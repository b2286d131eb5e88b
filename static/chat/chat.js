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

  // At most one scroll per animation frame: reading scrollHeight forces a layout, and
  // deltas can arrive many times a frame.
  var scrollPending = false;
  function scrollIfSticky() {
    if (!stickToBottom || scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(function () {
      scrollPending = false;
      var el = document.scrollingElement;
      el.scrollTop = el.scrollHeight;
    });
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

  // A copy button on each code block of a finished answer.
  function addCopyButtons(root) {
    root.querySelectorAll(".msg.assistant:not(.status-streaming) pre").forEach(function (pre) {
      if (pre.querySelector(".copy-code")) return;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "link copy-code";
      button.textContent = "Copy";
      button.setAttribute("aria-label", "Copy this code");
      pre.insertBefore(button, pre.firstChild);
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest(".copy-code");
    if (!button) return;
    var code = button.parentElement.querySelector("code");
    navigator.clipboard.writeText(code ? code.innerText : "").then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1500);
    });
  });

  // Times sent in UTC (budget resets) are shown in the reader's own time zone.
  function localiseTimes(root) {
    root.querySelectorAll("time.local[datetime], [data-budget-meter] time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = when.toLocaleString([], { weekday: "short", hour: "2-digit", minute: "2-digit" });
    });
  }

  function refresh() {
    addCopyButtons(document);
    localiseTimes(document);
  }

  // Deltas only append text: skip the whole-page work for them (it is what a streaming
  // page spends its time on); anything else may add code blocks or times.
  var DELTA_PREFIX = '<div hx-swap-oob="beforeend:#msg-';
  document.addEventListener("htmx:wsAfterMessage", function (event) {
    var message = event.detail.message || "";
    if (message.lastIndexOf(DELTA_PREFIX, 0) !== 0) {
      resetComposerIfAccepted();
      refresh();
    }
    scrollIfSticky();
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    if (event.detail.elt) refresh();
  });

  // A tab back from the background (phones suspend sockets) asks for a resync; if the
  // socket died meanwhile, htmx reconnects and every connection starts with one anyway.
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible" && document.getElementById("action-form")) {
      sendAction("resync");
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    stickToBottom = true;
    scrollIfSticky();
  });
})();
