// Small behaviours that htmx attributes cannot express. No inline scripts: the CSP forbids them.
(function () {
  "use strict";
  const progress = () => document.getElementById("progress");
  document.addEventListener("htmx:beforeRequest", () => progress()?.classList.add("active"));
  document.addEventListener("htmx:afterRequest", () => progress()?.classList.remove("active"));
  // Confirmation for destructive buttons: <button data-confirm="Cancel this run?">.
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
})();
