// nbflows dashboard actions: plain JavaScript calling the REST API (docs/api.md) with the
// browser's Jupyter login. Changes send the _xsrf token as X-XSRFToken, as Jupyter requires.
"use strict";

const nbflows = (() => {
  const body = document.body;
  const apiUrl = body.dataset.api;
  const dashboardUrl = body.dataset.nbflows;

  function xsrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : body.dataset.xsrf;
  }

  // One REST call; resolves to the parsed JSON (null for 204), rejects with the server's message.
  async function api(method, path, data) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin" };
    if (method !== "GET") headers["X-XSRFToken"] = xsrfToken();
    if (data !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(data);
    }
    const response = await fetch(apiUrl + path, init);
    const text = await response.text();
    let payload = null;
    try { payload = text ? JSON.parse(text) : null; } catch (_) { payload = null; }
    if (!response.ok) {
      const message = payload && payload.message ? payload.message : `${response.status} ${response.statusText}`;
      throw new Error(message);
    }
    return payload;
  }

  function showError(element, error) {
    if (element) element.textContent = error.message || String(error);
  }

  // Pause / resume a deployment.
  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (action !== "pause" && action !== "resume") return;
    button.disabled = true;
    try {
      await api("PATCH", `deployments/${encodeURIComponent(button.dataset.id)}`, { paused: action === "pause" });
      window.location.reload();
    } catch (error) {
      button.disabled = false;
      alert(`Could not ${action} the deployment: ${error.message}`);
    }
  });

  // The value of one "Run now" input, typed by the parameter's JSON type.
  function readInput(input) {
    const type = input.dataset.type;
    if (type === "boolean") return input.checked;
    const raw = input.value.trim();
    if (type === "integer") {
      if (!/^-?\d+$/.test(raw)) throw new Error(`${input.name} must be an integer`);
      return parseInt(raw, 10);
    }
    if (type === "number") {
      if (raw === "" || isNaN(Number(raw))) throw new Error(`${input.name} must be a number`);
      return Number(raw);
    }
    if (type === "string") return input.value;
    if (raw === "") return undefined;
    try { return JSON.parse(raw); } catch (_) {
      if (type === "array" || type === "object") throw new Error(`${input.name} must be JSON (${type})`);
      return raw;
    }
  }

  // "Run now": send only the parameters the user changed; the rest are the deployment's.
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form.run-form");
    if (!form) return;
    event.preventDefault();
    const error = form.querySelector(".error");
    const submit = form.querySelector("button[type=submit]");
    error.textContent = "";
    const parameters = {};
    try {
      for (const input of form.querySelectorAll("input[name]")) {
        const value = readInput(input);
        if (value === undefined) continue;
        if (JSON.stringify(value) !== JSON.stringify(JSON.parse(input.dataset.initial))) {
          parameters[input.name] = value;
        }
      }
    } catch (e) {
      showError(error, e);
      return;
    }
    submit.disabled = true;
    try {
      const run = await api("POST", `deployments/${encodeURIComponent(form.dataset.id)}/runs`, { parameters });
      window.location.href = `${dashboardUrl}runs/${encodeURIComponent(run.id)}`;
    } catch (e) {
      submit.disabled = false;
      showError(error, e);
    }
  });

  return { api, apiUrl, dashboardUrl };
})();
