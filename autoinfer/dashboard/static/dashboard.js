// The autoinfer dashboard: fills the server-rendered pages from the JSON API under /v1.
// The API key lives in sessionStorage (this tab only); every request sends it as a bearer token.
// Data is always inserted as text (never as HTML), so names and log lines cannot inject markup.
"use strict";

(() => {
  const KEY_ITEM = "autoinfer.key";
  const TERMINAL = new Set(["finished", "failed", "stopped"]);
  const LIVE_MS = 1000;
  const IDLE_MS = 5000;
  const body = document.body;
  const authRequired = body.dataset.authRequired === "true";
  const $ = (id) => document.getElementById(id);

  // --- the API -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function authHeaders(key = sessionStorage.getItem(KEY_ITEM)) {
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function request(path, { method = "GET", key } = {}) {
    let response;
    try {
      response = await fetch(path, { method, headers: authHeaders(key), cache: "no-store" });
    } catch (error) {
      throw new ApiError(0, "unreachable", `cannot reach the autoinfer service (${error.message})`);
    }
    if (response.ok) return response;
    let code = "http_error";
    let message = `HTTP ${response.status}`;
    try {
      const payload = await response.json();
      if (payload && payload.error) ({ code, message } = payload.error);
    } catch (_) {
      // not JSON: keep the status line as the message
    }
    throw new ApiError(response.status, code, message);
  }

  async function api(path, options) {
    return (await request(path, options)).json();
  }

  // --- polling that stops when the user signs out or the key is refused -------------------

  let generation = 0;

  // Calls `step` now and again after the delay it returns (ms); `wake()` runs it at once.
  function poll(step) {
    const mine = generation;
    let wakeUp = null;
    let woken = false;
    const loop = async () => {
      while (mine === generation) {
        let delay = LIVE_MS;
        if (!document.hidden) {
          try {
            delay = (await step()) ?? LIVE_MS;
            showPageError(null);
          } catch (error) {
            if (mine !== generation) return;
            if (error instanceof ApiError && error.status === 401) {
              signOut(`Your key was refused (${error.message}). Sign in again.`);
              return;
            }
            if (error && error.stop) return;
            showPageError(error);
          }
        }
        if (woken) {
          woken = false;
          continue;
        }
        await new Promise((resolve) => {
          wakeUp = resolve;
          setTimeout(resolve, delay);
        });
        wakeUp = null;
      }
    };
    loop();
    return {
      wake() {
        if (wakeUp) wakeUp();
        else woken = true;
      },
    };
  }

  function showPageError(error) {
    const node = $("page-error");
    if (!node) return;
    const text = error ? `Could not load: ${error.message}` : "";
    if (node.textContent !== text) node.textContent = text;
    node.hidden = !error;
  }

  // --- sign in and out ------------------------------------------------------------------

  function showLogin(message) {
    $("main").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("api-key").focus();
  }

  function signOut(message) {
    generation += 1;
    sessionStorage.removeItem(KEY_ITEM);
    showLogin(message);
  }

  async function signIn(event) {
    event.preventDefault();
    const input = $("api-key");
    const button = event.target.querySelector("button");
    const candidate = input.value.trim();
    const errorNode = $("login-error");
    errorNode.textContent = "";
    button.disabled = true;
    try {
      await request("/v1/jobs?limit=1", { key: candidate });
    } catch (error) {
      errorNode.textContent =
        error.status === 401
          ? `That key was refused: ${error.message}.`
          : `Could not sign in: ${error.message}`;
      input.select();
      return;
    } finally {
      button.disabled = false;
    }
    sessionStorage.setItem(KEY_ITEM, candidate);
    input.value = "";
    // A page that ran before a sign-out starts afresh; the first sign-in needs no reload.
    if (started) location.reload();
    else start();
  }

  let started = false;

  function start() {
    if (authRequired && !sessionStorage.getItem(KEY_ITEM)) {
      showLogin();
      return;
    }
    generation += 1;
    $("login").hidden = true;
    $("main").hidden = false;
    $("sign-out").hidden = !authRequired;
    started = true;
    const page = PAGES[body.dataset.page];
    if (page) page();
  }

  // --- formatting -----------------------------------------------------------------------

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "style") node.style.cssText = value; // CSSOM: allowed by the CSP
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function setText(node, text) {
    text = text ?? "";
    if (node.textContent !== text) node.textContent = text;
  }

  function setChildren(node, ...children) {
    node.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  }

  function parseTime(value) {
    if (!value) return null;
    // The API writes UTC; a timestamp without an offset is UTC too.
    return new Date(/(Z|[+-]\d\d:?\d\d)$/.test(value) ? value : `${value}Z`);
  }

  const pad = (n) => String(n).padStart(2, "0");

  function formatTime(value) {
    const d = parseTime(value);
    if (!d || Number.isNaN(d.getTime())) return "";
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
    );
  }

  function formatDuration(ms) {
    if (ms === null || ms < 0) return "";
    const s = Math.floor(ms / 1000);
    if (s < 60) return `${(ms / 1000).toFixed(1)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
    return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
  }

  // From the start of the current attempt (the last time it became `new`) to its end, or now.
  function jobDuration(job) {
    const transitions = job.transitions || [];
    const starts = transitions.filter((t) => t.status === "new");
    const start = parseTime((starts[starts.length - 1] || {}).at || job.created_at);
    const last = transitions[transitions.length - 1];
    const end = TERMINAL.has(job.status) && last ? parseTime(last.at) : new Date();
    return start ? formatDuration(end - start) : "";
  }

  const slug = (text) => String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-");

  function badge(kind, value) {
    return el("span", { className: `badge ${kind}-${slug(value)}` }, value);
  }

  function updateBadge(node, kind, value) {
    node.className = `badge ${kind}-${slug(value)}`;
    setText(node, value);
  }

  // A bar with its numbers beside it; `fraction` in [0, 1].
  function bar(fraction, label, text) {
    const percent = Math.max(0, Math.min(100, fraction * 100));
    return el(
      "span",
      { className: "bar-with-text" },
      el(
        "span",
        {
          className: "bar",
          role: "progressbar",
          "aria-label": label,
          "aria-valuemin": "0",
          "aria-valuemax": "100",
          "aria-valuenow": percent.toFixed(0),
        },
        el("span", { className: "fill", style: `width: ${percent.toFixed(1)}%` }),
      ),
      el("span", { className: "bar-text" }, text),
    );
  }

  function progressOf(job) {
    const p = job.progress;
    if (!p || !p.total) return el("span", { className: "muted" }, "—");
    return bar(p.done / p.total, `Progress of ${job.name}`, `${p.done} / ${p.total}`);
  }

  function sourceOf(record) {
    const source = record.source || "";
    if (source.startsWith("trigger:")) {
      return el("a", { href: "/triggers" }, `trigger ${source.slice("trigger:".length)}`);
    }
    return source;
  }

  function uriNode(uri) {
    if (!uri) return el("span", { className: "muted" }, "—");
    if (/^https?:\/\//.test(uri)) return el("a", { href: uri, rel: "noopener" }, uri);
    return el("code", {}, uri);
  }

  function jobLink(id, text) {
    return el("a", { href: `/jobs/${encodeURIComponent(id)}` }, text);
  }

  // --- paging shared by the jobs and events tables --------------------------------------

  function pagingState(filterName, defaultLimit) {
    const params = new URLSearchParams(location.search);
    const number = (name, fallback) => {
      const value = Number.parseInt(params.get(name) ?? "", 10);
      return Number.isFinite(value) && value >= 0 ? value : fallback;
    };
    return {
      filter: params.get(filterName) || "",
      offset: number("offset", 0),
      limit: Math.min(1000, Math.max(1, number("limit", defaultLimit))),
      defaultLimit,
      filterName,
    };
  }

  function remember(state) {
    const params = new URLSearchParams();
    if (state.filter) params.set(state.filterName, state.filter);
    if (state.offset) params.set("offset", state.offset);
    if (state.limit !== state.defaultLimit) params.set("limit", state.limit);
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : ""));
  }

  function wirePager(state, select, poller) {
    select.value = state.filter;
    select.addEventListener("change", () => {
      state.filter = select.value;
      state.offset = 0;
      remember(state);
      poller.wake();
    });
    $("page-prev").addEventListener("click", () => {
      state.offset = Math.max(0, state.offset - state.limit);
      remember(state);
      poller.wake();
    });
    $("page-next").addEventListener("click", () => {
      state.offset += state.limit;
      remember(state);
      poller.wake();
    });
  }

  function renderPager(state, count, total) {
    const first = count ? state.offset + 1 : 0;
    setText($("page-info"), `${first}–${state.offset + count} of ${total}`);
    $("page-prev").disabled = state.offset === 0;
    $("page-next").disabled = state.offset + state.limit >= total;
  }

  function query(state, filterParam) {
    const params = new URLSearchParams({ limit: state.limit, offset: state.offset });
    if (state.filter) params.set(filterParam, state.filter);
    return params.toString();
  }

  // Rows keyed by id, updated in place and only re-ordered when the order changed, so that
  // a live refresh does not disturb focus or selection.
  function syncRows(tbody, rows, records, makeRow, updateRow) {
    const order = [];
    for (const record of records) {
      let row = rows.get(record.id);
      if (!row) {
        row = makeRow(record);
        rows.set(record.id, row);
      }
      updateRow(row, record);
      order.push(row);
    }
    for (const [id, row] of rows) {
      if (!order.includes(row)) rows.delete(id);
    }
    const current = Array.from(tbody.children);
    if (current.length !== order.length || current.some((row, i) => row !== order[i])) {
      tbody.replaceChildren(...order);
    }
  }

  function cells(row, labels) {
    const found = {};
    for (const name of labels) found[name] = row.querySelector(`td.${name}`);
    return found;
  }

  function makeCells(id, columns) {
    const row = el("tr", { "data-id": id });
    for (const [name, label] of columns) row.append(el("td", { className: name, "data-label": label }));
    return row;
  }

  // --- the jobs page --------------------------------------------------------------------

  const JOB_COLUMNS = [
    ["name", "Name"],
    ["status", "Status"],
    ["source", "Source"],
    ["input", "Input"],
    ["progress", "Progress"],
    ["duration", "Duration"],
    ["attempt", "Attempt"],
    ["created", "Created"],
  ];

  function jobsPage() {
    const state = pagingState("status", 50);
    const tbody = $("jobs-table").querySelector("tbody");
    const rows = new Map();

    const makeRow = (job) => {
      const row = makeCells(job.id, JOB_COLUMNS);
      const c = cells(row, ["name", "status"]);
      c.name.append(jobLink(job.id, job.name));
      c.status.append(badge("status", job.status));
      return row;
    };
    const updateRow = (row, job) => {
      const c = cells(row, JOB_COLUMNS.map(([name]) => name));
      updateBadge(c.status.firstChild, "status", job.status);
      if (job.reason) c.status.title = job.reason;
      row.dataset.status = job.status;
      if (c.source.dataset.value !== job.source) {
        c.source.dataset.value = job.source;
        setChildren(c.source, sourceOf(job));
      }
      const input = job.input_uri || ((job.spec || {}).data || {}).input_uri || "";
      if (c.input.dataset.value !== input) {
        c.input.dataset.value = input;
        setChildren(c.input, uriNode(input));
      }
      const progress = JSON.stringify(job.progress);
      if (c.progress.dataset.value !== progress) {
        c.progress.dataset.value = progress;
        setChildren(c.progress, progressOf(job));
      }
      setText(c.duration, jobDuration(job));
      setText(c.attempt, job.max_attempts > 1 ? `${job.attempt} of ${job.max_attempts}` : `${job.attempt}`);
      setText(c.created, formatTime(job.created_at));
    };

    const poller = poll(async () => {
      const asked = query(state, "status");
      const page = await api(`/v1/jobs?${asked}`);
      if (asked !== query(state, "status")) return 0; // the filter changed meanwhile
      if (page.jobs.length === 0 && page.total > 0 && state.offset > 0) {
        state.offset = Math.max(0, Math.floor((page.total - 1) / state.limit) * state.limit);
        remember(state);
        return 0;
      }
      syncRows(tbody, rows, page.jobs, makeRow, updateRow);
      $("jobs-empty").hidden = page.total > 0 || Boolean(state.filter);
      $("jobs-none-match").hidden = page.total > 0 || !state.filter;
      renderPager(state, page.jobs.length, page.total);
      return LIVE_MS;
    });
    wirePager(state, $("status-filter"), poller);
  }

  // --- the job page ---------------------------------------------------------------------

  function jobPage() {
    const id = body.dataset.jobId;
    const path = `/v1/jobs/${encodeURIComponent(id)}`;
    const log = $("log");
    let lastLine = 0;
    let lineCount = 0;
    let galleryShownFor = null;
    let galleryItems = [];
    let poller = null;

    const renderJob = (job) => {
      document.title = `${job.name} · autoinfer`;
      setText($("job-name"), job.name);
      updateBadge($("job-status"), "status", job.status);
      $("stop-button").hidden = TERMINAL.has(job.status);
      $("stop-button").disabled = job.stop_requested;
      $("retry-button").hidden = !(job.status === "failed" || job.status === "stopped");
      const reason = $("job-reason");
      reason.hidden = !job.reason;
      setText(reason, job.reason ? `Reason: ${job.reason}` : "");

      const source = $("job-source");
      const sourceKey = `${job.source}|${job.event_id}`;
      if (source.dataset.value !== sourceKey) {
        source.dataset.value = sourceKey;
        setChildren(
          source,
          sourceOf(job),
          job.event_id ? el("span", { className: "muted" }, " · event ", el("a", { href: "/events" }, job.event_id)) : null,
        );
      }
      const spec = job.spec || {};
      const data = spec.data || {};
      const model = spec.model || {};
      if ($("job-input").dataset.value !== data.input_uri) {
        $("job-input").dataset.value = data.input_uri;
        setChildren($("job-input"), uriNode(data.input_uri));
      }
      setText($("job-model"), `${model.source_type || ""} ${model.source_uri || ""}`.trim());
      setText($("job-attempt"), `${job.attempt} of ${job.max_attempts}`);
      const progress = JSON.stringify(job.progress);
      if ($("job-progress").dataset.value !== progress) {
        $("job-progress").dataset.value = progress;
        setChildren($("job-progress"), progressOf(job));
      }
      setText($("job-duration"), jobDuration(job));
      const output = job.output_location || "";
      if ($("job-output").dataset.value !== output) {
        $("job-output").dataset.value = output;
        setChildren(
          $("job-output"),
          output ? uriNode(output) : el("span", { className: "muted" }, `not yet (goes to ${data.output_uri || "?"})`),
        );
      }
      setText($("job-spec"), JSON.stringify(spec, null, 2));

      const timeline = $("timeline");
      const transitions = job.transitions || [];
      if (timeline.children.length !== transitions.length) {
        setChildren(
          timeline,
          ...transitions.map((t) =>
            el(
              "li",
              {},
              badge("status", t.status),
              " ",
              el("time", { datetime: t.at }, formatTime(t.at)),
              t.attempt ? el("span", { className: "muted" }, ` · attempt ${t.attempt}`) : null,
              t.reason
                ? el("span", { className: `timeline-reason${t.status === "failed" ? " failure" : ""}` }, t.reason)
                : null,
            ),
          ),
        );
      }
    };

    const tailLog = async () => {
      const page = await api(`${path}/logs?after=${lastLine}`);
      if (!page.lines.length) return;
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 24;
      const fragment = document.createDocumentFragment();
      for (const line of page.lines) {
        fragment.append(
          el(
            "span",
            { className: `line ${line.stream === "stderr" ? "stderr" : "stdout"}`, title: formatTime(line.at) },
            `${line.line}\n`,
          ),
        );
        lastLine = line.id;
      }
      lineCount += page.lines.length;
      log.append(fragment);
      setText($("log-info"), `(${lineCount} lines)`);
      if (atBottom) log.scrollTop = log.scrollHeight;
    };

    const showGallery = async () => {
      const { items } = await api(`${path}/gallery`);
      galleryItems = items;
      await renderGallery();
    };

    // The whole gallery, or (the toggle on) every failed item from the job's per-item results.
    const renderGallery = async () => {
      let items = galleryItems;
      if ($("failures-only").checked) {
        const thumbnails = new Map(galleryItems.map((item) => [item.file, item.thumbnail]));
        const page = await api(`${path}/items?status=error&limit=1000`);
        items = page.items.map((item) => ({ file: item.file, error: item.error, thumbnail: thumbnails.get(item.file) }));
      }
      const list = $("gallery");
      for (const img of list.querySelectorAll("img[src^='blob:']")) URL.revokeObjectURL(img.src);
      setChildren(list, ...items.map(galleryItem));
      $("gallery-section").hidden = galleryItems.length === 0 && !$("failures-only").checked;
      loadThumbnails(Array.from(list.querySelectorAll("img[data-thumbnail]")));
    };
    $("failures-only").onchange = () => renderGallery().catch(showPageError);

    const renderItemCounts = (job) => {
      const counts = job.items;
      setText($("item-counts"), counts ? `(${counts.ok} ok, ${counts.error} failed)` : "");
      const failures = Boolean(counts && counts.error > 0);
      $("failures-toggle").hidden = !failures;
      if (failures && job.status === "finished") $("gallery-section").hidden = false;
    };

    const galleryItem = (item) => {
      const figure = el(
        "figure",
        {},
        item.thumbnail
          ? el("img", { alt: item.file, width: "160", height: "160", "data-thumbnail": item.thumbnail })
          : el("span", { className: "no-thumbnail" }, "no preview"),
        el("figcaption", {}, item.file),
      );
      if (item.error) {
        return el("li", { className: "prediction" }, figure, el("p", { className: "message error" }, item.error));
      }
      const classes = el(
        "ol",
        { className: "classes", "aria-label": `Top classes for ${item.file}` },
        ...(item.classes || []).slice(0, 5).map((c) =>
          el(
            "li",
            { title: c.id, "data-class-id": c.id },
            el("span", { className: "class-name" }, c.name),
            bar(c.confidence, `Confidence of ${c.name}`, `${(c.confidence * 100).toFixed(1)}%`),
          ),
        ),
      );
      return el("li", { className: "prediction" }, figure, classes);
    };

    // Thumbnails need the key, so they are fetched as blobs, a few at a time.
    const loadThumbnails = async (images) => {
      const queue = images.slice();
      const worker = async () => {
        while (queue.length) {
          const img = queue.shift();
          try {
            const response = await request(`${path}/gallery/${encodeURIComponent(img.dataset.thumbnail)}`);
            img.src = URL.createObjectURL(await response.blob());
          } catch (error) {
            img.alt = `${img.alt} (thumbnail unavailable: ${error.message})`;
          }
        }
      };
      await Promise.all([worker(), worker(), worker(), worker()]);
    };

    const act = async (button, verb) => {
      const message = $("action-message");
      button.disabled = true;
      message.classList.remove("error");
      setText(message, verb === "stop" ? "Stopping…" : "Retrying…");
      try {
        await request(`${path}/${verb}`, { method: "POST" });
        setText(message, verb === "stop" ? "Stop requested." : "Queued again as a new attempt.");
      } catch (error) {
        if (error.status === 401) {
          signOut(`Your key was refused (${error.message}). Sign in again.`);
          return;
        }
        message.classList.add("error");
        setText(message, `Could not ${verb} the job: ${error.message}`);
      } finally {
        button.disabled = false;
      }
      poller.wake();
    };
    $("stop-button").onclick = () => act($("stop-button"), "stop");
    $("retry-button").onclick = () => act($("retry-button"), "retry");

    poller = poll(async () => {
      let job;
      try {
        job = await api(path);
      } catch (error) {
        if (error.status === 404) {
          showPageError(new Error(`job ${id} does not exist`));
          error.stop = true;
        }
        throw error;
      }
      renderJob(job);
      renderItemCounts(job);
      await tailLog();
      const galleryKey = `${job.attempt}`;
      if (job.status === "finished" && galleryShownFor !== galleryKey) {
        galleryShownFor = galleryKey;
        await showGallery();
      }
      return TERMINAL.has(job.status) ? IDLE_MS : LIVE_MS;
    });
  }

  // --- the events page ------------------------------------------------------------------

  const EVENT_COLUMNS = [
    ["received", "Received"],
    ["object", "Object"],
    ["event", "Event"],
    ["source", "Source"],
    ["outcome", "Outcome"],
    ["trigger", "Trigger"],
    ["result", "Result"],
  ];

  function eventsPage() {
    const state = pagingState("outcome", 50);
    const tbody = $("events-table").querySelector("tbody");
    const rows = new Map();

    const makeRow = (event) => {
      const row = makeCells(event.id, EVENT_COLUMNS);
      const c = cells(row, ["received", "object", "event", "source", "outcome"]);
      setText(c.received, formatTime(event.received_at));
      c.object.append(
        event.bucket || event.key
          ? el("code", {}, `${event.bucket || ""}/${event.key || ""}`)
          : el("span", { className: "muted" }, "—"),
      );
      setText(c.event, event.event_name || "");
      setText(c.source, event.source || "");
      c.outcome.append(badge("outcome", event.outcome || "pending"));
      return row;
    };
    const updateRow = (row, event) => {
      const c = cells(row, ["outcome", "trigger", "result"]);
      row.dataset.outcome = event.outcome;
      updateBadge(c.outcome.firstChild, "outcome", event.outcome || "pending");
      setText(c.trigger, event.trigger || "");
      const result = JSON.stringify([event.job_id, event.reason, event.duplicate_of]);
      if (c.result.dataset.value !== result) {
        c.result.dataset.value = result;
        const parts = [];
        if (event.job_id) parts.push(jobLink(event.job_id, `job ${event.job_id.slice(0, 8)}`));
        if (event.duplicate_of && !event.reason) parts.push(`duplicate of event ${event.duplicate_of}`);
        if (event.reason) parts.push(el("span", { className: "reason" }, event.reason));
        setChildren(c.result, ...parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
      }
    };

    const poller = poll(async () => {
      const asked = query(state, "outcome");
      let page;
      try {
        page = await api(`/v1/events?${asked}`);
      } catch (error) {
        if (error.status === 404) {
          showPageError(new Error("this service has no events API"));
          error.stop = true;
        }
        throw error;
      }
      if (asked !== query(state, "outcome")) return 0;
      syncRows(tbody, rows, page.events, makeRow, updateRow);
      $("events-empty").hidden = page.total > 0 || Boolean(state.filter);
      $("events-none-match").hidden = page.total > 0 || !state.filter;
      renderPager(state, page.events.length, page.total);
      return 2 * LIVE_MS;
    });
    wirePager(state, $("outcome-filter"), poller);
  }

  // --- the triggers page ----------------------------------------------------------------

  function countsText(counts) {
    if (counts === null || counts === undefined) return "";
    if (typeof counts !== "object") return String(counts);
    const parts = Object.entries(counts).map(([name, n]) => `${name} ${n}`);
    return parts.length ? parts.join(" · ") : "none yet";
  }

  function triggersPage() {
    const tbody = $("triggers-table").querySelector("tbody");
    poll(async () => {
      let data;
      try {
        data = await api("/v1/triggers");
      } catch (error) {
        if (error.status === 404) {
          showPageError(new Error("this service has no triggers API"));
          error.stop = true;
        }
        throw error;
      }
      const triggers = data.triggers || [];
      setChildren(
        tbody,
        ...triggers.map((t) =>
          el(
            "tr",
            { "data-id": t.name },
            el("td", { className: "name", "data-label": "Name" }, t.name),
            el("td", { className: "bucket", "data-label": "Bucket" }, t.bucket ?? "any"),
            el("td", { className: "prefix", "data-label": "Prefix" }, el("code", {}, t.prefix ?? "")),
            el("td", { className: "suffix", "data-label": "Suffix" }, el("code", {}, t.suffix ?? "")),
            el("td", { className: "events", "data-label": "Events" }, (t.events || []).join(", ")),
            el("td", { className: "kind", "data-label": "Kind" }, t.kind ?? ""),
            el("td", { className: "counts", "data-label": "Counts" }, countsText(t.counts)),
          ),
        ),
      );
      $("triggers-empty").hidden = triggers.length > 0;
      return IDLE_MS;
    });
  }

  // --- the overview page: small SVG charts of the last hour -------------------------------

  const SVG_NS = "http://www.w3.org/2000/svg";
  const CHART_W = 600;
  const CHART_H = 150;

  function svgEl(tag, attributes = {}) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    return node;
  }

  // The smallest of 1, 2, 2.5, 5 × 10^n at or above `value` (the top of a chart's scale).
  function niceMax(value) {
    if (!(value > 0)) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  const formatNumber = (n) => (Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1));

  function gridLines() {
    return [0.25, 0.5, 0.75].map((f) =>
      svgEl("line", { class: "grid", x1: 0, x2: CHART_W, y1: CHART_H * f, y2: CHART_H * f }),
    );
  }

  function chartCaption(figure, latest, max, unit) {
    setText(figure.querySelector(".chart-now"), `${formatNumber(latest)}${unit} now · scale ${formatNumber(max)}`);
    figure.dataset.latest = String(latest);
    figure.dataset.max = String(max);
  }

  // A line over the samples (`key` of each point), time running left to right.
  function drawLine(figure, points, key, start, end, unit = "") {
    const values = points.map((p) => Number(p[key]) || 0);
    const max = niceMax(Math.max(0, ...values));
    const x = (at) => (((parseTime(at) - start) / (end - start)) * CHART_W).toFixed(1);
    const y = (v) => (CHART_H - (v / max) * (CHART_H - 6)).toFixed(1);
    const coords = points.map((p, i) => `${x(p.at)},${y(values[i])}`);
    const line = coords.length ? `M${coords.join(" L")}` : "";
    const children = gridLines();
    if (coords.length) {
      const area = `${line} L${x(points[points.length - 1].at)},${CHART_H} L${x(points[0].at)},${CHART_H} Z`;
      children.push(svgEl("path", { class: "area", d: area }), svgEl("path", { class: "line", d: line }));
    }
    figure.querySelector("svg").replaceChildren(...children);
    figure.dataset.points = String(values.length);
    figure.dataset.path = line;
    figure.dataset.peak = String(Math.max(0, ...values));
    chartCaption(figure, values.length ? values[values.length - 1] : 0, max, unit);
  }

  // Stacked bars per minute: finished below, failed above.
  function drawBars(figure, minutes) {
    const totals = minutes.map((m) => m.finished + m.failed);
    const max = niceMax(Math.max(0, ...totals));
    const width = CHART_W / Math.max(1, minutes.length);
    const children = gridLines();
    const heights = [];
    minutes.forEach((m, i) => {
      const finished = (m.finished / max) * (CHART_H - 6);
      const failed = (m.failed / max) * (CHART_H - 6);
      const x = (i * width + 1).toFixed(1);
      const w = Math.max(1, width - 2).toFixed(1);
      if (finished > 0) {
        children.push(svgEl("rect", { class: "bar-finished", x, width: w, y: (CHART_H - finished).toFixed(1), height: finished.toFixed(1) }));
      }
      if (failed > 0) {
        children.push(svgEl("rect", { class: "bar-failed", x, width: w, y: (CHART_H - finished - failed).toFixed(1), height: failed.toFixed(1) }));
      }
      heights.push(`${m.finished}/${m.failed}`);
    });
    figure.querySelector("svg").replaceChildren(...children);
    figure.dataset.points = String(minutes.length);
    figure.dataset.path = heights.join(" ");
    figure.dataset.peak = String(Math.max(0, ...totals));
    const sum = (key) => minutes.reduce((n, m) => n + m[key], 0);
    setText(
      figure.querySelector(".chart-now"),
      `${sum("finished")} finished, ${sum("failed")} failed in the hour · scale ${max}/min`,
    );
    figure.dataset.latest = String(sum("finished") + sum("failed"));
    figure.dataset.max = String(max);
  }

  function overviewPage() {
    const minutes = 60;
    for (const figure of document.querySelectorAll(".chart")) {
      figure.append(
        el("div", { className: "x-axis", "aria-hidden": "true" }, el("span", {}, `${minutes} min ago`), el("span", {}, "now")),
      );
    }
    poll(async () => {
      const data = await api(`/v1/overview?minutes=${minutes}`);
      const end = parseTime(data.now).getTime();
      const start = end - data.minutes * 60_000;
      drawLine($("chart-images"), data.points, "images_per_s", start, end, "/s");
      drawBars($("chart-jobs"), data.per_minute);
      drawLine($("chart-queue"), data.points, "queue", start, end);
      drawLine($("chart-inbox"), data.points, "inbox", start, end);
      $("chart-notifications").hidden = !data.notifications;
      if (data.notifications) drawLine($("chart-notifications"), data.points, "notifications", start, end);
      return 2 * LIVE_MS;
    });
  }

  const PAGES = {
    overview: overviewPage,
    jobs: jobsPage,
    job: jobPage,
    events: eventsPage,
    triggers: triggersPage,
  };

  $("login-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out."));
  start();
})();
