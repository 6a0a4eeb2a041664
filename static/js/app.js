// Small behaviours that htmx attributes cannot express. No inline scripts: the CSP forbids them.
(function () {
  "use strict";
  const progress = () => document.getElementById("progress");
  document.addEventListener("htmx:beforeRequest", () => progress()?.classList.add("active"));
  document.addEventListener("htmx:afterRequest", () => progress()?.classList.remove("active"));
  // Where the focus goes after an htmx swap took away the element that had it (WCAG 2.4.3):
  // a tab or a log pager puts it on the new tab panel; a form answered with errors (4xx) on
  // its first invalid field (Django marks it aria-invalid and points aria-describedby at the
  // error), else on the error message; another form's answer on its message or the swapped
  // region. The poller's swaps never move it. Full page loads get the same from the server
  // (autofocus on the first invalid field, rapidfolio/forms.py).
  const focusOn = (element) => {
    if (!element) return;
    if (!element.matches("a[href], button, input, select, textarea, [tabindex]")) {
      element.setAttribute("tabindex", "-1");
    }
    element.focus({ preventScroll: false });
  };
  document.addEventListener("htmx:afterSettle", (event) => {
    const { requestConfig, xhr, target } = event.detail;
    const trigger = requestConfig && requestConfig.elt;
    if (!trigger || !xhr) return;
    if (trigger.closest("#run-tabs .tabs, #run-tabs .pager")) {
      focusOn(document.getElementById("tab-panel"));
      return;
    }
    if (!trigger.closest("form") || (document.activeElement && document.activeElement !== document.body)) return;
    const region = (target && target.id && document.getElementById(target.id)) || document.getElementById("content");
    if (xhr.status >= 400 && xhr.status < 500) {
      focusOn(region.querySelector('[aria-invalid="true"]') || region.querySelector('[role="alert"]'));
    } else {
      focusOn(region.querySelector('.review-confirmation, [role="alert"], [role="status"]') || region);
    }
  });
  // Confirmation for destructive buttons: <button data-confirm="Cancel this run?">.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
  // A money field's label names its currency ("Amount (USD)"); keep it in step with the
  // currency chooser it is read in (data-money-currency names that input). The server reads
  // the amount in the submitted currency whatever the label says.
  document.addEventListener("change", (event) => {
    const chooser = event.target;
    if (!chooser.name || !chooser.form) return;
    const code = String(chooser.value || "").trim().toUpperCase();
    const selector = `[data-money-currency="${CSS.escape(chooser.name)}"]`;
    chooser.form.querySelectorAll(selector).forEach((input) => {
      const label = chooser.form.querySelector(`label[for="${CSS.escape(input.id)}"]`);
      if (!label) return;
      const title = input.dataset.moneyLabel;
      label.textContent = /^[A-Z]{3}$/.test(code) ? `${title} (${code})` : title;
    });
  });
  // Relative times ("3 min ago", a review "waiting 2 h 5 min") stay true on a page left open
  // or restored from the cache: every 30 s, rewrite them from their datetime attribute. The
  // words are rapidfolio/moments.py's (relative, waited); the server renders the first ones.
  const MINUTE = 60, HOUR = 3600, DAY = 86400, MONTH = 30.44 * DAY, YEAR = 365.25 * DAY;
  const relative = (seconds) => {
    const distance = Math.abs(seconds);
    let amount;
    if (distance < 45) return "just now";
    if (distance < HOUR) amount = `${Math.max(1, Math.floor(distance / MINUTE))} min`;
    else if (distance < DAY) amount = `${Math.floor(distance / HOUR)} h`;
    else if (distance < 60 * DAY) amount = `${Math.floor(distance / DAY)} d`;
    else if (distance < YEAR) amount = `${Math.floor(distance / MONTH)} mo`;
    else amount = `${Math.floor(distance / YEAR)} y`;
    return seconds > 0 ? `${amount} ago` : `in ${amount}`;
  };
  const waited = (seconds) => {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < MINUTE) return "under 1 min";
    const minutes = Math.floor(seconds / MINUTE);
    if (minutes < 60) return `${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `${hours} h ${minutes % 60} min`;
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  };
  const refreshTimes = () => {
    const now = Date.now();
    document.querySelectorAll("time[data-relative]").forEach((element) => {
      const at = Date.parse(element.getAttribute("datetime"));
      if (Number.isNaN(at)) return;
      const seconds = (now - at) / 1000;
      const text = element.dataset.relative === "waited" ? waited(seconds) : relative(seconds);
      if (element.textContent !== text) element.textContent = text;
    });
  };
  window.rapidfolioTimes = { relative, waited, refresh: refreshTimes };  // for the browser test
  setInterval(refreshTimes, 30_000);
  window.addEventListener("pageshow", (event) => { if (event.persisted) refreshTimes(); });
  // The Runs list's Export links carry its filters. A filter change swaps only the results
  // and pushes the new address, so the links follow the address (minus the page cursor and
  // the empty fields the form sends).
  const followFilters = () => {
    document.querySelectorAll("a[data-export-link]").forEach((link) => {
      const query = new URLSearchParams();
      new URLSearchParams(window.location.search).forEach((value, name) => {
        if (value !== "" && name !== "cursor") query.append(name, value);
      });
      const url = new URL(link.getAttribute("href"), window.location.href);
      url.search = query.toString();
      link.setAttribute("href", url.pathname + url.search);
    });
  };
  document.addEventListener("htmx:pushedIntoHistory", followFilters);
  document.addEventListener("htmx:historyRestore", followFilters);
  window.addEventListener("popstate", followFilters);
})();
