// The freshness badge: "data as of 14:03:07, 4 s ago; next refresh in 6 s", asked every
// second; when the lake's table versions change, the page is told ("bi:lake-changed").
(function () {
  "use strict";
  const badge = document.getElementById("freshness");
  if (!badge) return;
  let versions = null;
  function clock(epoch) {
    return new Date(epoch * 1000).toISOString().slice(11, 19);
  }
  function text(f) {
    if (f.as_of === null || f.as_of === undefined) return "no data yet";
    let out = "data as of " + clock(f.as_of);
    if (f.age_seconds !== null && f.age_seconds !== undefined) {
      out += ", " + Math.max(0, Math.round(f.age_seconds)) + " s ago";
    }
    if (f.next_refresh_seconds !== null && f.next_refresh_seconds !== undefined) {
      out += "; next refresh in " + Math.max(0, Math.round(f.next_refresh_seconds)) + " s";
    }
    return out;
  }
  async function tick() {
    try {
      const r = await fetch("/bi/api/freshness", {headers: {"Accept": "application/json"}});
      if (!r.ok) throw new Error("HTTP " + r.status);
      const f = await r.json();
      badge.textContent = text(f);
      badge.classList.toggle("stale", f.age_seconds !== null && f.age_seconds > 300);
      const now = JSON.stringify(f.tables || {});
      if (versions !== null && now !== versions) {
        window.dispatchEvent(new CustomEvent("bi:lake-changed", {detail: f}));
      }
      versions = now;
    } catch (e) {
      badge.textContent = "freshness unknown";
      badge.classList.add("stale");
    }
  }
  tick();
  setInterval(tick, 1000);
})();
