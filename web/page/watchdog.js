// index.html's watchdog, inlined there and allowed by its sha256 in the Content-Security-Policy, so it runs
// even when the browser refuses main.js, csv.js or style.css (Subresource Integrity): it names the file
// refused, ends the start-up message, and keeps the forms from ever submitting themselves (a native submit
// would reload the page and lose the typed answer).
(() => {
  const refused = [];
  addEventListener("error", (event) => {
    const el = event.target;
    if (el instanceof HTMLScriptElement || el instanceof HTMLLinkElement) {
      const file = (el.getAttribute("src") || el.getAttribute("href") || "").split(/[?#]/)[0];
      if (file && !refused.includes(file)) refused.push(file);
    }
  }, true);
  document.addEventListener("submit", (event) => event.preventDefault(), true);
  addEventListener("load", () => {
    const $ = (id) => document.getElementById(id);
    const style = document.querySelector('link[rel="stylesheet"]');
    if (style && !style.sheet && !refused.includes("style.css")) refused.push("style.css");
    const started = Boolean(document.body.dataset.engine);
    if (started && !refused.length) return;
    const files = refused.length ? refused : ["main.js"];
    const box = $("refused");
    const one = files.length === 1;
    box.textContent = `The page refused ${files.join(", ")}: ${one ? "the file does" : "they do"} not match what ` +
      `index.html pins (or could not be loaded), so ${one ? "it was" : "they were"} changed or damaged. ` + (started
      ? "The page still scores, but looks plain. " : "Nothing can be scored; your typed answer stays here. ") +
      "Ask whoever hosts the page to rebuild it, or check it with kd-train verify.";
    box.hidden = false;
    const answer = $("answer");
    if (!style?.sheet && answer) {                  // without style.css the answer box would be invisible
      Object.assign(answer.style, { border: "2px solid", minHeight: "6em", padding: "0.5em", margin: "0.25em 0" });
    }
    if (!started) {
      $("nojs")?.remove();
      document.body.dataset.engine = "error";
      $("engine-progress").hidden = true;
      $("engine-text").textContent = "The scorer could not start.";
    }
  });
})();
