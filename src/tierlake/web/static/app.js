// tierlake store front: small progressive enhancements; every page works without it.
(function () {
  "use strict";
  // Dismiss flash messages.
  document.addEventListener("click", function (ev) {
    var btn = ev.target.closest("[data-dismiss]");
    if (btn && btn.parentElement) btn.parentElement.remove();
  });
  // Sort selects submit their form on change.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (sel) {
    sel.addEventListener("change", function () { sel.form.submit(); });
  });
  // Buttons marked data-once are disabled after the first submit (the server is
  // idempotent anyway: a second checkout POST never creates a second order).
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.dataset.submitted === "1") { ev.preventDefault(); return; }
    var btn = form.querySelector("[data-once]");
    if (btn) {
      form.dataset.submitted = "1";
      setTimeout(function () { btn.disabled = true; btn.setAttribute("aria-busy", "true"); }, 0);
    }
  });
  // Coming back with the back button re-enables buttons.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-submitted]").forEach(function (form) {
      delete form.dataset.submitted;
      var btn = form.querySelector("[data-once]");
      if (btn) { btn.disabled = false; btn.removeAttribute("aria-busy"); }
    });
  });
})();
