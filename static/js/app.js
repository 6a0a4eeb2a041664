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
})();
