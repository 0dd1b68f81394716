// The operator page: live status every few seconds, and the actions as same-origin POSTs
// carrying the CSRF token from the page's <meta> tag. Loaded as a file: the page's CSP
// allows no inline script.
"use strict";
(function () {
  const root = document.getElementById("fleet");
  const flash = document.getElementById("flash");
  const stale = document.getElementById("stale");
  const pause = document.getElementById("pause");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const every = Number(root.dataset.refreshMs) || 2000;
  let paused = false;
  let busy = false;

  // A form being edited is not swapped away under the operator's fingers.
  function editing() {
    const active = document.activeElement;
    if (active && root.contains(active) && active.tagName === "INPUT") return true;
    return Array.from(root.querySelectorAll("input")).some((i) => i.value !== i.defaultValue);
  }

  function say(text, ok) {
    flash.textContent = text;
    flash.className = "flash " + (ok ? "tone-ok" : "tone-bad");
  }

  async function refresh(force) {
    if (busy || (!force && (paused || editing()))) return;
    busy = true;
    try {
      const response = await fetch("/fleet.fragment", { cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const html = await response.text();
      // the operator may have started typing while the fragment was on its way
      if (!force && (paused || editing())) return;
      root.innerHTML = html;
      stale.textContent = "";
    } catch (error) {
      stale.textContent = "Status not updated: the control plane does not answer (" +
        error.message + ").";
    } finally {
      busy = false;
    }
  }

  function request(form) {
    const action = form.dataset.action;
    if (action === "scale") {
      return ["/api/groups/" + encodeURIComponent(form.dataset.group) + "/desired-capacity",
        { desired_capacity: Number(form.elements.desired_capacity.value) }];
    }
    if (action === "refresh") {
      return ["/api/groups/" + encodeURIComponent(form.dataset.group) + "/instance-refresh",
        { min_healthy_percentage: Number(form.elements.min_healthy_percentage.value) }];
    }
    return ["/api/instances/" + encodeURIComponent(form.dataset.instance) + "/kill", null];
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-action]");
    if (!form) return;
    event.preventDefault();
    const [url, body] = request(form);
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
        body: body === null ? undefined : JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      if (response.ok) {
        say(answer.Message || "Done.", true);
      } else {
        say((answer.error && answer.error.message) || "Refused (HTTP " + response.status + ").",
          false);
      }
    } catch (error) {
      say("The control plane does not answer (" + error.message + ").", false);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
    form.reset();
    if (document.activeElement && root.contains(document.activeElement)) {
      document.activeElement.blur();
    }
    refresh(true);
  });

  pause.addEventListener("click", () => {
    paused = !paused;
    pause.setAttribute("aria-pressed", String(paused));
    pause.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh";
    if (!paused) refresh(true);
  });

  setInterval(() => refresh(false), every);
})();
