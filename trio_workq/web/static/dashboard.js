// SPDX-License-Identifier: MIT
// The trio_workq dashboard: polls the JSON API once a second and renders it.
// Every string from the server is put into the page with textContent, never
// parsed as HTML, so task names, arguments and error messages cannot inject markup.
"use strict";

(function () {
  const POLL_MS = 1000;
  const PAGE_SIZE = 25;
  const TOKEN_KEY = "trio_workq.token";
  const STATUSES = ["queued", "scheduled", "running", "retrying", "completed", "failed", "cancelled"];
  const CANCELLABLE = new Set(["queued", "scheduled", "running", "retrying"]);
  const RETRYABLE = new Set(["failed", "cancelled"]);
  const SVG_NS = "http://www.w3.org/2000/svg";
  const CHART = { width: 600, height: 140, left: 34, right: 6, top: 8, bottom: 20, bucket: 5 };

  const $ = (id) => document.getElementById(id);

  class Unauthorized extends Error {}
  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  const state = {
    status: "",
    name: "",
    cursor: null, // cursor of the page shown (null: the newest)
    previous: [], // cursors of the pages before it
    nextCursor: null,
    detailId: null,
    detailKey: "", // JSON of the detail shown, to redraw only on change
    timer: null,
    busy: false, // a refresh is running
    again: false, // something asked for a refresh meanwhile
    pollError: false, // the message shown is a failed poll's, to clear once polling works
  };

  // ------------------------------------------------------------------ API

  async function api(path, method) {
    const headers = { Accept: "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) {
      headers.Authorization = "Bearer " + token;
    }
    const response = await fetch(path, {
      method: method || "GET",
      headers: headers,
      cache: "no-store",
      credentials: "same-origin",
    });
    if (response.status === 401) {
      throw new Unauthorized("the token was not accepted");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    if (!response.ok) {
      const message = body && typeof body.message === "string" ? body.message : response.statusText;
      throw new ApiError(response.status, message);
    }
    return body;
  }

  function query(params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") {
        search.set(key, String(value));
      }
    }
    const text = search.toString();
    return text ? "?" + text : "";
  }

  // -------------------------------------------------------------- helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function setText(id, text) {
    const node = $(id);
    const value = text === null || text === undefined ? "–" : String(text);
    if (node.textContent !== value) {
      node.textContent = value;
    }
  }

  function statusClass(status) {
    return STATUSES.includes(status) ? "status-" + status : "status-unknown";
  }

  function formatTime(iso, withDate) {
    if (!iso) {
      return "–";
    }
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) {
      return String(iso);
    }
    return withDate ? date.toLocaleString() : date.toLocaleTimeString();
  }

  function showMessage(text, isError) {
    const node = $("message");
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
    state.pollError = false;
  }

  function setConnection(text, ok) {
    const node = $("connection");
    node.textContent = text;
    node.classList.toggle("ok", ok);
    node.classList.toggle("down", !ok);
  }

  // ---------------------------------------------------------------- stats

  function renderStats(stats) {
    for (const status of STATUSES) {
      setText("count-" + status, stats.counts[status]);
    }
    // workers_scope: "queue" (the queue's whole pool), "process" (this process's
    // workers on a durable queue), "none" (no workers here: say so instead).
    const elsewhere = stats.workers_scope === "none";
    const shared = stats.workers_scope === "process";
    $("workers-figures").hidden = elsewhere;
    $("workers-elsewhere").hidden = !elsewhere;
    $("workers-shared").hidden = !shared;
    setText("workers-scope", shared ? "in this process" : "");
    setText("workers", stats.workers);
    setText("busy-workers", stats.busy_workers);
    setText("retained", stats.retained);
    $("retained-line").hidden = typeof stats.retained !== "number"; // memory queues only
    const utilization = typeof stats.utilization === "number" ? stats.utilization : 0;
    $("utilization").value = utilization;
    setText(
      "utilization-text",
      typeof stats.utilization === "number" ? Math.round(stats.utilization * 100) + "%" : null
    );
    $("closed-banner").hidden = !stats.closed;
  }

  // ---------------------------------------------------------------- chart

  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) {
      node.setAttribute(name, String(value));
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function buckets(series, size) {
    const out = [];
    for (let start = series.length % size; start < series.length; start += size) {
      let sum = 0;
      for (let i = start; i < start + size; i += 1) {
        sum += Number(series[i]) || 0;
      }
      out.push(sum);
    }
    return out;
  }

  function renderChart(data) {
    const chart = $("chart");
    const completed = buckets(data.completed, CHART.bucket);
    const failed = buckets(data.failed, CHART.bucket);
    const peak = Math.max(1, ...completed, ...failed);
    const plotWidth = CHART.width - CHART.left - CHART.right;
    const plotHeight = CHART.height - CHART.top - CHART.bottom;
    const x = (i) => CHART.left + (completed.length > 1 ? (i * plotWidth) / (completed.length - 1) : 0);
    const y = (v) => CHART.top + plotHeight - (v * plotHeight) / peak;
    const points = (values) => values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
    const bottom = CHART.top + plotHeight;
    const seconds = data.completed.length * (Number(data.interval) || 1);

    const children = [
      svg("line", { class: "axis", x1: CHART.left, y1: bottom, x2: CHART.width - CHART.right, y2: bottom }),
      svg("line", { class: "grid", x1: CHART.left, y1: CHART.top, x2: CHART.width - CHART.right, y2: CHART.top }),
      svg("text", { class: "tick", x: CHART.left - 4, y: CHART.top + 4, "text-anchor": "end" }, String(peak)),
      svg("text", { class: "tick", x: CHART.left - 4, y: bottom, "text-anchor": "end" }, "0"),
      svg("text", { class: "tick", x: CHART.left, y: CHART.height - 4 }, "-" + Math.round(seconds / 60) + " min"),
      svg("text", { class: "tick", x: CHART.width - CHART.right, y: CHART.height - 4, "text-anchor": "end" }, "now"),
      svg("polyline", { class: "series completed", points: points(completed) }),
      svg("polyline", { class: "series failed", points: points(failed) }),
    ];
    chart.replaceChildren(...children);
  }

  // ---------------------------------------------------------------- table

  function actionButton(action, label, taskId) {
    const button = el("button", action, label);
    button.type = "button";
    button.dataset.action = action;
    button.dataset.taskId = taskId;
    return button;
  }

  function actionButtons(task, container) {
    container.replaceChildren();
    if (CANCELLABLE.has(task.status)) {
      container.append(actionButton("cancel", "Cancel", task.id));
    }
    if (RETRYABLE.has(task.status)) {
      container.append(actionButton("retry", "Retry", task.id));
    }
  }

  function makeRow(task) {
    const row = el("tr");
    row.dataset.taskId = task.id;
    const idCell = el("td", "id");
    const open = el("button", "link", task.id);
    open.type = "button";
    open.dataset.action = "open";
    open.dataset.taskId = task.id;
    open.title = "Show details";
    idCell.append(open);
    row.append(
      idCell,
      el("td", "name"),
      el("td", "status"),
      el("td", "attempts"),
      el("td", "created"),
      el("td", "error"),
      el("td", "actions")
    );
    return row;
  }

  // Rows are updated in place, so a button does not vanish under the pointer.
  function updateRow(row, task) {
    const cells = row.cells;
    if (cells[1].textContent !== task.name) {
      cells[1].textContent = task.name;
      cells[1].title = task.name;
    }
    if (row.dataset.status !== task.status) {
      row.dataset.status = task.status;
      const badge = el("span", "badge " + statusClass(task.status), task.status);
      cells[2].replaceChildren(badge);
      actionButtons(task, cells[6]);
    }
    const attempts = task.attempts + " / " + task.max_attempts;
    if (cells[3].textContent !== attempts) {
      cells[3].textContent = attempts;
    }
    const created = formatTime(task.created_at, false);
    if (cells[4].textContent !== created) {
      cells[4].textContent = created;
      cells[4].title = formatTime(task.created_at, true);
    }
    const error = task.error || "";
    if (cells[5].textContent !== error) {
      cells[5].textContent = error;
      cells[5].title = error;
    }
  }

  function renderTasks(page) {
    const body = $("task-rows");
    const existing = new Map();
    for (const row of body.rows) {
      existing.set(row.dataset.taskId, row);
    }
    const rows = page.tasks.map((task) => {
      const row = existing.get(task.id) || makeRow(task);
      existing.delete(task.id);
      updateRow(row, task);
      return row;
    });
    for (const stale of existing.values()) {
      stale.remove();
    }
    rows.forEach((row, index) => {
      if (body.rows[index] !== row) {
        body.insertBefore(row, body.rows[index] || null);
      }
    });
    $("no-tasks").hidden = page.tasks.length > 0;
    state.nextCursor = page.next_cursor;
    $("page-next").disabled = !page.next_cursor;
    $("page-prev").disabled = state.previous.length === 0;
    $("page-first").disabled = state.cursor === null;
  }

  // --------------------------------------------------------------- detail

  function field(list, label, value) {
    list.append(el("dt", null, label), el("dd", null, value === null || value === undefined ? "–" : value));
  }

  function renderDetail(task) {
    const key = JSON.stringify(task);
    if (key === state.detailKey) {
      return;
    }
    state.detailKey = key;
    setText("detail-id", task.id);
    const fields = $("detail-fields");
    fields.replaceChildren();
    field(fields, "Name", task.name);
    const status = el("span", "badge " + statusClass(task.status), task.status);
    fields.append(el("dt", null, "Status"), el("dd"));
    fields.lastChild.append(status);
    field(fields, "Priority", task.priority);
    field(fields, "Attempts", task.attempts + " of at most " + task.max_attempts);
    field(fields, "Timeout", task.timeout === null ? "none" : task.timeout + " s");
    field(fields, "Created", formatTime(task.created_at, true));
    field(fields, "Due", formatTime(task.due_at, true));
    field(fields, "Started", formatTime(task.started_at, true));
    field(fields, "Finished", formatTime(task.finished_at, true));
    field(fields, "Arguments", task.args);
    actionButtons(task, $("detail-actions"));
    $("detail-traceback").textContent = task.traceback || "No error.";
    const errors = $("detail-errors");
    errors.replaceChildren();
    for (const error of task.errors || []) {
      const item = el("li");
      const details = el("details");
      details.append(el("summary", null, error.summary), el("pre", "traceback", error.traceback));
      item.append(details);
      errors.append(item);
    }
    if (!task.errors || task.errors.length === 0) {
      errors.append(el("li", "muted", "None."));
    }
  }

  function openDetail(taskId) {
    state.detailId = taskId;
    state.detailKey = "";
    $("detail").hidden = false;
    refreshDetail()
      .then(() => $("detail").scrollIntoView({ block: "nearest" }))
      .catch(() => setConnection("no connection, retrying", false));
  }

  function closeDetail() {
    state.detailId = null;
    state.detailKey = "";
    $("detail").hidden = true;
  }

  async function refreshDetail() {
    if (state.detailId === null) {
      return;
    }
    const taskId = state.detailId;
    try {
      const task = await api("api/tasks/" + encodeURIComponent(taskId));
      if (state.detailId === taskId) {
        renderDetail(task);
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        closeDetail();
        showMessage("Task " + taskId + " is no longer retained.", true);
        return;
      }
      throw error;
    }
  }

  // ------------------------------------------------------------- polling

  async function refresh() {
    const [stats, page, throughput] = await Promise.all([
      api("api/stats"),
      api(
        "api/tasks" +
          query({ status: state.status, name: state.name, cursor: state.cursor, limit: PAGE_SIZE })
      ),
      api("api/throughput"),
    ]);
    renderStats(stats);
    renderTasks(page);
    renderChart(throughput);
    await refreshDetail();
  }

  async function tick() {
    clearTimeout(state.timer);
    if (state.busy) {
      state.again = true;
      return;
    }
    state.busy = true;
    state.again = false;
    try {
      await refresh();
      $("login").hidden = true;
      $("dashboard").hidden = false;
      setConnection("live", true);
      if (state.pollError) {
        showMessage("", false); // the failure is over; messages about actions stay
      }
      state.timer = setTimeout(tick, POLL_MS);
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken(sessionStorage.getItem(TOKEN_KEY) !== null);
      } else {
        setConnection("no connection, retrying", false);
        if (error instanceof ApiError) {
          showMessage(error.message, true);
          state.pollError = true;
        }
        state.timer = setTimeout(tick, POLL_MS * 2);
      }
    } finally {
      state.busy = false;
    }
    if (state.again) {
      tick();
    }
  }

  function askForToken(rejected) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("dashboard").hidden = true;
    $("login").hidden = false;
    setConnection("token needed", false);
    const message = $("login-error");
    message.hidden = !rejected;
    message.textContent = rejected ? "That token was not accepted." : "";
    $("token").focus();
  }

  // ------------------------------------------------------------- actions

  async function act(action, taskId) {
    try {
      const task = await api(
        "api/tasks/" + encodeURIComponent(taskId) + "/" + action,
        "POST"
      );
      const verb = action === "cancel" ? "Cancel requested for" : "Retrying";
      showMessage(verb + " task " + task.id + " (" + task.name + "): now " + task.status + ".", false);
    } catch (error) {
      if (error instanceof Unauthorized) {
        askForToken(true);
        return;
      }
      showMessage("Could not " + action + " task " + taskId + ": " + error.message, true);
    }
    tick();
  }

  function onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) {
      return;
    }
    const taskId = button.dataset.taskId;
    const action = button.dataset.action;
    if (action === "open") {
      openDetail(taskId);
    } else if (action === "cancel" || action === "retry") {
      act(action, taskId);
    }
  }

  function resetPaging() {
    state.cursor = null;
    state.previous = [];
  }

  function init() {
    document.body.addEventListener("click", onClick);
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const token = $("token").value.trim();
      if (!/^[\x21-\x7e]+$/.test(token)) {
        // The server's tokens are printable ASCII; anything else cannot even be sent.
        $("login-error").textContent = "A token is printable ASCII, without spaces.";
        $("login-error").hidden = false;
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      $("login-error").hidden = true;
      tick();
    });
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      state.status = $("filter-status").value;
      state.name = $("filter-name").value.trim();
      resetPaging();
      tick();
    });
    $("filter-status").addEventListener("change", () => {
      state.status = $("filter-status").value;
      resetPaging();
      tick();
    });
    $("filter-clear").addEventListener("click", () => {
      $("filter-status").value = "";
      $("filter-name").value = "";
      state.status = "";
      state.name = "";
      resetPaging();
      tick();
    });
    $("page-next").addEventListener("click", () => {
      if (state.nextCursor) {
        state.previous.push(state.cursor);
        state.cursor = state.nextCursor;
        tick();
      }
    });
    $("page-prev").addEventListener("click", () => {
      if (state.previous.length > 0) {
        state.cursor = state.previous.pop();
        tick();
      }
    });
    $("page-first").addEventListener("click", () => {
      resetPaging();
      tick();
    });
    $("detail-close").addEventListener("click", closeDetail);
    tick();
  }

  init();
})();
