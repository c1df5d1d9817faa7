// A run's page: follow its log lines and state with the logs long-poll
// (GET flow_runs/{id}/logs?after=&wait=&state=), then show the executed notebook.
"use strict";

(() => {
  const root = document.getElementById("run");
  if (!root) return;
  const runId = root.dataset.runId;
  const logs = document.getElementById("logs");
  const status = document.getElementById("log-status");
  // The server's terminal states (nbflows.protocol), as the page's <body> carries them.
  const TERMINAL = new Set(document.body.dataset.terminalStates.split(" "));
  const PAGE = 1000;
  const WAIT = 25;

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function when(iso) {
    if (!iso) return "—";
    return new Date(iso).toISOString().replace("T", " ").slice(0, 19);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 10) return `${seconds.toFixed(2)} s`;
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const total = Math.round(seconds);
    const minutes = Math.floor(total / 60);
    if (minutes < 60) return `${minutes} min ${String(total % 60).padStart(2, "0")} s`;
    return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, "0")} min`;
  }

  function appendLines(items) {
    if (!items.length) return;
    const nearBottom = logs.scrollHeight - logs.scrollTop - logs.clientHeight < 40;
    const placeholder = logs.querySelector(".no-lines");
    if (placeholder) placeholder.remove();
    const fragment = document.createDocumentFragment();
    for (const line of items) {
      const div = document.createElement("div");
      div.className = `line src-${line.source}` + (line.level >= 40 ? " level-error" : "");
      const ts = document.createElement("span");
      ts.className = "ts";
      ts.textContent = when(line.timestamp);
      const msg = document.createElement("span");
      msg.className = "msg";
      msg.textContent = line.message;
      div.append(ts, " ", msg);
      fragment.append(div);
    }
    logs.append(fragment);
    if (nearBottom) logs.scrollTop = logs.scrollHeight;
  }

  function showRun(run) {
    const state = run.state || {};
    const badge = document.querySelector("#run-state .state");
    if (badge) {
      badge.textContent = state.name || state.type;
      badge.className = `state state-${(state.type || "unknown").toLowerCase()}` + (state.name === "Late" ? " state-late" : "");
      badge.title = state.type + (state.message ? `: ${state.message}` : "");
    }
    document.getElementById("run-message").textContent = state.message || "";
    document.getElementById("run-start").textContent = when(run.start_time);
    document.getElementById("run-end").textContent = when(run.end_time);
    document.getElementById("run-duration").textContent = duration(run.duration);
    document.getElementById("run-worker").textContent =
      run.kind === "interactive" ? "interactive" : run.worker_name || "—";
    root.dataset.state = state.type;
    if (TERMINAL.has(state.type)) {
      const cancel = document.getElementById("cancel-run");
      if (cancel) cancel.parentElement.remove();
    }
  }

  async function showNotebook() {
    if (root.dataset.hasNotebook === "true") return;
    const pending = document.getElementById("notebook-pending");
    const response = await fetch(root.dataset.notebookUrl, { credentials: "same-origin" });
    if (!response.ok) {
      if (pending) pending.textContent = "This run kept no executed notebook.";
      return;
    }
    const frame = document.createElement("iframe");
    frame.className = "notebook";
    frame.title = "executed notebook";
    frame.setAttribute("sandbox", "");
    frame.srcdoc = await response.text();
    document.getElementById("notebook").replaceChildren(frame);
    root.dataset.hasNotebook = "true";
  }

  async function follow() {
    let after = Number(root.dataset.after || 0);
    let seen = root.dataset.state;
    // The page's own lines may have been read just before the run ended: read once more.
    let wait = 0;
    let failures = 0;
    for (;;) {
      const query = `after=${after}&limit=${PAGE}&wait=${wait}&state=${encodeURIComponent(seen)}`;
      let page;
      try {
        page = await nbflows.api("GET", `flow_runs/${encodeURIComponent(runId)}/logs?${query}`);
        failures = 0;
        status.textContent = "";
      } catch (error) {
        failures += 1;
        status.textContent = `(${error.message}; retrying)`;
        await sleep(Math.min(2000 * failures, 30000));
        continue;
      }
      appendLines(page.items);
      after = page.next_after;
      showRun(page.flow_run);
      const type = page.flow_run.state.type;
      const more = page.items.length >= PAGE;
      if (TERMINAL.has(type) && !more && TERMINAL.has(seen)) break;
      wait = more || TERMINAL.has(type) ? 0 : WAIT;
      seen = type;
      status.textContent = TERMINAL.has(type) ? "" : "(following…)";
    }
    status.textContent = "";
    await showNotebook();
  }

  const cancel = document.getElementById("cancel-run");
  if (cancel) {
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        const run = await nbflows.api("POST", `flow_runs/${encodeURIComponent(runId)}/cancel`);
        showRun(run);
      } catch (error) {
        cancel.disabled = false;
        cancel.parentElement.querySelector(".error").textContent = error.message;
      }
    });
  }

  // A pipeline run: its DAG picture (server-rendered SVG) is reloaded while the run goes on.
  const pipeline = document.getElementById("pipeline");
  async function followDag() {
    let more = pipeline && !TERMINAL.has(root.dataset.state);
    while (more) {
      await sleep(2000);
      more = !TERMINAL.has(root.dataset.state); // one more picture once the run ended
      try {
        const response = await fetch(pipeline.dataset.svgUrl, { credentials: "same-origin" });
        if (response.ok) document.getElementById("dag").innerHTML = await response.text();
      } catch (error) {
        status.textContent = `(${error.message}; retrying)`;
      }
    }
  }

  const repair = document.getElementById("repair-run");
  if (repair) {
    repair.addEventListener("click", async () => {
      repair.disabled = true;
      try {
        await nbflows.api("POST", `flow_runs/${encodeURIComponent(runId)}/repair`);
        window.location.reload();
      } catch (error) {
        repair.disabled = false;
        repair.parentElement.querySelector(".error").textContent = error.message;
      }
    });
  }

  follow();
  followDag();
})();
